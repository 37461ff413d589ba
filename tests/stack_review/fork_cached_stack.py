# A child for tests/test_stack_review.py: a case an attack review of the exact
# C-stack erasure found (2026-12-03); the text below describes it as found,
# before the fix (run as the test does).
# Found by review (fixed): a thread that has a reserve (PROT_NONE + hole below its window) and
# is still alive when another thread forks leaves that layout in the child.
# glibc puts the vanished threads' stacks into its stack cache in the child
# (__reclaim_stacks); the next thread created there with the same stack size
# gets that stack, knows nothing of the reserve, and dies with SIGSEGV on a
# recursion > ~1 MiB deep.  (stack_thread_end never ran for that stack.)
import os, sys, threading
import _testsecret as T
use_secret = sys.argv[1] == "protected"
if use_secret:
    import secret
P = b"\x11\x22\x33\x44\x55\x66\x77\x88"
threading.stack_size(8 << 20)
ready, done = threading.Event(), threading.Event()

def worker():                      # a long-lived pool thread that used do()
    if use_secret:
        secret.do(lambda: None)
    ready.set()
    done.wait()

w = threading.Thread(target=worker)
w.start()
ready.wait()
pid = os.fork()                    # e.g. multiprocessing's default 'fork'
if pid == 0:
    out = []
    def deep():                    # no secret.do at all in the child
        T.write_stack_pattern(P, 4 << 20)    # 4 MiB of an 8 MiB stack
        out.append("ok")
    t = threading.Thread(target=deep)
    t.start(); t.join()
    os._exit(0 if out == ["ok"] else 1)
_, status = os.waitpid(pid, 0)
done.set(); w.join()
print(sys.argv[1], "child:", "exit code" if os.WIFEXITED(status) else "killed by signal",
      os.WEXITSTATUS(status) if os.WIFEXITED(status) else os.WTERMSIG(status))
