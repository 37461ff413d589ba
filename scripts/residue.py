#!/usr/bin/env python3
"""Residue scanner: look for a secret where an attacker would (spec §5).

Runs a scenario in a child interpreter, then reads the child's whole
address space through /proc/PID/mem (and, with --core, a core dump taken
with gcore) and counts the copies of a random secret it finds, in every
form the scenario can leave, attributing each copy to a mapping (heap,
thread stacks, alternate signal stack, secret heap, other anonymous,
file-backed) and, in a core, to named registers.

  residue.py [-s NAME[,NAME...]] [--python LABEL=PATH ...] [--core]
             [--json FILE|-] [--plot FILE.png] [-j N]

By default it runs every scenario in tests/residue/scenarios on the
pristine and the experiment interpreters of cpython-build/install:
control (no secret.do) on both, protected (inside secret.do) on those that
have the `secret` module. docs/residue.md explains the output.

Runs with any Python 3.9+; only --plot needs matplotlib. Tests import it
(tests/test_residue_*.py) so they use the same code.

The scanner never holds the secret, or a form of it, as one contiguous
plaintext copy: it writes the secret to the child's file in two halves,
derives each form half by half, and keeps a form as its first half in
clear (what it searches for) plus its second half XOR-masked (what it
verifies a hit with). Memory read from the target goes into buffers that
are zeroed after use. Only derived values (HMAC, PBKDF2) exist whole, for
a moment, when computed. Scanning its own process finds nothing.
"""

import argparse
import hashlib
import json
import os
import select
import shutil
import string
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESIDUE_DIR = os.path.join(ROOT, "tests", "residue")
SCENARIO_DIR = os.path.join(RESIDUE_DIR, "scenarios")
HARNESS = os.path.join(RESIDUE_DIR, "harness.py")
INSTALL = os.path.join(ROOT, "cpython-build", "install")
DEFAULT_PYTHONS = (("pristine", os.path.join(INSTALL, "pristine", "bin",
                                             "python3")),
                   ("experiment", os.path.join(INSTALL, "experiment", "bin",
                                               "python3")))

PAGE = os.sysconf("SC_PAGE_SIZE")
ALPHABET = (string.ascii_letters + string.digits).encode()
# The forms every scenario is searched for; FORMS in a scenario adds more.
BASE_FORMS = ("raw", "ucs2", "ucs4", "hex", "base64")
CHUNK = 8 << 20          # bytes read from the target per read
REG_MIN = 8              # shortest secret fragment reported in a register

# Where a copy is, coarsely: the keys of every summary, in this order.
CATEGORIES = ("heap", "stack:main", "stack:thread", "stack:exited",
              "altstack", "secret-heap", "anon", "file", "other")
SHORT = {"heap": "heap", "stack:main": "stack", "stack:thread": "thread",
         "stack:exited": "exited", "altstack": "alt", "secret-heap": "sheap",
         "anon": "anon", "file": "file", "other": "other"}


# --------------------------------------------------------------------------
# The secret and its forms

def _xor_int(data, mask):
    return int.from_bytes(data, "little") ^ mask


class Needle:
    """One form of the secret (e.g. its UCS-2 encoding), never held whole:
    `head` in clear to search for, the rest as int(rest) ^ mask."""

    def __init__(self, form, head, rest):
        self.form = form
        self.head = bytes(head)
        self.length = len(head) + len(rest)
        self._mask = int.from_bytes(os.urandom(len(rest)), "little")
        self._masked = _xor_int(rest, self._mask)

    def matches_rest(self, view):
        """True if view (len(rest) bytes) is the second half."""
        return _xor_int(view, self._mask) == self._masked

    def write_into(self, buf, at):
        """Write the needle into the bytearray buf at `at`, byte by byte
        (the tests plant copies in simulated memory with it)."""
        hl = len(self.head)
        buf[at:at + hl] = self.head
        for j in range(self.length - hl):
            k = 8 * j
            buf[at + hl + j] = ((self._masked >> k) ^ (self._mask >> k)) & 0xff

    def fragments(self, size=REG_MIN):
        """{fragment: needle offset} for every `size`-byte window. Each
        window is a separate short object: no full copy is assembled."""
        hl, n = len(self.head), self.length
        out = {}
        for off in range(n - size + 1):
            frag = bytearray(size)
            for i in range(size):
                j = off + i
                if j < hl:
                    frag[i] = self.head[j]
                else:
                    k = 8 * (j - hl)
                    frag[i] = ((self._masked >> k) ^ (self._mask >> k)) & 0xff
            out.setdefault(bytes(frag), off)
        return out


def _digits30(h1, h2):
    """The 30-bit digits (least significant first) of int.from_bytes(h1 +
    h2, 'big'), computed a byte at a time so the integer is never built."""
    digits, acc, bits = [], 0, 0
    for part in (h2, h1):
        for b in reversed(part):
            acc |= b << bits
            bits += 8
            while bits >= 30:
                digits.append(acc & 0x3fffffff)
                acc >>= 30
                bits -= 30
    if acc:
        digits.append(acc)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
    return digits


class _HalfKeyedHMAC:
    """HMAC keyed with the secret given in two halves (key <= block size),
    so the key is only ever seen XORed with ipad/opad."""

    def __init__(self, name, h1, h2):
        self.name = name
        bs = hashlib.new(name).block_size
        if len(h1) + len(h2) > bs:
            raise ValueError("secret longer than the hash block")

        def keyed(pad):
            h = hashlib.new(name)
            h.update(bytes(b ^ pad for b in h1))
            h.update(bytes(b ^ pad for b in h2))
            h.update(bytes([pad]) * (bs - len(h1) - len(h2)))
            return h

        self._inner, self._outer = keyed(0x36), keyed(0x5c)

    def digest(self, msg):
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def pbkdf2(self, salt, iterations, dklen=None):
        size = hashlib.new(self.name).digest_size
        dklen = dklen or size
        out = b""
        block = 1
        while len(out) < dklen:
            u = self.digest(salt + block.to_bytes(4, "big"))
            acc = int.from_bytes(u, "big")
            for _ in range(iterations - 1):
                u = self.digest(u)
                acc ^= int.from_bytes(u, "big")
            out += acc.to_bytes(size, "big")
            block += 1
        return out[:dklen]


