"""The target's mappings and the attribution of an address to one: heap,
main and thread stacks (found by each thread's stack pointer), stacks of
exited threads, the alternate signal stack, the secret heap, other
anonymous memory, files."""

import os
import time

# Where a copy is, coarsely: the keys of every summary, in this order.
CATEGORIES = ("heap", "stack:main", "stack:thread", "stack:exited",
              "altstack", "secret-heap", "anon", "file", "other")


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
        stacks = []
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
                stacks.append(m)
        # After every SP's mapping is labelled: a walk never takes one.
        for m in stacks:
            self._extend_stack(m)
        # glibc caches the stacks of exited threads: an anonymous rw
        # mapping right above a one-page (or small) PROT_NONE guard.
        for prev, m in zip(maps, maps[1:]):
            if (m.label == "anon" and prev.end == m.start
                    and prev.anonymous and prev.perms.startswith("---")
                    and prev.end - prev.start <= 64 * 1024
                    and m.perms.startswith("rw")):
                m.label = "stack:exited"

    def _extend_stack(self, m):
        """A thread's stack is one mapping until parts of it are locked,
        marked or protected apart (mlock, madvise, the growth guard): the
        kernel then splits it. The anonymous read-write mappings right
        below the one holding the SP are the same stack (the frames deeper
        than the SP) if they end on its PROT_NONE guard (next to it, or
        past a hole, as the experiment leaves one); a stack without
        one (set by pthread_attr_setstack, a runtime's own) is not
        extended, as what lies below it may be anything. (Above the SP the
        stack's end cannot be told from a mapping placed next to it.)"""
        i = self.maps.index(m)
        parts = []
        while i > 0:
            below, cur = self.maps[i - 1], self.maps[i]
            if not below.anonymous:
                return
            if below.perms.startswith("---"):
                # The guard, or the experiment's PROT_NONE reserve under
                # the stack's used part (past a hole it unmapped).
                break
            if below.end != cur.start:
                return
            if (not below.perms.startswith("rw")
                    or below.label not in ("anon", "stack:exited")):
                return
            parts.append(below)
            i -= 1
        else:
            return
        for p in parts:
            p.label = m.label

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
