# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): do() erases only the thread's CURRENT alternate signal stack.
# A thread with a reserve runs its handlers on the 64 KiB stack the core mapped
# for it (stk.own_altstack).  If func's signal frame lands there and func then
# enables faulthandler (first enable in the process: faulthandler installs its
# own alternate stack on this thread and tells the core), the exit checks the
# new stack only; the core's own stack keeps func's registers.
import faulthandler, signal, sys, threading
import secret, _testsecret as T
P = b"\x5e\xc7\x31\x7a\x9b\x2d\x44\xe8"
mode = sys.argv[1]
signal.signal(signal.SIGPROF, lambda *a: None)   # SA_ONSTACK, runs in any thread
out = {}
def func():
    signal.setitimer(signal.ITIMER_PROF, 0.0005, 0.0005)
    T.spin_with_pattern(P, 300_000_000)          # P in xmm0/xmm1/r8/r9 while spinning
    signal.setitimer(signal.ITIMER_PROF, 0)
    if mode == "replace":
        faulthandler.enable()                    # switches this thread's altstack
def worker():
    secret.do(lambda: None)                      # sets up; own altstack mapped
    a1 = T.altstack_info()
    (func() if mode == "nodo" else secret.do(func))   # nodo: control
    out["old"] = T.count_in_range(a1[0], a1[1], P)
    out["a1"], out["now"] = a1, T.altstack_info()
t = threading.Thread(target=worker); t.start(); t.join()
print(mode, "copies of P on the core's own altstack after do():", out["old"],
      "(altstack then %s, now %s)" % (out["a1"], out["now"]))
