"""Scanning a live process: every readable mapping of /proc/PID/mem,
searched for every needle, each copy attributed to its mapping."""

import os
import struct
import time

from .maps import Labeler, _category, read_maps, thread_stack_pointers

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 8 << 20          # bytes read from the target per read


class Hit:
    __slots__ = ("form", "addr", "label")

    def __init__(self, form, addr, label):
        self.form, self.addr, self.label = form, addr, label

    def __repr__(self):
        return "Hit(%s @%#x %s)" % (self.form, self.addr, self.label)


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
