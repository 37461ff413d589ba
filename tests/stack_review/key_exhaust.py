# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): init_once() ignores pthread_key_create()'s failure; the
# static thread_end_key stays 0, so setup() calls pthread_setspecific(0, 1):
# it overwrites the value of whatever key 0 is (somebody else's), that key's
# destructor receives (void *)1, and stack_thread_end never runs (the thread's
# stack goes back to glibc's cache with its reserve).
import ctypes, sys, threading
libc = ctypes.CDLL(None)
DTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
seen = []
@DTOR
def key0_dtor(v):           # stands for a library's own TSD destructor
    seen.append(v)
import secret
secret.protections()        # reserves the secret heap (its own key) first
k = ctypes.c_uint()
keys = []
while libc.pthread_key_create(ctypes.byref(k), key0_dtor if not keys else None) == 0:
    keys.append(k.value)
print("keys taken:", len(keys), "first:", keys[0])
if sys.argv[1] == "protected":
    import secret
    do = secret.do
else:
    do = lambda f: f()
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
def w():
    do(lambda: None)
    arr = (ctypes.c_int * 2)(1, 0)   # a ctypes callback: PyGILState_Ensure()
    libc.qsort(arr, 2, 4, CMP(lambda a, b: 0))
    print("callback ok")
t = threading.Thread(target=w); t.start(); t.join()
print(sys.argv[1], "key-0 destructor called with:", seen)
