# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): stack_fault()'s RLIMIT_STACK branch computes an unaligned address:
#   chunk = (gd_top - p) / 8  (a multiple of 512, not of the page size)
#   p = p - chunk             -> mmap(MAP_FIXED) fails with EINVAL
# so the fault is not handled and the process dies.  It happens whenever
# RLIMIT_STACK/8 < the hole (1 MiB), i.e. RLIMIT_STACK < 8 MiB, on a thread
# whose stack is larger than RLIMIT_STACK (threading.stack_size(), or the
# limit lowered after the thread started).  Pristine threads ignore
# RLIMIT_STACK entirely.
# run:  sh -c 'ulimit -s 2048; python rlimit_small_crash.py protected'
import resource, sys, threading
import _testsecret as T
mode = sys.argv[1]
print("RLIMIT_STACK", resource.getrlimit(resource.RLIMIT_STACK))
threading.stack_size(16 << 20)              # an app that wants deep recursion
def worker():
    if mode == "protected":
        import secret
        secret.do(lambda: None)
    T.write_stack_pattern(b"\x11" * 8, 6 << 20)
    print(mode, "6 MiB deep: ok")
t = threading.Thread(target=worker); t.start(); t.join()
