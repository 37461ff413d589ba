# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): _PySecretStack_Leave scans func's dead stack with SSE loads (or_words
# -> xmm0..xmm3) AFTER the alternate signal stack was checked/erased and AFTER
# the first register wipe.  A signal whose handler runs on the altstack during
# that interval saves xmm0..3 (holding func's bytes) into a frame on the
# altstack, which survives do()'s return.
import faulthandler, os, random, signal, sys, time
import secret, _testsecret as T

mode = sys.argv[1] if len(sys.argv) > 1 else "protected"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
faulthandler.enable()          # gives the main thread an alternate signal stack
alt = T.altstack_info()
assert alt is not None
signal.signal(signal.SIGALRM, lambda *a: None)   # CPython installs it SA_ONSTACK

P = os.urandom(8)
while b"\0" in P:
    P = os.urandom(8)
DEPTH = int(os.environ.get("DEPTH", 2 << 20))
if mode == "protected":
    call = lambda: secret.do(T.write_stack_pattern, P, DEPTH)
else:  # control: the signal lands while func itself runs, no do()
    call = lambda: T.write_stack_pattern(P, DEPTH)

# time one call to choose timer delays that fall inside it
t0 = time.perf_counter()
for _ in range(20):
    call()
dur = (time.perf_counter() - t0) / 20
hits = 0
rng = random.Random(1)
for i in range(N):
    signal.setitimer(signal.ITIMER_REAL, max(1e-6, rng.uniform(0, dur * 1.2)))
    call()
    signal.setitimer(signal.ITIMER_REAL, 0)   # disarm before looking
    n = T.count_in_range(alt[0], alt[1], P)
    if n:
        hits += 1
        # wipe so the next iteration is independent
    if n and mode == "protected" and hits == 1:
        print("first hit at iteration", i, "copies on altstack:", n)
    # clear the altstack between trials (outside do, so this is only hygiene)
    secret.do(lambda: None)
print(mode, "do duration %.1f us" % (dur * 1e6), "iterations", N,
      "trials leaving P on the altstack after return:", hits)
