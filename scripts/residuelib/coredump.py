"""Core dumps: taking one with gdb's gcore, reading its ELF segments and
register notes, and scanning both (registers for fragments of a secret
form, named by the narrowest register view that holds them)."""

import os
import shutil
import struct
import subprocess
import time

from .maps import _read
from .needles import REG_MIN
from .scan import Hit, Scan, _Searcher

PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS, NT_FPREGSET, NT_X86_XSTATE = 1, 2, 0x202
EM_X86_64, EM_AARCH64 = 62, 183
X86_64_GPRS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9",
               "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip",
               "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es",
               "fs", "gs")
AARCH64_GPRS = tuple("x%d" % i for i in range(31)) + ("sp", "pc", "pstate")
PRSTATUS_PID, PRSTATUS_REGS = 32, 112   # offsets in struct elf_prstatus


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
