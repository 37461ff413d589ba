# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# The trim race in pure Python: a subinterpreter with its own
# GIL, in another thread, maps and unmaps 1.5 MiB with the mmap module while a
# thread of the main interpreter runs secret.do() calls that go 3 MiB deep.
# trim() munmap()s the grown stack and only then mmap(MAP_FIXED, PROT_NONE)s
# the reserve: an mmap() placed in between is silently replaced by PROT_NONE,
# and the subinterpreter's next access to its own mmap object is a SIGSEGV.
# Control: the same without secret.do runs for the whole duration.
import sys, threading, time, _interpreters
import _testsecret as T
mode = sys.argv[1]
DUR = float(sys.argv[2]) if len(sys.argv) > 2 else 30
if mode == "protected":
    import secret
    do = secret.do
else:
    do = lambda f, *a: f(*a)
P = b"\x11\x22\x33\x44\x55\x66\x77\x88"
threading.stack_size(8 << 20)
stop = threading.Event()
count = [0]
def worker():
    do(lambda: None)
    while not stop.is_set():
        do(T.write_stack_pattern, P, 3 << 20)
        count[0] += 1
interp = _interpreters.create()   # isolated: own GIL, own obmalloc
code = f"""
import time, mmap
end = time.time() + {DUR}
n = 0
while time.time() < end:
    m = mmap.mmap(-1, 3 << 19); m[0] = 1; m[-1] = 1
    m.close()
    n += 1
"""
def sub():
    _interpreters.exec(interp, code)
t = threading.Thread(target=worker); t.start()
s = threading.Thread(target=sub); s.start()
s.join(); stop.set(); t.join()
print(mode, "survived; do() calls:", count[0])
