# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): on a thread whose stack is larger than RLIMIT_STACK, a do() called
# more than RLIMIT_STACK below the thread's first do() trims, at exit, inside
# the PLAIN mapping that stack_fault()'s MAPERR branch made.  The hole it then
# leaves (<= 1 MiB) lies under a plain mapping, which the kernel's stack guard
# gap does not protect: any mmap() in the process may be placed inside the
# thread's stack, and the thread's next deep call writes straight into it.
import ctypes, mmap, os, resource, sys, threading
import _testsecret as T
use_secret = sys.argv[1] == "protected"
if use_secret:
    import secret
    do = secret.do
else:
    do = lambda f, *a: f(*a)
P = b"\x11\x22\x33\x44\x55\x66\x77\x88"
print("RLIMIT_STACK", resource.getrlimit(resource.RLIMIT_STACK))
threading.stack_size(64 << 20)
phase1, phase2, phase3, phase4 = (threading.Event() for _ in range(4))
info = {}

def worker():
    do(lambda: None)                                  # sets the stack up
    info["stack"] = T.stack_info()[:2]
    # deep code (20 MiB down) that calls do() there
    T.call_below_gap(10 << 20, lambda: T.call_below_gap(10 << 20,
        lambda: do(T.write_stack_pattern, P, 2 << 20)))
    phase1.set(); phase2.wait()
    T.write_stack_pattern(P, 24 << 20)                # deep again, no do()
    phase3.set(); phase4.wait()

t = threading.Thread(target=worker); t.start()
phase1.wait()
lo, hi = info["stack"]
maps, inside = [], []
for i in range(400):                  # ordinary allocations in another thread
    m = mmap.mmap(-1, 256 << 10)
    m.write(b"\xAA" * len(m))
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    maps.append(m)
    if lo <= addr < hi:
        inside.append((m, addr))
print(sys.argv[1], "mmap()s placed inside the thread's stack [%#x, %#x):" % (lo, hi),
      [hex(a) for m, a in inside])
phase2.set(); phase3.wait()          # thread went deep again, still alive
bad = sum(1 for m, a in inside if m[:] != b"\xAA" * len(m))
pat = sum(m[:].count(P) for m, a in inside)
print(sys.argv[1], "of those, contents overwritten by the thread's stack:", bad,
      "(copies of the thread's stack pattern inside them: %d)" % pat)
phase4.set(); t.join()   # glibc frees the 64 MiB stack (over its cache limit)
print(sys.argv[1], "after the thread ended, reading them again ...", flush=True)
print(sum(len(m[:]) for m, a in inside), "bytes read: ok")
