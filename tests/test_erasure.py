"""Stack, signal-frame, frame-stack and register erasure (spec §3.1-§3.3).

Each test plants a random 8-byte pattern (os.urandom, never a literal) with
_testsecret, then looks for it right after the call returns: the control
(no secret.do) must find it, else the test proves nothing; the protected
run (inside secret.do) must find none.
"""

import os
import platform
import subprocess
import sys
import threading

import pytest

import secret
from conftest import in_thread

_testsecret = pytest.importorskip("_testsecret")
T = _testsecret

X86_64 = platform.machine() == "x86_64"
needs_x86 = pytest.mark.skipif(not X86_64, reason="x86-64 register helpers")


@pytest.fixture
def pattern():
    p = os.urandom(8)
    while b"\0" in p:
        p = os.urandom(8)
    return p


def run_in_thread(stack_size, body):
    """Run body() in a new thread whose stack is stack_size bytes."""
    in_thread(stack_size, body)


# --- C stack -------------------------------------------------------------

SIZES = [1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024]


@pytest.mark.parametrize("nbytes", SIZES)
def test_stack_pattern_is_erased(pattern, nbytes):
    _, control = T.call_and_scan(pattern, T.write_stack_pattern, pattern,
                                 nbytes)
    assert control > 0
    _, protected = T.call_and_scan(pattern, secret.do, T.write_stack_pattern,
                                   pattern, nbytes)
    assert protected == 0


def test_stack_erased_after_deeper_then_shallower_calls(pattern):
    # The window adapts; a shallow call after a deep one is still exact.
    for n in (1024 * 1024, 1024, 64 * 1024, 2048):
        _, protected = T.call_and_scan(pattern, secret.do,
                                       T.write_stack_pattern, pattern, n)
        assert protected == 0, n


def test_stack_in_thread_with_64_mib_stack(pattern):
    out = {}

    def body():
        for n in (16 * 1024, 1024 * 1024):
            out["control", n] = T.call_and_scan(
                pattern, T.write_stack_pattern, pattern, n)[1]
            out["protected", n] = T.call_and_scan(
                pattern, secret.do, T.write_stack_pattern, pattern, n)[1]

    run_in_thread(64 << 20, body)
    assert out["control", 16 * 1024] > 0
    assert out["control", 1024 * 1024] > 0
    assert out["protected", 16 * 1024] == 0
    assert out["protected", 1024 * 1024] == 0


def test_exception_from_deep_c_frames(pattern):
    exc, control = T.call_and_scan(pattern, T.write_stack_pattern, pattern,
                                   64 * 1024, True)
    assert isinstance(exc, RuntimeError) and control > 0
    exc, protected = T.call_and_scan(pattern, secret.do,
                                     T.write_stack_pattern, pattern,
                                     64 * 1024, True)
    assert isinstance(exc, RuntimeError)
    assert protected == 0


def deep_python_then_c(pattern, depth):
    if depth:
        return deep_python_then_c(pattern, depth - 1)
    return T.write_stack_pattern(pattern, 32 * 1024)


def test_deep_python_recursion(pattern):
    _, control = T.call_and_scan(pattern, deep_python_then_c, pattern, 300)
    assert control > 0
    _, protected = T.call_and_scan(pattern, secret.do, deep_python_then_c,
                                   pattern, 300)
    assert protected == 0


def test_deep_c_recursion_json_dumps(pattern):
    # Nested json.dumps recurses in C (_json's encoder); the pattern is
    # written from the deepest level (its `default` callback), below all
    # those C frames.
    import json

    class Leaf:
        pass

    def default(obj):
        T.write_stack_pattern(pattern, 16 * 1024)
        return None

    def dumps():
        doc = Leaf()
        for _ in range(300):
            doc = [doc]
        return json.dumps(doc, default=default)

    _, control = T.call_and_scan(pattern, dumps)
    assert control > 0
    _, protected = T.call_and_scan(pattern, secret.do, dumps)
    assert protected == 0


# --- registers ---------------------------------------------------------------

@needs_x86
def test_registers_are_erased(pattern):
    _, control = T.call_and_dump(T.fill_registers, pattern)
    found = sorted(r for r, v in control.items() if pattern in v)
    # The vector, x87 and most general registers still hold it.
    assert any(r.startswith(("xmm", "ymm", "zmm")) for r in found), found
    assert any(r.startswith("st") for r in found), found
    _, protected = T.call_and_dump(secret.do, T.fill_registers, pattern)
    assert [r for r, v in protected.items() if pattern in v] == []


@needs_x86
def test_registers_erased_when_func_raises(pattern):
    def f():
        T.fill_registers(pattern)
        raise KeyError("x")

    exc, regs = T.call_and_dump(secret.do, f)
    assert isinstance(exc, KeyError)
    assert [r for r, v in regs.items() if pattern in v] == []


