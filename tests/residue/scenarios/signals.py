"""Signals: SIGALRM at 10 kHz during the work, faulthandler on.

faulthandler installs the alternate signal stack, and CPython's handlers
run on it (SA_ONSTACK): the kernel's signal frames land there.
"""

import ctypes
import faulthandler
import signal
import time

CONTROL_WHERE = ("altstack",)
NEEDS = ("heap", "c_stack", "signal_frames")

_ticks = [0]


def _tick(signum, frame):
    _ticks[0] += 1


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
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    # Every frame lands at the same place on the alternate stack: the last
    # one decides what stays there. Whether the ticks above leave the
    # secret whole in a register depends on where the allocator put the
    # copies (glibc's memcpy loads them at 32-byte boundaries of the
    # destination: a copy that starts 16 bytes off is split across two
    # registers), which changes from build to build. So the last signal
    # is taken inside a long copy to a 64-byte aligned destination (a
    # 32-byte secret, the scanner's default, then sits whole at every
    # 32-byte boundary), from a one-shot timer, repeated
    # until the copy outlasted the timer by a millisecond and exactly that
    # one signal came.
    src = key * (16 * 2**20 // len(key))
    dst = bytearray(len(src) + 64)
    base = ctypes.addressof(ctypes.c_char.from_buffer(dst))
    to = base + (-base % 64)
    for _ in range(20):
        before = _ticks[0]
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, 5e-4)
        ctypes.memmove(to, src, len(src))
        elapsed = time.perf_counter() - start
        time.sleep(0)                 # the handler has run by now
        if _ticks[0] == before + 1 and elapsed > 1.5e-3:
            break
    return n


def teardown(ctx):
    signal.signal(signal.SIGALRM, ctx.state.pop("old"))
