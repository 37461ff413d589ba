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