@needs_x86
def test_avx512_is_covered_where_present():
    _, regs = T.call_and_dump(len, "")
    flags = open("/proc/cpuinfo").read()
    if " avx512bw" in flags and " avx512f" in flags:
        assert "zmm31" in regs and "k7" in regs
    else:
        pytest.skip("no AVX-512 on this CPU")


@needs_x86
def test_amx_tiles_are_erased(pattern):
    # AMX tile registers are vector state too (8 x 1 KiB): do() returns
    # them to their initial, zero state when they are in use.
    if not T.amx_fill(pattern):
        pytest.skip("no AMX on this CPU (or the kernel refuses it)")
    assert T.amx_state(pattern) == (True, 128)      # control: tmm0 keeps it
    secret.do(T.amx_fill, pattern)
    assert T.amx_state(pattern) == (False, 0)


@needs_x86
@pytest.mark.parametrize("how", ["mmx", "status", "unbalanced"])
@pytest.mark.parametrize("nested", [False, True])
def test_x87_state_is_erased(pattern, how, nested):
    # The exit resets the x87/MMX state with fninit only when func left
    # the status word non-zero ("status": fxam's class and sign of the
    # secret, a division's precision flag; "unbalanced": a value left on
    # the stack); else ("mmx": MMX registers, tags valid, status zero) it
    # empties the tags and loads zeros, without fninit. Each must leave no
    # copy, the status word zero, the tags empty and the control word
    # the default.
    _, cw, sw, tw, regs = T.x87_after(T.x87_fill, pattern, how)
    assert pattern in regs                          # control
    assert (sw != 0) == (how != "mmx")              # control: the path
    func = T.x87_fill
    if nested:
        def func(p, h):
            secret.do(len, "")
            T.x87_fill(p, h)
            secret.do(len, "")
            T.x87_fill(p, h)
    _, cw, sw, tw, regs = T.x87_after(secret.do, func, pattern, how)
    assert pattern not in regs
    assert (cw, sw, tw) == (0x37F, 0, 0xFFFF)


# --- interpreter frame stack -------------------------------------------------

def test_frame_stack_is_erased(pattern):
    # func's Python frames hold pointers to its objects in the frame stack
    # (spec §3.3); after they return, those frames are dead memory above
    # the top of the current chunk. Look for the object's address there.
    holder = bytearray(pattern)
    needle = id(holder).to_bytes(8, sys.byteorder)

    def recurse(n, obj):
        x = y = z = obj  # noqa: F841 (locals in the frame)
        return recurse(n - 1, obj) if n else 0

    def dead_frames():
        top, limit = T.frame_stack_info()
        return T.count_in_range(top, limit - top, needle)

    recurse(10, holder)
    assert dead_frames() > 0  # control
    secret.do(recurse, 10, holder)
    assert dead_frames() == 0


def test_frame_stack_window_widens_and_is_erased(pattern):
    # do() lowers the frame stack's limit to a 4 KiB window above the top
    # (only what func can reach is zeroed at exit), widens it when func
    # goes deeper and restores the chunk's end at exit. In a new thread,
    # so the chunk has room whatever pytest's own depth.
    holder = bytearray(pattern)
    needle = id(holder).to_bytes(8, sys.byteorder)
    out = {}

    def recurse(n, obj, seen):
        x = y = z = obj  # noqa: F841 (locals in the frame)
        if n:
            return recurse(n - 1, obj, seen)
        seen["bottom"] = T.frame_stack_info()
        return 0

    def func(n, seen):
        seen["entry"] = T.frame_stack_info()
        return recurse(n, holder, seen)

    def body():
        top, end = T.frame_stack_info()
        out["chunk"] = (top, end)
        for name, n, run in (
                ("shallow", 10, secret.do),
                ("deeper", 60, secret.do),
                ("new chunk", 400, secret.do),
                ("nested", 60, lambda f, *a: secret.do(secret.do, f, *a))):
            func(n, {})
            control = T.count_in_range(top, end - top, needle)
            seen = {}
            run(func, n, seen)
            out[name] = (control, seen, T.frame_stack_info(),
                         T.count_in_range(top, end - top, needle))

    run_in_thread(1 << 20, body)
    top, end = out["chunk"]
    assert end - top > 8192, out["chunk"]
    for name in ("shallow", "deeper", "new chunk", "nested"):
        control, seen, after, protected = out[name]
        assert control > 0, name
        assert after == (top, end), name     # the chunk's end is back
        assert protected == 0, name
    # do() was called from body(), whose frame stack top is `top`.
    entry, bottom = out["shallow"][1]["entry"], out["shallow"][1]["bottom"]
    assert entry[1] == top + 4096            # the window
    assert bottom[1] == entry[1]             # not widened: never needed
    entry, bottom = out["deeper"][1]["entry"], out["deeper"][1]["bottom"]
    assert entry[1] == top + 4096
    assert entry[1] < bottom[1] <= end       # widened within the chunk
    bottom = out["new chunk"][1]["bottom"]
    assert not top <= bottom[0] <= end       # went on in a new chunk


# --- signals and the alternate signal stack ------------------------------

