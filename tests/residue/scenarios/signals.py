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


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


_libc = ctypes.CDLL(None)
_libc.memmem.restype = ctypes.c_void_p
_libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                         ctypes.c_char_p, ctypes.c_size_t]


def _altstack_holds(key):
    st = _StackT()
    if _libc.sigaltstack(None, ctypes.byref(st)) != 0 or not st.ss_sp:
        return False
    return _libc.memmem(st.ss_sp, st.ss_size, key, len(key)) is not None


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
    # one decides what stays there, and whether the ticks above leave the
    # secret whole in a register changes from build to build and CPU to
    # CPU (where the allocator put the copies, how wide the vectors are).
    # So the last signal is taken inside a long copy by glibc's memmove,
    # which loads consecutive vectors into consecutive registers at
    # multiples of 32 bytes from the start of this pattern: lo hi hi lo
    # (the secret's 16-byte halves). However the kernel lays registers out
    # in the frame, one holds the secret whole: AVX2 saves each ymm0-15 as
    # two 16-byte halves in two areas (lo hi lo hi, hi lo hi lo), EVEX and
    # AVX-512 save ymm16-31 and zmm16-31 whole (lo hi; hi lo | lo hi).
    # (The secret repeated whole left only split halves on an AMD EPYC
    # with AVX2 and no AVX-512.) The signal can still come outside the
    # copy (the process preempted before it starts): the copy is repeated
    # until the alternate stack holds the secret (memmem, no copy made).
    half = len(key) // 2
    src = (key + key[half:] + key[:half]) * (8 * 2**20 // len(key))
    dst = bytearray(len(src) + 64)
    base = ctypes.addressof(ctypes.c_char.from_buffer(dst))
    to = base + (-base % 64)
    for _ in range(50):
        signal.setitimer(signal.ITIMER_REAL, 5e-4)
        ctypes.memmove(to, src, len(src))
        time.sleep(0)                 # the handler has run by now
        if _altstack_holds(key):
            break
    return n


def teardown(ctx):
    signal.signal(signal.SIGALRM, ctx.state.pop("old"))