class Secret:
    """A random ASCII token, generated and kept as two halves."""

    def __init__(self, length=32):
        if length < 16 or length % 2:
            raise ValueError("secret length must be even and >= 16")
        raw = os.urandom(length)
        half = length // 2
        # Two separate objects, never one: see the module docstring.
        self._h1 = bytes(ALPHABET[b % len(ALPHABET)] for b in raw[:half])
        self._h2 = bytes(ALPHABET[b % len(ALPHABET)] for b in raw[half:])
        self.length = length

    def write(self, path):
        """Write the secret to a new file (mode 0600), half by half."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self._h1)
            os.write(fd, self._h2)
        finally:
            os.close(fd)

    def needle(self, form):
        h1, h2 = self._h1, self._h2
        if form == "raw":
            return Needle(form, h1, h2)
        if form in ("ucs2", "ucs4"):
            enc = "utf-16-le" if form == "ucs2" else "utf-32-le"
            return Needle(form, h1.decode("latin-1").encode(enc),
                          h2.decode("latin-1").encode(enc))
        if form == "hex":
            return Needle(form, h1.hex().encode(), h2.hex().encode())
        if form == "base64":
            import base64
            cut = len(h1) - len(h1) % 3   # base64 of a 3-byte multiple joins
            return Needle(form, base64.b64encode(h1[:cut]),
                          base64.b64encode(h1[cut:] + h2))
        if form == "int":
            digits = _digits30(h1, h2)
            half = (len(digits) + 1) // 2
            return Needle(form, struct.pack("<%dI" % half, *digits[:half]),
                          struct.pack("<%dI" % (len(digits) - half),
                                      *digits[half:]))
        raise ValueError("unknown form %r" % form)

    def derived(self, spec):
        """Needles (raw and hex) for a value derived from the secret:
        ("hmac", hash, msg), ("pbkdf2", hash, salt, iterations) or
        ("dtoa", n): the number int.from_bytes(secret[:n], "big"), less
        its trailing decimal zeros, as dtoa's Bigint holds it (32-bit
        words, least significant first; n a multiple of 4, at most half
        the secret)."""
        kind = spec[0]
        if kind == "hmac":
            value = _HalfKeyedHMAC(spec[1], self._h1, self._h2).digest(
                spec[2])
        elif kind == "pbkdf2":
            value = _HalfKeyedHMAC(spec[1], self._h1, self._h2).pbkdf2(
                spec[2], spec[3])
        elif kind == "dtoa":
            n = spec[1]
            if n % 4 or not 8 <= n <= len(self._h1):
                raise ValueError("dtoa: n must be a multiple of 4 in "
                                 "8..%d" % len(self._h1))
            d = int.from_bytes(self._h1[:n], "big")
            while d % 10 == 0:          # dtoa drops trailing zero digits
                d //= 10
            value = d.to_bytes(4 * ((d.bit_length() + 31) // 32), "little")
            del d
        else:
            raise ValueError("unknown derivation %r" % (kind,))
        # The derived value exists whole here for a moment (it is computed
        # whole); it is split at once and the whole dropped.
        half = len(value) // 2
        out = [Needle(kind, value[:half], value[half:]),
               Needle(kind + "-hex", value[:half].hex().encode(),
                      value[half:].hex().encode())]
        del value
        return out

    def needles(self, forms=BASE_FORMS, derived=()):
        out = [self.needle(f) for f in forms]
        for spec in derived:
            out.extend(self.derived(spec))
        return out


# --------------------------------------------------------------------------
# Mappings and attribution

class Mapping:
    __slots__ = ("start", "end", "perms", "offset", "inode", "path",
                 "label")

    def __init__(self, start, end, perms, offset, inode, path):
        self.start, self.end, self.perms = start, end, perms
        self.offset, self.inode, self.path = offset, inode, path
        self.label = None

    @property
    def anonymous(self):
        return self.inode == 0 and not self.path.startswith("/")

    def __repr__(self):
        return "Mapping(%#x-%#x %s %s)" % (
            self.start, self.end, self.perms, self.label or self.path)


def read_maps(pid):
    maps = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.rstrip("\n").split(None, 5)
            lo, hi = parts[0].split("-")
            maps.append(Mapping(int(lo, 16), int(hi, 16), parts[1],
                                int(parts[2], 16), int(parts[4]),
                                parts[5] if len(parts) > 5 else ""))
    return maps


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _thread_sp(base):
    fields = (_read(base + "syscall") or "").split()
    if len(fields) >= 3 and fields[0] not in ("running", "-1"):
        return int(fields[-2], 16)
    rest = (_read(base + "stat") or "").rpartition(")")[2].split()
    if len(rest) > 26 and int(rest[26]):
        return int(rest[26])
    return None


def thread_stack_pointers(pid, settle=0.5):
    """{tid: (comm, sp or None)} for every thread of pid. The SP comes from
    /proc/PID/task/TID/syscall (second-to-last field, for a thread blocked
    in a system call), else from field 29 of stat (kstkesp, often 0). A
    thread caught running is asked again for up to `settle` seconds: the
    threads of a child that said it is ready are about to block."""
    out = {}
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return out
    deadline = time.monotonic() + settle
    for tid in tids:
        base = "/proc/%d/task/%d/" % (pid, tid)
        comm = (_read(base + "comm") or "?").strip()
        sp = _thread_sp(base)
        while sp is None and time.monotonic() < deadline \
                and os.path.exists(base):
            time.sleep(0.002)
            sp = _thread_sp(base)
        out[tid] = (comm, sp)
    return out


def _category(label):
    if label.startswith("stack:thread"):
        return "stack:thread"
    if label.startswith("file:"):
        return "file"
    if label.startswith("other:"):
        return "other"
    return label


class Labeler:
    """Maps an address to a label. Priority: the alternate signal stacks
    and secret-heap ranges the child reported, then the mapping's own
    label (thread stacks found by SP, exited-thread stacks by shape)."""

    def __init__(self, maps, pid=None, threads=None, thread_names=None,
                 altstacks=(), secret_ranges=()):
        self.maps = maps
        self.ranges = ([(a, a + s, "altstack") for a, s in altstacks]
                       + [(a, b, "secret-heap") for a, b in secret_ranges])
        names = {int(k): v for k, v in (thread_names or {}).items()}
        self.threads = {}
        for m in maps:
            m.label = self._static_label(m)
        for tid, (comm, sp) in (threads or {}).items():
            name = names.get(tid, comm)
            self.threads[tid] = name
            m = self.find(sp) if sp else None
            if m is None:
                continue
            if tid == pid:
                m.label = "stack:main"
            elif m.label in ("anon", "stack:exited"):
                m.label = "stack:thread:%s" % name
        # glibc caches the stacks of exited threads: an anonymous rw
        # mapping right above a one-page (or small) PROT_NONE guard.
        for prev, m in zip(maps, maps[1:]):
            if (m.label == "anon" and prev.end == m.start
                    and prev.anonymous and prev.perms.startswith("---")
                    and prev.end - prev.start <= 64 * 1024
                    and m.perms.startswith("rw")):
                m.label = "stack:exited"

    @staticmethod
    def _static_label(m):
        p = m.path
        if p == "[heap]":
            return "heap"
        if p == "[stack]":
            return "stack:main"
        if p.startswith("[anon:secret"):
            return "secret-heap"
        if p.startswith("[stack:"):            # kernels before 4.5
            return "stack:thread:" + p[7:-1]
        if p == "" or p.startswith("[anon:") or p.startswith("[anon_shmem"):
            return "anon"
        if p.startswith("["):
            return "other:" + p
        name = os.path.basename(p.replace(" (deleted)", ""))
        return "file:" + name

    def find(self, addr):
        lo, hi = 0, len(self.maps)
        while lo < hi:
            mid = (lo + hi) // 2
            m = self.maps[mid]
            if addr < m.start:
                hi = mid
            elif addr >= m.end:
                lo = mid + 1
            else:
                return m
        return None

    def label(self, addr):
        for a, b, lab in self.ranges:
            if a <= addr < b:
                return lab
        m = self.find(addr)
        return m.label if m else "other:unmapped"


# --------------------------------------------------------------------------
# Scanning memory

class Hit:
    __slots__ = ("form", "addr", "label")

    def __init__(self, form, addr, label):
        self.form, self.addr, self.label = form, addr, label

    def __repr__(self):
        return "Hit(%s @%#x %s)" % (self.form, self.addr, self.label)


class RegHit:
    """A fragment (>= REG_MIN bytes) of a secret form in a register."""

    def __init__(self, tid, thread, register, form, reg_range, needle_range):
        self.tid, self.thread, self.register = tid, thread, register
        self.form, self.reg_range = form, reg_range
        self.needle_range = needle_range

    def as_dict(self):
        return {"tid": self.tid, "thread": self.thread,
                "register": self.register, "form": self.form,
                "register_bytes": list(self.reg_range),
                "secret_bytes": list(self.needle_range)}

    def __repr__(self):
        return "RegHit(%s %s %s %r)" % (self.tid, self.register, self.form,
                                        self.needle_range)


class Scan:
    """What one look at one process (or core) found."""

    def __init__(self, source):
        self.source = source
        self.hits = []
        self.reg_hits = []
        self.bytes_scanned = 0
        self.pages_no_access = 0      # mappings without read permission
        self.pages_unreadable = 0     # readable mappings whose read failed
        self.regions_unreadable = []
        self.threads = {}
        self.seconds = 0.0

    @property
    def copies(self):
        return len(self.hits)

    def _count(self, key):
        out = {}
        for h in self.hits:
            k = key(h)
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    def by_label(self):
        return self._count(lambda h: h.label)

    def by_category(self):
        return self._count(lambda h: _category(h.label))

    def by_form(self):
        return self._count(lambda h: h.form)

    def as_dict(self):
        d = {"source": self.source, "copies": self.copies,
             "by_category": self.by_category(), "by_label": self.by_label(),
             "by_form": self.by_form(), "bytes_scanned": self.bytes_scanned,
             "pages_no_access": self.pages_no_access,
             "pages_unreadable": self.pages_unreadable,
             "regions_unreadable": self.regions_unreadable,
             "scan_seconds": round(self.seconds, 3)}
        if self.source == "core":
            d["registers"] = [r.as_dict() for r in self.reg_hits]
        return d


class _Searcher:
    """Searches byte ranges for needles, carrying the tail of one read into
    the next so copies across read boundaries are found exactly once."""

    def __init__(self, needles, on_hit):
        self.needles = needles
        self.on_hit = on_hit
        self.keep = max(n.length for n in needles) - 1
        self.buf = bytearray(CHUNK + self.keep)
        self.view = memoryview(self.buf)

    def scan(self, start, length, readinto):
        """Scan [start, start+length): readinto(addr, view) fills view from
        addr and returns the count read (short or OSError: unreadable).
        Returns the number of unreadable pages skipped."""
        carry, base, addr, end = 0, start, start, start + length
        bad = 0
        while addr < end:
            want = min(CHUNK, end - addr)
            try:
                got = readinto(addr, self.view[carry:carry + want])
            except (OSError, OverflowError, ValueError):
                got = 0
            if got <= 0:
                # Unreadable here (the carry was searched): skip a page.
                bad += 1
                addr = (addr // PAGE + 1) * PAGE
                carry, base = 0, addr
                continue
            self._search(carry, got, base)
            total = carry + got
            addr += got
            carry = min(self.keep, total)
            self.view[:carry] = self.view[total - carry:total]
            base = addr - carry
        return bad

    def _search(self, old, new, base):
        """buf[:old] was searched before (it is the carried tail);
        buf[old:old+new] is new. Report hits ending in the new part."""
        total = old + new
        if not new:
            return
        buf, view = self.buf, self.view
        for n in self.needles:
            hl, size = len(n.head), n.length
            pos = buf.find(n.head, max(0, old - size + 1), total)
            while pos != -1:
                if pos + size <= total and n.matches_rest(
                        view[pos + hl:pos + size]):
                    self.on_hit(n, base + pos)
                pos = buf.find(n.head, pos + 1, total)

    def wipe(self):
        """Zero the buffer: it held the target's memory."""
        self.view[:] = bytes(len(self.buf))
        self.view.release()


