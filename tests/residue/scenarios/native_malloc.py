"""ctypes: the key copied into a buffer from the C library's malloc, freed.

What a C extension or library does with a key (issue 23): malloc, copy,
use, free. glibc keeps freed data; in do() the block is secret.
"""

import ctypes

NEEDS = ("heap", "native_heap")
CONTROL_FORMS = ("raw",)
CONTROL_WHERE = ("heap",)


def work(ctx):
    key = ctx.read_secret()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    total = 0
    for size in (64, 1024, 200 * 1024):
        # The key past the first words, which glibc's free overwrites.
        p = libc.malloc(size)
        ctypes.memmove(p + 32, key, len(key))
        total += ctypes.c_ubyte.from_address(p + 32).value
        libc.free(p)
    return total
