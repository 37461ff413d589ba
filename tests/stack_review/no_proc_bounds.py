# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): if pthread_getattr_np() fails on the main thread at the FIRST do()
# (glibc reads /proc/self/maps for the main thread: fails when the process is
# out of file descriptors, or /proc is not mounted/readable), bounds() caches
# a fake stack [here-8KiB, here) for good; every later do() on that thread
# takes the "stack that is not the thread's" path and erases only the page
# below its frame.  Silently, for the life of the thread.
import os, resource, sys
import secret, _testsecret as T
P = os.urandom(8).replace(b"\0", b"\1")
mode = sys.argv[1]
secret.protections()    # the secret heap reserved (and its warning) first
if mode == "fd-exhausted":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    fds = []
    try:
        while True:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    secret.do(lambda: None)          # first do() while EMFILE
    for fd in fds:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
else:
    secret.do(lambda: None)          # first do() in normal conditions
ctrl = T.call_and_scan(P, T.write_stack_pattern, P, 64 << 10)[1]
prot = T.call_and_scan(P, secret.do, T.write_stack_pattern, P, 64 << 10)[1]
print(mode, "control copies:", ctrl, " after secret.do copies:", prot)
