"""A thread made in do() signs (HMAC, four C levels deep), then writes to a
buffered pipe whose lock another thread holds while blocked on the full
pipe: it waits in _io's own blocking lock acquire (a PyThread lock, not
the parking lot)."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "issue26"))
import _idle  # noqa: E402

DERIVED = (("hmac", "sha256", b"GET /v1/orders"),)
CONTROL_FORMS = ("hmac",)
CONTROL_WHERE = ("stack:thread",)
NEEDS = ("heap", "c_stack")
KEEP = []


def loop(ctx, f, done):
    _idle.sign_deep(ctx)
    done.set()
    f.write(b"log line\n")
    f.flush()


def setup(ctx):
    r, w = os.pipe()
    f = open(w, "wb", buffering=8192)
    holder = threading.Thread(target=lambda: f.write(b"z" * (1 << 20)),
                              daemon=True)
    holder.start()
    time.sleep(0.2)     # the holder now blocks in write() holding f's lock
    KEEP.append((r, f, holder))


def work(ctx):
    f = KEEP[0][1]
    done = threading.Event()
    t = threading.Thread(target=loop, args=(ctx, f, done), daemon=True)
    KEEP.append(t)
    t.start()
    done.wait()
    return True


def teardown(ctx):
    _idle.wait_parked(KEEP[1].native_id)