def _present_runs(pagemap_fd, start, end):
    """Split [start, end) into runs of pages that are present or swapped.
    A page that is neither reads as zeros (anonymous memory) and cannot
    hold a copy, so skipping it is exact; None if pagemap is unreadable."""
    runs = []
    first = start // PAGE
    count = (end - start) // PAGE
    step = 1 << 16
    run_lo = None
    for i0 in range(0, count, step):
        n = min(step, count - i0)
        try:
            data = os.pread(pagemap_fd, n * 8, (first + i0) * 8)
        except OSError:
            return None
        if len(data) != n * 8:
            return None
        for i, e in enumerate(struct.unpack("<%dQ" % n, data)):
            page = (first + i0 + i) * PAGE
            if e >> 62:                      # bit 63 present, 62 swapped
                if run_lo is None:
                    run_lo = page
            elif run_lo is not None:
                runs.append((run_lo, page))
                run_lo = None
    if run_lo is not None:
        runs.append((run_lo, end))
    return runs


def scan_process(pid, needles, *, thread_names=None, altstacks=(),
                 secret_ranges=(), maps=None):
    """Read every readable mapping of pid through /proc/PID/mem and count
    copies of each needle. Unreadable regions ([vvar], guard pages,
    [vsyscall]) are skipped and counted, never fatal."""
    t0 = time.monotonic()
    scan = Scan("mem")
    maps = maps if maps is not None else read_maps(pid)
    threads = thread_stack_pointers(pid)
    lab = Labeler(maps, pid, threads, thread_names, altstacks, secret_ranges)
    scan.threads = {str(k): v for k, v in lab.threads.items()}

    def on_hit(n, addr):
        scan.hits.append(Hit(n.form, addr, lab.label(addr)))

    searcher = _Searcher(needles, on_hit)
    mem = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    try:
        pagemap = os.open("/proc/%d/pagemap" % pid, os.O_RDONLY)
    except OSError:
        pagemap = None

    def readinto(addr, view):
        return os.preadv(mem, [view], addr)

    try:
        for m in maps:
            if not m.perms.startswith("r"):
                # Guard pages, reservations, [vsyscall]: the kernel refuses
                # them (an attacker could not read them either).
                scan.pages_no_access += (m.end - m.start) // PAGE
                continue
            runs = None
            # Pages of ordinary anonymous memory that are not present read
            # as zeros: skip them. Special mappings ([vvar], [vdso]) are
            # read whole, so a refusal is counted.
            if pagemap is not None and (
                    m.path in ("", "[heap]", "[stack]")
                    or m.path.startswith("[anon:")):
                runs = _present_runs(pagemap, m.start, m.end)
            if runs is None:
                runs = [(m.start, m.end)]
            for lo, hi in runs:
                bad = searcher.scan(lo, hi - lo, readinto)
                scan.bytes_scanned += hi - lo - bad * PAGE
                if bad:
                    scan.pages_unreadable += bad
                    if m.label not in scan.regions_unreadable:
                        scan.regions_unreadable.append(m.label)
    finally:
        searcher.wipe()
        os.close(mem)
        if pagemap is not None:
            os.close(pagemap)
    scan.seconds = time.monotonic() - t0
    return scan


