"""A thread made in do() signs (HMAC, four C levels deep), then blocks on a
multiprocessing.Lock (SemLock: its own sem_wait, not a PyThread lock or
the parking lot), as a multiprocessing.Queue consumer does on its read
lock. Not erased yet (docs/limitations.md)."""

import multiprocessing
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "issue26"))
import _idle  # noqa: E402

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("hmac",)
CONTROL_WHERE = ("stack:thread",)
NEEDS = ("heap", "c_stack")
KEEP = []


def loop(ctx, mlock, done):
    _idle.sign_deep(ctx)
    done.set()
    mlock.acquire()


def work(ctx):
    mlock = multiprocessing.Lock()
    mlock.acquire()
    done = threading.Event()
    t = threading.Thread(target=loop, args=(ctx, mlock, done), daemon=True)
    KEEP.append((t, mlock))
    t.start()
    done.wait()
    return True


def teardown(ctx):
    _idle.wait_parked(KEEP[0][0].native_id)
