# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Second reproducer of the unaligned-mmap bug in stack_fault()'s RLIMIT_STACK
# branch (see rlimit_small_crash.py): default 8 MiB thread stacks, the program
# lowers RLIMIT_STACK at run time (e.g. for the children it spawns) and a
# thread with a reserve then goes 3 MiB deep: killed by SIGSEGV (strace shows
# mmap(<unaligned>, ..., MAP_FIXED) = -1 EINVAL inside the handler).  Without
# do() the same program runs (and no mmap lands in the thread's stack).
import ctypes, mmap, resource, sys, threading
import _testsecret as T
mode = sys.argv[1]
P = b"\x11\x22\x33\x44\x55\x66\x77\x88"
threading.stack_size(8 << 20)
e1, e2 = threading.Event(), threading.Event()
box = {}
def worker():
    if mode == "protected":
        import secret
        secret.do(lambda: None)
    box["s"] = T.stack_info()[:2]
    T.write_stack_pattern(P, 3 << 20)
    e1.set(); e2.wait()
resource.setrlimit(resource.RLIMIT_STACK, (512 << 10, resource.RLIM_INFINITY))
t = threading.Thread(target=worker); t.start(); e1.wait()
lo, hi = box["s"]
inside, keep = [], []
for i in range(300):
    m = mmap.mmap(-1, 256 << 10); keep.append(m)
    a = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if lo <= a < hi: inside.append(hex(a))
print(mode, "mmaps placed inside the worker's stack:", inside)
e2.set(); t.join()