# --------------------------------------------------------------------------
# Core dumps

PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE = 1, 2, 0x202
EM_X86_64, EM_AARCH64 = 62, 183
X86_64_GPRS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9",
               "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip",
               "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es",
               "fs", "gs")
AARCH64_GPRS = tuple("x%d" % i for i in range(31)) + ("sp", "pc", "pstate")
PRSTATUS_PID, PRSTATUS_REGS = 32, 112   # offsets in struct elf_prstatus


def _xsave_layout():
    """Offsets of the XSAVE components a core's NT_X86_XSTATE holds in the
    standard (non-compacted) format: {component: offset}. They come from
    CPUID leaf 0xD; Intel and AMD differ for AVX-512 (AMD has no MPX
    gap), so this follows the vendor, as gdb's own guess does."""
    vendor = ""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("vendor_id"):
            vendor = line.split(":", 1)[1].strip()
            break
    if vendor in ("AuthenticAMD", "HygonGenuine"):
        return {2: 576, 5: 832, 6: 896, 7: 1408}
    return {2: 576, 5: 1088, 6: 1152, 7: 1664}


class CoreFile:
    """The parts of an ELF core the scanner needs: PT_LOAD segments and
    per-thread register notes. Register contents are the target's data:
    they live in bytearrays that wipe() zeroes (see the module docstring).
    """

    def __init__(self, path):
        self.path = path
        self._owned = []
        # Unbuffered: register notes go straight into our own buffers.
        with open(path, "rb", buffering=0) as f:
            ident = f.read(64)
            if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
                raise ValueError("%s: not a little-endian ELF64 file" % path)
            (etype, self.machine) = struct.unpack_from("<HH", ident, 16)
            if etype != 4:
                raise ValueError("%s: not a core file" % path)
            phoff, = struct.unpack_from("<Q", ident, 32)
            shoff, = struct.unpack_from("<Q", ident, 40)
            phentsize, phnum = struct.unpack_from("<HH", ident, 54)
            if phnum == 0xffff:                      # PN_XNUM
                f.seek(shoff + 44)
                phnum, = struct.unpack("<I", f.read(4))
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            self.segments = []
            notes = []
            for i in range(phnum):
                (ptype, _flags, off, vaddr, _pa, filesz, _memsz,
                 _align) = struct.unpack_from("<IIQQQQQQ", table,
                                              i * phentsize)
                if ptype == PT_LOAD and filesz:
                    self.segments.append((vaddr, filesz, off))
                elif ptype == PT_NOTE:
                    blob = self._own(filesz)
                    f.seek(off)
                    f.readinto(blob)
                    notes.append(blob)
        self.threads = []      # [{"tid": .., "regs": [(name, bytes)]}]
        for blob in notes:
            self._parse_notes(memoryview(blob))
        self._registers = self._assemble()

    def _own(self, size_or_data):
        buf = bytearray(size_or_data)
        self._owned.append(buf)
        return buf

    def wipe(self):
        for buf in self._owned:
            buf[:] = bytes(len(buf))
        self.threads = []
        self._registers = []

    def _parse_notes(self, blob):
        pos = 0
        while pos + 12 <= len(blob):
            namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
            pos += 12
            name = bytes(blob[pos:pos + namesz]).rstrip(b"\0")
            pos += (namesz + 3) & ~3
            desc = blob[pos:pos + descsz]
            pos += (descsz + 3) & ~3
            if ntype == NT_PRSTATUS and name == b"CORE":
                tid, = struct.unpack_from("<i", desc, PRSTATUS_PID)
                self.threads.append({"tid": tid,
                                     "regs": self._gprs(desc)})
            elif not self.threads:
                continue
            elif ntype == NT_FPREGSET and name == b"CORE":
                self.threads[-1]["regs"].extend(self._fpregs(desc))
            elif ntype == NT_X86_XSTATE and name == b"LINUX":
                self.threads[-1]["regs"].extend(self._xstate(desc))

    def _gprs(self, desc):
        names = X86_64_GPRS if self.machine == EM_X86_64 else AARCH64_GPRS
        return [(n, desc[PRSTATUS_REGS + 8 * i:PRSTATUS_REGS + 8 * i + 8])
                for i, n in enumerate(names)]

    def _fpregs(self, desc):
        if self.machine == EM_AARCH64:      # user_fpsimd_state: v0..v31
            return [("vec%d" % i, desc[16 * i:16 * i + 16])
                    for i in range(32)]
        # FXSAVE: st0-7 (10 of 16 bytes; mmN is the low 8) then xmm0-15.
        regs = [("st%d/mm%d" % (i, i), desc[32 + 16 * i:42 + 16 * i])
                for i in range(8)]
        regs += [("vec%d" % i, desc[160 + 16 * i:176 + 16 * i])
                 for i in range(16)]
        return regs

    def _xstate(self, desc):
        """Upper halves of ymm0-15/zmm0-15, zmm16-31 and k0-7, as far as
        the header's XSTATE_BV says they are in use (else they are zero)."""
        if len(desc) < 576:
            return []
        bv, = struct.unpack_from("<Q", desc, 512)
        off = _xsave_layout()
        zero = memoryview(bytes(64))

        def part(comp, start, size):
            lo = off[comp] + start
            if bv >> comp & 1 and lo + size <= len(desc):
                return desc[lo:lo + size]
            return zero[:size]

        out = []
        for i in range(16):
            out.append(("vec%d" % i, part(2, 16 * i, 16)))
            out.append(("vec%d" % i, part(6, 32 * i, 32)))
        for i in range(16, 32):
            out.append(("vec%d" % i, part(7, 64 * (i - 16), 64)))
        for i in range(8):
            out.append(("k%d" % i, part(5, 8 * i, 8)))
        return out

    def _assemble(self):
        out = []
        for t in self.threads:
            parts = {}
            for name, val in t["regs"]:
                parts.setdefault(name, []).append(val)
            regs = {}
            for name, vals in parts.items():
                # Sized once: a growing bytearray would leave freed copies.
                buf = regs[name] = self._own(sum(len(v) for v in vals))
                pos = 0
                for v in vals:
                    buf[pos:pos + len(v)] = v
                    pos += len(v)
            out.append((t["tid"], regs))
        return out

    def registers(self):
        """[(tid, {name: bytearray})], vector registers whole: vecN =
        xmmN (FXSAVE) + upper ymm half + upper zmm half."""
        return self._registers


