"""Shared by the idle-worker scenarios: wait until a thread is parked."""

import os
import time


def wait_parked(native_id, polls=10):
    """Return once the thread has been blocked in futex() for `polls`
    looks in a row, 10 ms apart, while this thread sleeps (so the GIL is
    free: a thread waiting for it would have taken it)."""
    path = "/proc/self/task/%d/syscall" % native_id
    seen = 0
    deadline = time.monotonic() + 30
    while seen < polls and time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            with open(path) as f:
                nr = f.read().split()[0]
        except OSError:
            return
        seen = seen + 1 if nr == str(FUTEX) else 0


FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine, 202)


# A scenario's DERIVED names this message (the scanner reads it as a
# literal): (("hmac", "sha256", b"GET /v1/orders"),).
MESSAGE = b"GET /v1/orders"


def through_c(n, f):
    """f() called n + 1 levels of C calls down (map), as a framework's
    dispatch would: its C frames lie deeper than the thread's later wait."""
    return list(map(lambda _: through_c(n - 1, f) if n else f(), [0]))[0]


def sign_deep(ctx):
    """The task a waiting thread finished: the key read and an HMAC tag
    computed four C levels down; nothing of it is kept."""
    import hmac
    key = ctx.read_secret()
    through_c(4, lambda: hmac.digest(key, MESSAGE, "sha256"))
