"""Child process for tests/test_heap.py: every size class x free path x
allocator domain, protected (inside secret.do) and control (same steps
without it). Prints one JSON object: {case: [found, total, in_secret_heap,
decommits]}.

found = how many 8-byte words of the block (from offset 16: allocators
keep their free-list links in the first words) still hold the random data
after the block was freed, read through /proc/self/mem (which returns an
error instead of faulting on unmapped pages; unreadable counts as 0).

decommits = how many times the secret heap gave pages back to the kernel
between the block's free and its read: a page given back reads as zeros
whether or not the block was zeroed, so a protected case with decommits
would prove nothing. The heap gives freed pages back at once (a trim after
a large free, whatever MIMALLOC_PURGE_DELAY says: test_heap.py sets it for
the mimalloc control), so the probe has it keep them
(_testsecret.hold_decommits) and test_heap.py requires 0.

Run with glibc's mmap threshold raised (test_heap.py does), so that the
control's large blocks stay mapped after free and can be found.
"""

import gc
import json
import os
import queue
import threading

import secret
import _testsecret as T

SIZES = {
    "tiny": 40,             # pymalloc class 48 (class 32 is taken by ints)
    "pymalloc_64": 64,
    "pymalloc_256": 256,
    "pymalloc_512": 512,
    "gt_512": 600,
    "page": 4096,
    "gt_256k": 300 * 1024,
    "mib_4": 4 * 1024 * 1024,
}
DOMAINS = ("raw", "mem", "obj")

MEM = open("/proc/self/mem", "rb", buffering=0)


def read(addr, buf):
    """Read into buf, allocated before the block was freed: a buffer
    allocated now could be the freed block itself (FileIO.readinto keeps
    its Py_buffer on the C stack; os.preadv would allocate one)."""
    try:
        MEM.seek(addr)
        n = MEM.readinto(buf)
    except OSError:
        n = 0
    return buf if n == len(buf) else b""   # no new object before the read


MAX_WORDS = 2048     # words examined per block, spread over all of it


def found(addr, data, buf):
    got = read(addr, buf)
    hits = 0
    total = 0
    words = (len(data) - 16) // 8
    step = 8 * max(1, words // MAX_WORDS)
    for off in range(16, len(data) - 7, step):
        if data[off:off + 8] == b"\0" * 8:
            continue               # not part of the secret (a header)
        total += 1
        if got[off:off + 8] == data[off:off + 8]:
            hits += 1
    return hits, total


def decommits():
    return secret.heap_info()["decommits"]


def in_heap(addr):
    info = secret.heap_info()
    return info["base"] <= addr < info["base"] + info["reserved"]


class Freer:
    """A thread that existed before any secret.do(): frees on request."""

    def __init__(self):
        self.q = queue.Queue()
        self.done = queue.Queue()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while True:
            fn = self.q.get()
            if fn is None:
                return
            fn()
            self.done.put(None)

    def call(self, fn):
        self.q.put(fn)
        self.done.get()


def run_case(path, domain, data, protect, freer, buf):
    wrap = secret.do if protect else (lambda f, *a: f(*a))
    if path == "inside":
        def f():
            a = T.alloc_block(domain, data)
            T.free_block(domain, a)
            return a
        addr = wrap(f)
    elif path == "after":
        addr = wrap(T.alloc_block, domain, data)
        T.free_block(domain, addr)
    elif path == "thread":
        addr = wrap(T.alloc_block, domain, data)
        # free and read on the other thread, with nothing in between that
        # could reuse the block there (its allocator cache is per thread)
        out = []
        freer.call(lambda: (T.free_block(domain, addr),
                            out.append(found(addr, data, buf))))
        return addr, out[0]
    else:
        raise ValueError(path)
    return addr, found(addr, data, buf)


def object_case(path, data, protect):
    """bytes objects: freed by refcount inside do, or as cyclic garbage."""
    wrap = secret.do if protect else (lambda f, *a: f(*a))
    # The block holds the object header (32 bytes) then the data.
    if path == "refcount":
        def f():
            b = data + b"\x01"     # a new bytes object, made here
            return T.buffer_address(b) - 32
    elif path == "gc":
        def f():
            b = data + b"\x01"
            c = [b]
            c.append(c)            # a cycle: only the GC frees b
            return T.buffer_address(b) - 32
    else:
        raise ValueError(path)
    gc.disable()
    try:
        addr = wrap(f)
        if path == "gc" and not protect:
            # The control collects by hand; the protected run relies on
            # do()'s exit collection (gc is disabled here).
            gc.collect()
    finally:
        gc.enable()
    return addr


def main():
    T.hold_decommits(True)
    freer = Freer()
    out = {}
    for sname, n in SIZES.items():
        for protect in (False, True):
            kind = "protected" if protect else "control"
            for domain in DOMAINS:
                for path in ("inside", "after", "thread"):
                    data = os.urandom(n)
                    buf = bytearray(n)
                    d0 = decommits()
                    addr, (hits, total) = run_case(path, domain, data,
                                                   protect, freer, buf)
                    out["%s/%s/%s/%s" % (kind, sname, domain, path)] = [
                        hits, total, in_heap(addr), decommits() - d0]
            for path in ("refcount", "gc"):
                data = os.urandom(max(n - 34, 24))   # + 1 below: n - 1 bytes
                # the block: header (32 bytes, not compared) + data; made
                # before the case, so it cannot take the freed block
                expect = b"\0" * 32 + data
                buf = bytearray(len(expect))
                d0 = decommits()
                addr = object_case(path, data, protect)
                hits, total = found(addr, expect, buf)
                out["%s/%s/bytes/%s" % (kind, sname, path)] = [
                    hits, total, in_heap(addr), decommits() - d0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
