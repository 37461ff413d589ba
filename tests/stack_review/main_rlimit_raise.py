# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): the main thread's floor (pthread_getattr_np: top - RLIMIT_STACK) is
# cached at the first do().  If the program raises RLIMIT_STACK afterwards, the
# kernel lets the main stack grow below that floor; mapping_start() stops at
# hole_lo == floor, so do()'s exit never zeroes what func wrote below it.
import os, resource, sys
import secret, _testsecret as T
P = os.urandom(8).replace(b"\0", b"\1")
mode = sys.argv[1]
lo0, hi, _ = T.stack_info()
secret.do(lambda: None)                        # first do(): floor cached
soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
resource.setrlimit(resource.RLIMIT_STACK, (64 << 20, hard))
lo = hi - (64 << 20)
if mode == "protected":
    secret.do(T.write_stack_pattern, P, 12 << 20)
else:
    T.write_stack_pattern(P, 12 << 20)
below_floor = T.count_in_range(lo, lo0 - lo, P)
total = T.count_in_range(lo, hi - lo, P)
print(mode, "copies below the cached floor:", below_floor, " in whole stack:", total)
