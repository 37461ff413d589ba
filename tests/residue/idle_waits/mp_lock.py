"""A thread made in do() signs (HMAC, two C levels deep), then blocks on a
multiprocessing.Lock (SemLock: its own sem_wait, not a PyThread lock or
the parking lot), as a multiprocessing.Queue consumer does on its read
lock. Not erased yet (docs/limitations.md)."""

import hmac
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


def through_c(n, f):
    return list(map(lambda _: through_c(n - 1, f) if n else f(), [0]))[0]


def loop(ctx, mlock, done):
    key = ctx.read_secret()
    through_c(2, lambda: hmac.digest(key, b"GET /v1/orders", "sha256"))
    key = None
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