def _vector_name(name, lo, hi):
    """Name a vector-register hit by the narrowest view that holds it."""
    i = name[3:]
    if hi <= 16:
        return "xmm" + i
    if hi <= 32:
        return "ymm" + i
    return "zmm" + i


def register_hits(core, needles, thread_names=None):
    """Fragments of >= REG_MIN bytes of any needle in any register."""
    names = {int(k): v for k, v in (thread_names or {}).items()}
    frags = [(n, n.fragments(REG_MIN)) for n in needles]
    hits = []
    for tid, regs in core.registers():
        for reg, val in regs.items():
            if len(val) < REG_MIN or not any(val):
                continue
            for n, table in frags:
                i = 0
                while i + REG_MIN <= len(val):
                    off = table.get(bytes(val[i:i + REG_MIN]))
                    if off is None:
                        i += 1
                        continue
                    k = REG_MIN     # extend while the next byte continues
                    while (i + k < len(val) and off + k < n.length
                           and table.get(bytes(val[i + k - REG_MIN + 1:
                                                   i + k + 1]))
                           == off + k - REG_MIN + 1):
                        k += 1
                    shown = reg
                    if reg.startswith("vec"):
                        shown = _vector_name(reg, i, i + k)
                        if core.machine == EM_AARCH64:
                            shown = "v" + reg[3:]
                    hits.append(RegHit(tid, names.get(tid, ""), shown,
                                       n.form, (i, i + k), (off, off + k)))
                    i += k
    return hits


def take_core(pid, path, timeout=120):
    """Write a core of the running process pid to path with gdb's gcore
    (the process keeps running). Returns the path."""
    gdb = shutil.which("gdb")
    if not gdb:
        raise RuntimeError("core mode needs gdb (apt-get install gdb)")
    cmd = [gdb, "-nx", "--batch", "-iex", "set auto-load off",
           "-iex", "set debuginfod enabled off",
           "-ex", "set pagination off", "-ex", "attach %d" % pid,
           "-ex", "gcore %s" % path, "-ex", "detach", "-ex", "quit"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, universal_newlines=True)
    if not os.path.exists(path):
        raise RuntimeError("gcore failed:\n" + r.stdout[-2000:])
    return path


