"""Shared by the children of tests/test_native_heap.py: the C library's
allocator functions through ctypes (what the process binds the names to:
the interpreter's, spec §3.4), the test helper library of
tests/native/malloc_probe.c, and reads of freed memory."""

import ctypes
import os
import sys

import secret

try:
    import _testsecret as T
except ImportError:         # pristine: no secret heap
    T = None

LIBC = ctypes.CDLL(None, use_errno=True)
V, S = ctypes.c_void_p, ctypes.c_size_t
for name, res, args in [
        ("malloc", V, [S]), ("calloc", V, [S, S]), ("realloc", V, [V, S]),
        ("reallocarray", V, [V, S, S]), ("free", None, [V]),
        ("malloc_usable_size", S, [V]), ("memalign", V, [S, S]),
        ("aligned_alloc", V, [S, S]), ("valloc", V, [S]),
        ("pvalloc", V, [S]),
        ("posix_memalign", ctypes.c_int, [ctypes.POINTER(V), S, S])]:
    f = getattr(LIBC, name)
    f.restype, f.argtypes = res, args

PROBE = None
if len(sys.argv) > 1 and sys.argv[1].endswith(".so"):
    PROBE = ctypes.CDLL(sys.argv.pop(1))
    PROBE.churn_start.restype = V
    PROBE.churn_start.argtypes = [S, S]
    PROBE.churn_stop.restype = ctypes.c_long
    PROBE.churn_stop.argtypes = [V, ctypes.POINTER(ctypes.c_long)]
    PROBE.free_in_pthread.argtypes = [V]
    PROBE.realloc_in_pthread.restype = V
    PROBE.realloc_in_pthread.argtypes = [V, S]
    PROBE.malloc_in_pthread.restype = V
    PROBE.malloc_in_pthread.argtypes = [S]

MEM = open("/proc/self/mem", "rb", buffering=0)


_range = []


def heap_range():
    """The secret heap's range (reserved by this call if need be); read
    once: heap_info() reads /proc and allocates."""
    if not _range:
        secret.protections()
        info = secret.heap_info()
        _range[:] = [info["base"], info["reserved"]]
    return tuple(_range)


def is_secret(addr):
    base, size = heap_range()
    return addr is not None and base <= addr < base + size


def posix_memalign(align, n):
    p = V()
    err = LIBC.posix_memalign(ctypes.byref(p), align, n)
    return err, p.value


def alloc(kind, n, align=64):
    """One block of n bytes by kind; its address (or None)."""
    if kind == "malloc":
        return LIBC.malloc(n)
    if kind == "calloc":
        return LIBC.calloc(1, n)
    if kind == "realloc":
        return LIBC.realloc(None, n)
    if kind == "reallocarray":
        return LIBC.reallocarray(None, 1, n)
    if kind == "memalign":
        return LIBC.memalign(align, n)
    if kind == "aligned_alloc":
        return LIBC.aligned_alloc(align, n)
    if kind == "posix_memalign":
        err, p = posix_memalign(align, n)
        return p if err == 0 else None
    if kind == "valloc":
        return LIBC.valloc(n)
    if kind == "pvalloc":
        return LIBC.pvalloc(n)
    raise ValueError(kind)


KINDS = ("malloc", "calloc", "realloc", "reallocarray", "memalign",
         "aligned_alloc", "posix_memalign", "valloc", "pvalloc")


def fill(addr, data):
    ctypes.memmove(addr, data, len(data))


def read(addr, buf):
    """Read len(buf) bytes at addr into buf (made before the block was
    freed); b"" if unreadable."""
    try:
        MEM.seek(addr)
        n = MEM.readinto(buf)
    except OSError:
        n = 0
    return buf if n == len(buf) else b""


def hits(addr, data, buf):
    """How many 8-byte words of data (from offset 32: allocators keep their
    links in the first words of a freed block) are still at addr."""
    got = read(addr, buf)
    n = 0
    for off in range(32, len(data) - 7, 8):
        if got[off:off + 8] == data[off:off + 8]:
            n += 1
    return n


def pattern(n):
    return os.urandom(n).replace(b"\0", b"\1")
