"""Signals: SIGALRM at 10 kHz during the work, faulthandler on.

faulthandler installs the alternate signal stack, and CPython's handlers
run on it (SA_ONSTACK): the kernel's signal frames land there.
"""

import faulthandler
import signal

CONTROL_WHERE = ("altstack",)
NEEDS = ("heap", "c_stack", "signal_frames")


def _tick(signum, frame):
    pass


def setup(ctx):
    faulthandler.enable()         # installs the alternate signal stack
    ctx.state["old"] = signal.signal(signal.SIGALRM, _tick)


def work(ctx):
    key = ctx.read_secret()
    signal.setitimer(signal.ITIMER_REAL, 1e-4, 1e-4)
    n = 0
    # Copying and searching keep the secret in vector registers most of
    # the time, so the register state the kernel saves in each signal
    # frame (on the alternate stack) often holds it.
    for _ in range(800):
        n += (key * 1024).count(key)
    # Stopped here, so the last frame written was taken during the work.
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    return n


def teardown(ctx):
    signal.signal(signal.SIGALRM, ctx.state.pop("old"))