def scan_core(path, needles, labeler=None, thread_names=None):
    """Scan a core's PT_LOAD segments (attributed with labeler, made from
    the live process's maps, when given) and its register notes."""
    t0 = time.monotonic()
    core = CoreFile(path)
    scan = Scan("core")

    def on_hit(n, addr):
        lab = labeler.label(addr) if labeler else "core"
        scan.hits.append(Hit(n.form, addr, lab))

    searcher = _Searcher(needles, on_hit)
    fd = os.open(path, os.O_RDONLY)
    try:
        for vaddr, size, off in core.segments:
            def readinto(addr, view, _d=off - vaddr):
                return os.preadv(fd, [view], addr + _d)
            scan.pages_unreadable += searcher.scan(vaddr, size, readinto)
            scan.bytes_scanned += size
    finally:
        searcher.wipe()
        os.close(fd)
    try:
        scan.reg_hits = register_hits(core, needles, thread_names)
        scan.threads = {str(t): (thread_names or {}).get(str(t), "")
                        for t, _ in core.registers()}
    finally:
        core.wipe()
    scan.seconds = time.monotonic() - t0
    return scan


# --------------------------------------------------------------------------
# Running a child

class ChildError(RuntimeError):
    pass


def run_child(argv_for, secret, needles, *, core=False, timeout=120,
              env=None, keep_core=None):
    """Start a child, let it plant or leave the secret, scan it.

    argv_for(secret_path, ready_fd, go_fd) returns the child's argv. The
    child reads the secret from secret_path, writes one JSON line to
    ready_fd ({"ok": true, "altstack": [[addr, size]], "threads": {tid:
    name}, "secret_heap": [[lo, hi]]}) and blocks reading go_fd, which
    reaches EOF once the scan is done. A failed child (or one whose first
    line says "ok": false) gives (info, None, None); else the result is
    (info, mem_scan, core_scan or None)."""
    if env is None:
        # Allocator settings of the caller would change what the child
        # leaves: MALLOC_PERTURB_ (set by meson test) scribbles over freed
        # glibc blocks, PYTHONMALLOC picks another allocator.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MALLOC_PERTURB_", "MALLOC_CHECK_",
                            "PYTHONMALLOC", "PYTHONMALLOCSTATS")}
    tmp = tempfile.mkdtemp(prefix="residue-")
    secret_path = os.path.join(tmp, "secret")
    secret.write(secret_path)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_path = os.path.join(tmp, "output")
    proc = None
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(argv_for(secret_path, ready_w, go_r),
                                    pass_fds=(ready_w, go_r), stdout=out,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    cwd=tmp)
        os.close(ready_w)
        os.close(go_r)
        ready_w = go_r = None
        line = _read_line(ready_r, timeout)
        if not line:
            proc.wait(timeout=timeout)
            raise ChildError("child exited (%s) before it was ready:\n%s"
                             % (proc.returncode, _tail(out_path)))
        info = json.loads(line)
        info["returncode"] = None
        if not info.get("ok"):
            proc.wait(timeout=timeout)
            info["returncode"] = proc.returncode
            info["output"] = _tail(out_path)
            return info, None, None
        pid = proc.pid
        threads = info.get("threads") or {}
        altstacks = [tuple(a) for a in info.get("altstack") or ()]
        secret_ranges = [tuple(a) for a in info.get("secret_heap") or ()]
        mem = scan_process(pid, needles, thread_names=threads,
                           altstacks=altstacks, secret_ranges=secret_ranges)
        core_scan = None
        if core:
            core_path = keep_core or os.path.join(tmp, "core")
            take_core(pid, core_path)
            lab = Labeler(read_maps(pid), pid, thread_stack_pointers(pid),
                          threads, altstacks, secret_ranges)
            core_scan = scan_core(core_path, needles, lab, threads)
        os.close(go_w)             # EOF releases every waiting thread
        go_w = None
        proc.wait(timeout=timeout)
        info["returncode"] = proc.returncode
        return info, mem, core_scan
    finally:
        for fd in (ready_r, ready_w, go_r, go_w):
            if fd is not None:
                os.close(fd)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _read_line(fd, timeout):
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ChildError("child not ready after %ss" % timeout)
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _tail(path, size=4000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return data[-size:].decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Scenarios

class Scenario:
    """Metadata of one scenario file, read with ast (never executed in the
    scanner: scenarios run only in the child). Module-level constants:

    FORMS          forms searched for besides BASE_FORMS (e.g. "int")
    DERIVED        derived values to search for: ("hmac", hash, msg),
                   ("pbkdf2", hash, salt, iterations) or ("dtoa", n)
    KEEP           True: the result stays alive, copies must be found
    CONTROL_FORMS  forms the control run must find (default: any copy)
    CONTROL_WHERE  categories the control run must find copies in
    NEEDS          the secret.protections() keys a protected run needs
                   to find nothing (default: ("heap",))
    """

    FIELDS = {"FORMS": (), "DERIVED": (), "KEEP": False, "NEEDS": ("heap",),
              "CONTROL_FORMS": (), "CONTROL_WHERE": ()}

    def __init__(self, path):
        import ast
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        doc = ast.get_docstring(tree) or ""
        self.title = doc.strip().splitlines()[0] if doc.strip() else ""
        values = dict(self.FIELDS)
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id in self.FIELDS:
                values[node.targets[0].id] = ast.literal_eval(node.value)
        self.forms = tuple(BASE_FORMS) + tuple(
            f for f in values["FORMS"] if f not in BASE_FORMS)
        self.derived = tuple(tuple(d) for d in values["DERIVED"])
        self.keep = bool(values["KEEP"])
        self.needs = tuple(values["NEEDS"])
        self.control_forms = tuple(values["CONTROL_FORMS"])
        self.control_where = tuple(values["CONTROL_WHERE"])

    def control_missing(self, rec):
        """What a control record lacks of what this scenario must leave:
        [] when it proves something."""
        if not rec or rec.get("copies") is None:
            return ["a run"]
        if not rec["copies"]:
            return ["any copy"]
        missing = ["%s copies" % f for f in self.control_forms
                   if not rec["by_form"].get(f)]
        missing += ["copies in %s" % c for c in self.control_where
                    if not rec["by_category"].get(c)]
        return missing

    def __repr__(self):
        return "Scenario(%s)" % self.name


def scenarios(directory=SCENARIO_DIR, names=None):
    """The scenarios in directory (every NAME.py not starting with _)."""
    found = {}
    for fn in sorted(os.listdir(directory)):
        if fn.endswith(".py") and not fn.startswith("_"):
            sc = Scenario(os.path.join(directory, fn))
            found[sc.name] = sc
    if not names:
        return list(found.values())
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError("no such scenario: %s (have: %s)"
                         % (", ".join(missing), ", ".join(found)))
    return [found[n] for n in names]


def probe(python):
    """What an interpreter is: version and whether it has `secret`."""
    code = ("import json, platform\n"
            "try:\n import secret\n p = secret.protections()\n"
            "except ImportError:\n p = None\n"
            "print(json.dumps({'version': platform.python_version(),"
            " 'has_secret': p is not None, 'protections': p}))")
    r = subprocess.run([python, "-I", "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    if r.returncode:
        raise ChildError("%s does not run: %s" % (python, r.stderr))
    info = json.loads(r.stdout)
    info["path"] = python
    return info


def run_scenario(python, scenario, mode, *, secret_len=32, core=False,
                 timeout=120):
    """Run one scenario in one mode on one interpreter; return a dict (the
    --json record). mode: "control" or "protected"."""
    python = os.path.abspath(python)
    secret = Secret(secret_len)
    needles = secret.needles(scenario.forms, scenario.derived)

    def argv(path, ready, go):
        return [python, "-I", "-B", HARNESS, scenario.path, mode, path,
                str(ready), str(go)]

    t0 = time.monotonic()
    rec = {"scenario": scenario.name, "mode": mode, "python": python,
           "keep": scenario.keep, "seconds": None}
    try:
        info, mem, core_scan = run_child(argv, secret, needles, core=core,
                                         timeout=timeout)
    except (ChildError, subprocess.TimeoutExpired, RuntimeError) as e:
        info = {"ok": False, "error": str(e)}
    if not info.get("ok"):
        rec["status"] = ("n/a" if info.get("error") == "no-secret-module"
                         else "error")
        rec["error"] = info.get("error")
        rec["output"] = info.get("output", "")
        rec["copies"] = None
    else:
        rec["status"] = "ok"
        rec.update(mem.as_dict())
        rec["threads"] = mem.threads
        rec["altstack"] = info.get("altstack")
        if core_scan is not None:
            rec["core"] = core_scan.as_dict()
    rec["seconds"] = round(time.monotonic() - t0, 3)
    return rec


def verdict(scenario, control, protected):
    """One scenario's verdict on one interpreter from its two records."""
    if control is None or control.get("copies") is None:
        return "error" if control else "not run"
    p = protected.get("copies") if protected else None
    if protected is not None and protected.get("status") == "error":
        return "error"
    if scenario.keep:
        found = control["copies"] and (p is None or p)
        return "live: found" if found else "FAIL: live copy not found"
    missing = scenario.control_missing(control)
    if missing:
        return "proves nothing (no %s)" % ", ".join(missing)
    if p is None:
        return "control only"
    return "meets §3" if p == 0 else "FAILS §3"


# --------------------------------------------------------------------------
# Reports

def _cell(rec):
    if rec is None:
        return "-"
    if rec.get("status") == "n/a":
        return "n/a"
    if rec.get("copies") is None:
        return "ERROR"
    cats = rec.get("by_category") or {}
    parts = ["%s %d" % (SHORT[k], cats[k]) for k in CATEGORIES if k in cats]
    s = str(rec["copies"])
    if parts:
        s += " (" + ", ".join(parts) + ")"
    core = rec.get("core")
    if core is not None:
        s += " [core %d, regs %d]" % (core["copies"], len(core["registers"]))
    return s


def table(report):
    """The human table: one row per scenario, one column per interpreter
    and mode, then the verdict per interpreter that ran both modes."""
    pys = list(report["interpreters"])
    recs = {(r["label"], r["scenario"], r["mode"]): r for r in report["runs"]}
    cols = []
    for p in pys:
        cols.append((p, "control"))
        if report["interpreters"][p].get("has_secret"):
            cols.append((p, "protected"))
    heads = ["scenario"] + ["%s %s" % c for c in cols] + \
        ["verdict %s" % p for p in pys]
    rows = []
    for sc in report["scenarios"]:
        row = [sc]
        for p, m in cols:
            row.append(_cell(recs.get((p, sc, m))))
        for v in report["verdicts"]:
            if v["scenario"] == sc:
                row.append(v["verdict"])
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [heads])
              for i in range(len(heads))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [heads] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = []
    for p in pys:
        ctrl = [recs.get((p, sc, "control")) for sc in report["scenarios"]]
        ran = [r for r in ctrl if r and r.get("copies") is not None]
        found = [r for r in ran if r["copies"]]
        if ran:
            summary.append("%s: control finds copies in %d of %d scenarios"
                           % (p, len(found), len(ran)))
    legend = ("copies of the secret (all forms) after the result was dropped "
              "and gc.collect() ran; by mapping: " + ", ".join(
                  "%s=%s" % (SHORT[k], k) for k in CATEGORIES))
    return "\n".join(lines + [""] + summary + [legend])


STACK_CATEGORIES = ("stack:main", "stack:thread", "stack:exited", "altstack")


def plot(report, path):
    """Bar chart, log scale: copies per scenario for each interpreter's
    control and (where it has `secret`) protected run; all copies on top,
    the copies on stacks (main, threads, alternate signal stack) below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = {(r["label"], r["scenario"], r["mode"]): r for r in report["runs"]}
    series = []
    for p, info in report["interpreters"].items():
        series.append((p, "control"))
        if info.get("has_secret"):
            series.append((p, "protected"))
    scs = report["scenarios"]
    width = 0.8 / max(1, len(series))
    colors = ["#4c72b0", "#dd8452", "#c44e52", "#55a868", "#8172b3",
              "#937860"]
    floor = 0.5
    fig, axes = plt.subplots(2, 1, sharex=True,
                             figsize=(max(8, 0.55 * len(scs) + 2), 8))

    def count_all(r):
        return r["copies"]

    def count_stacks(r):
        return sum(r["by_category"].get(c, 0) for c in STACK_CATEGORIES)

    panels = ((axes[0], count_all, "all copies"),
              (axes[1], count_stacks, "copies on stacks\n(main, threads, "
               "alternate signal stack)"))
    for ax, count, what in panels:
        for k, (p, m) in enumerate(series):
            xs, ys = [], []
            for i, sc in enumerate(scs):
                r = recs.get((p, sc, m))
                x = i + (k - (len(series) - 1) / 2) * width
                if r is not None and r.get("status") == "error":
                    ax.text(x, floor * 1.05, "crash", ha="center",
                            va="bottom", fontsize=6, rotation=90,
                            color=colors[k % len(colors)])
                if r is None or r.get("copies") is None:
                    continue
                xs.append(x)
                ys.append(count(r))
            bars = ax.bar(xs, [max(y, floor) for y in ys], width,
                          label="%s %s" % (p, m),
                          color=colors[k % len(colors)],
                          hatch="//" if m == "protected" else None,
                          edgecolor="white", linewidth=0.3)
            for b, y in zip(bars, ys):
                if y == 0:
                    ax.text(b.get_x() + b.get_width() / 2, floor * 1.05,
                            "0", ha="center", va="bottom", fontsize=6)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_ylabel(what + " (log)")
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("Copies of the secret in /proc/PID/mem after the work, "
                      "result dropped, gc.collect()")
    axes[1].set_xticks(range(len(scs)))
    axes[1].set_xticklabels(scs, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_matrix(pythons, scs, *, modes=("control", "protected"), jobs=1,
               core=False, secret_len=32, progress=None):
    """Run every scenario in every mode on every interpreter. pythons:
    [(label, path)]. Returns the report dict (what --json writes)."""
    t0 = time.monotonic()
    interps = {}
    for label, path in pythons:
        interps[label] = probe(path)
    tasks = []
    for label, path in pythons:
        for sc in scs:
            for mode in modes:
                if mode == "protected" and not interps[label]["has_secret"]:
                    continue
                tasks.append((label, path, sc, mode))

    def one(task):
        label, path, sc, mode = task
        rec = run_scenario(path, sc, mode, core=core, secret_len=secret_len)
        rec["label"] = label
        if progress:
            progress(rec)
        return rec

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        runs = list(ex.map(one, tasks))
    recs = {(r["label"], r["scenario"], r["mode"]): r for r in runs}
    verdicts = []
    for label, _ in pythons:
        for sc in scs:
            v = verdict(sc, recs.get((label, sc.name, "control")),
                        recs.get((label, sc.name, "protected")))
            verdicts.append({"label": label, "scenario": sc.name,
                             "verdict": v})
    return {"version": 1, "secret_length": secret_len,
            "interpreters": interps,
            "scenarios": [sc.name for sc in scs],
            "titles": {sc.name: sc.title for sc in scs},
            "runs": runs, "verdicts": verdicts,
            "seconds": round(time.monotonic() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--scenario", action="append", default=[],
                    help="scenario name(s), comma-separated (default: all)")
    ap.add_argument("--python", action="append", default=[],
                    metavar="LABEL=PATH",
                    help="interpreter to run (repeatable; default: the "
                         "installed pristine and experiment)")
    ap.add_argument("--mode", default="control,protected",
                    help="modes to run (default: control,protected)")
    ap.add_argument("--core", action="store_true",
                    help="also take a core with gcore and scan it "
                         "(memory and registers)")
    ap.add_argument("--json", metavar="FILE",
                    help="write the report as JSON (- for stdout)")
    ap.add_argument("--plot", metavar="FILE.png",
                    help="draw copies per scenario (needs matplotlib)")
    ap.add_argument("-j", "--jobs", type=int, default=2,
                    help="runs in parallel (default 2)")
    ap.add_argument("--secret-length", type=int, default=32)
    ap.add_argument("--scenario-dir", default=SCENARIO_DIR)
    ap.add_argument("--list", action="store_true",
                    help="list the scenarios and exit")
    a = ap.parse_args(argv)

    names = [n for s in a.scenario for n in s.split(",") if n]
    scs = scenarios(a.scenario_dir, names)
    if a.list:
        for sc in scs:
            print("%-20s %s" % (sc.name, sc.title))
        return 0
    pythons = []
    for spec in a.python:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.basename(os.path.dirname(
                os.path.dirname(spec))) or spec, spec
        pythons.append((label, os.path.abspath(path)))
    if not pythons:
        pythons = [(lab, p) for lab, p in DEFAULT_PYTHONS
                   if os.path.exists(p)]
    if not pythons:
        ap.error("no interpreter: build them (./run build) or use --python")
    if a.plot:
        try:
            import matplotlib  # noqa: F401  (fail before the long run)
        except ImportError:
            ap.error("--plot needs matplotlib: run with the tools venv, "
                     "cpython-build/venv/tools/bin/python")
    quiet = a.json == "-"

    def progress(rec):
        if not quiet:
            print("  %-11s %-9s %-20s %s" % (rec["label"], rec["mode"],
                                             rec["scenario"], _cell(rec)),
                  file=sys.stderr, flush=True)

    report = run_matrix(pythons, scs, modes=tuple(a.mode.split(",")),
                        jobs=a.jobs, core=a.core,
                        secret_len=a.secret_length, progress=progress)
    if a.json:
        text = json.dumps(report, indent=1, sort_keys=False)
        if a.json == "-":
            print(text)
        else:
            with open(a.json, "w") as f:
                f.write(text + "\n")
    if not quiet:
        print(table(report))
        print("(%d runs in %.1f s)"
              % (len(report["runs"]), report["seconds"]))
    if a.plot:
        plot(report, a.plot)
    bad = [r for r in report["runs"] if r.get("status") == "error"]
    for r in bad:
        print("error: %s %s %s:\n%s%s" % (r["label"], r["scenario"],
                                          r["mode"], r.get("error") or "",
                                          r.get("output") or ""),
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