SIGNAL_CHILD = r"""
import faulthandler, os, signal, sys
import secret, _testsecret as T
P = bytes.fromhex(sys.stdin.readline().strip())
mode, alt = sys.argv[1], sys.argv[2] == "alt"
if alt:
    faulthandler.enable()
hits = []
signal.signal(signal.SIGALRM, lambda *a: hits.append(1))

def spin():
    signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
    T.spin_with_pattern(P, 200_000_000)

if mode == "control":
    _, stack = T.call_and_scan(P, spin)
else:
    _, stack = T.call_and_scan(P, secret.do, spin)
a = T.altstack_info()
altc = T.count_in_range(a[0], a[1], P) if a else -1
print(len(hits), stack, altc)
"""


def run_signal_child(mode, where, pattern):
    r = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, mode, where],
                       input=pattern.hex() + "\n", capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hits, stack, alt = map(int, r.stdout.split())
    assert hits > 0
    return stack, alt


@needs_x86
def test_signal_frames_on_alternate_stack(pattern):
    stack, alt = run_signal_child("control", "alt", pattern)
    assert alt > 0
    stack, alt = run_signal_child("protected", "alt", pattern)
    assert (stack, alt) == (0, 0)


@needs_x86
def test_signal_frames_on_thread_stack(pattern):
    stack, alt = run_signal_child("control", "noalt", pattern)
    assert stack > 0 and alt == -1
    stack, alt = run_signal_child("protected", "noalt", pattern)
    assert stack == 0


# --- threads that inherited secret mode ----------------------------------

def test_inherited_thread_stack_erased_at_exit(pattern):
    info = {}

    def child():
        info["bounds"] = T.stack_info()
        T.write_stack_pattern(pattern, 200 * 1024)

    def start_and_join():
        t = threading.Thread(target=child)
        t.start()
        t.join()

    start_and_join()
    lo, hi, _ = info["bounds"]
    assert T.count_in_range(lo, hi - lo, pattern) > 0  # control
    secret.do(start_and_join)
    lo, hi, _ = info["bounds"]
    assert T.count_in_range(lo, hi - lo, pattern) == 0


# --- KeyboardInterrupt and SystemExit ------------------------------------

def test_keyboard_interrupt_and_system_exit(pattern):
    import signal

    def interrupted():
        T.write_stack_pattern(pattern, 64 * 1024)
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):
            pass

    def exits():
        T.write_stack_pattern(pattern, 64 * 1024)
        sys.exit(1)

    for func, exc in ((interrupted, KeyboardInterrupt), (exits, SystemExit)):
        got, control = T.call_and_scan(pattern, func)
        assert isinstance(got, exc) and control > 0
        got, protected = T.call_and_scan(pattern, secret.do, func)
        assert isinstance(got, exc)
        assert protected == 0


# --- cost follows the depth used ------------------------------------------

def rss_of_mapping(addr):
    """Resident KiB of the mapping that holds addr (/proc/self/smaps)."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                inside = lo <= addr < hi
            elif inside and head[0] == "Rss:":
                return int(head[1])
    raise AssertionError("no mapping holds %#x" % addr)


def test_untouched_stack_pages_are_not_faulted_in(pattern):
    # A thread with a 64 MiB stack: erasing after do() touches only what
    # func used, even after a deep (1 MiB) call escalated below the window.
    out = {}

    def body():
        lo, hi, sp = T.stack_info()
        for n in (16 * 1024, 1024 * 1024, 16 * 1024):
            T.call_and_scan(pattern, secret.do, T.write_stack_pattern,
                            pattern, n)
            out[n] = rss_of_mapping(sp)
        out["size"] = (hi - lo) // 1024

    run_in_thread(64 << 20, body)
    assert out["size"] >= 64 * 1024
    # ~1 MiB used (plus the interpreter's own frames), far from 64 MiB.
    assert out[1024 * 1024] < 2 * 1024, out


# --- never zero outside the thread's own stack -------------------------------

def test_threads_started_in_do_survive_their_neighbours_exit():
    # Thread stacks lie next to each other; the erasure at a secret thread's
    # end must stop at its own stack (the one below holds another thread's
    # TLS). This crashed before the floor was enforced.
    code = "\n".join([
        "import secret, threading",
        "def work():",
        "    ts = [threading.Thread(target=lambda: None) for i in range(4)]",
        "    for t in ts: t.start()",
        "    for t in ts: t.join()",
        "for _ in range(100):",
        "    secret.do(work)",
        "print('ok')",
    ])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr[-2000:]


def test_small_thread_stack_after_deep_call(pattern):
    # A 128 KiB thread stack: a deep call grows the window, and the next
    # calls must clamp it to the stack that is left.
    out = []

    def body():
        for n in (100 * 1024, 1024, 90 * 1024, 0):
            out.append(T.call_and_scan(pattern, secret.do,
                                       T.write_stack_pattern, pattern, n)[1])

    run_in_thread(128 << 10, body)
    assert out == [0, 0, 0, 0]
