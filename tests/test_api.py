"""The API of spec §2 on the experiment interpreter: do(), enabled(),
supported(), protections(); every way out of do(); bad use; threads;
subinterpreters."""

import _thread
import asyncio
import gc
import platform
import signal
import sys
import threading
import warnings

import pytest

import secret
from conftest import ASAN


def test_do_returns_result_and_passes_arguments():
    def f(a, b, *, c):
        return (a, b, c)

    assert secret.do(f, 1, 2, c=3) == (1, 2, 3)
    assert secret.do(lambda x: x + 1, 1) == 2


def test_func_is_positional_only():
    # A keyword named `func` belongs to the called function.
    assert secret.do(lambda **kw: kw, func=1) == {"func": 1}
    with pytest.raises(TypeError, match="func"):
        secret.do()
    with pytest.raises(TypeError, match="func"):
        secret.do(func=len)


def test_enabled_inside_and_outside():
    assert secret.enabled() is False
    assert secret.do(secret.enabled) is True
    assert secret.enabled() is False


def test_nesting():
    seen = []

    def inner():
        seen.append(("inner", secret.enabled()))

    def outer():
        seen.append(("outer-before", secret.enabled()))
        secret.do(inner)
        seen.append(("outer-after", secret.enabled()))

    secret.do(outer)
    assert seen == [("outer-before", True), ("inner", True),
                    ("outer-after", True)]
    assert secret.enabled() is False


def raise_keyboard_interrupt():
    # A real SIGINT, handled by CPython's default handler.
    signal.raise_signal(signal.SIGINT)
    for _ in range(1000):  # the handler runs at the next eval breaker
        pass
    raise AssertionError("SIGINT did not raise")


def recurse(n=0):
    return recurse(n + 1) + 1


def raise_memory_error():
    bytearray(1 << 62)


def raise_system_exit():
    sys.exit(3)


def raise_value_error():
    raise ValueError("boom")


def thread_exit():
    _thread.exit()


@pytest.mark.parametrize("func, exc", [
    (raise_value_error, ValueError),
    (raise_keyboard_interrupt, KeyboardInterrupt),
    (raise_system_exit, SystemExit),
    (thread_exit, SystemExit),
    (raise_memory_error, MemoryError),
    (recurse, RecursionError),
])
def test_every_exception_leaves_secret_mode(func, exc):
    inside = []

    def f():
        inside.append(secret.enabled())
        func()

    with pytest.raises(exc):
        secret.do(f)
    assert inside == [True]
    assert secret.enabled() is False

    # Nested: the outer do is still in force after the inner one raised.
    def outer():
        with pytest.raises(exc):
            secret.do(f)
        return secret.enabled()

    assert secret.do(outer) is True
    assert secret.enabled() is False


def test_exception_is_the_original():
    err = ValueError("x")

    def f():
        raise err

    with pytest.raises(ValueError) as info:
        secret.do(f)
    assert info.value is err


def test_thread_exit_in_a_thread_leaves_secret_mode():
    after = []

    def body():
        try:
            secret.do(_thread.exit)
        except SystemExit:  # what _thread.exit() raises to end the thread
            after.append(secret.enabled())

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert after == [False]


@pytest.mark.parametrize("bad", [None, 1, "f", b"", [len]])
def test_non_callable_is_type_error(bad):
    with pytest.raises(TypeError, match="callable"):
        secret.do(bad)
    assert secret.enabled() is False


def test_non_callable_runs_nothing():
    ran = []

    class Arg:
        def __index__(self):
            ran.append(1)
            return 1

    with pytest.raises(TypeError):
        secret.do(42, Arg())
    assert ran == []


def gen_func(log):
    try:
        log.append(("started", secret.enabled()))
        yield 1
    finally:
        log.append(("finally", secret.enabled()))


def test_generator_result_is_closed_in_secret_mode():
    log = []
    kept = []

    def f():
        g = gen_func(log)
        next(g)  # started: its finally runs when it is closed
        kept.append(g)
        return g

    with pytest.raises(TypeError, match="generator"):
        secret.do(f)
    assert log == [("started", True), ("finally", True)]
    assert kept[0].gi_frame is None  # closed
    assert secret.enabled() is False


def test_unstarted_generator_is_closed():
    kept = []

    def f():
        g = gen_func([])
        kept.append(g)
        return g

    with pytest.raises(TypeError, match="generator"):
        secret.do(f)
    assert kept[0].gi_frame is None


def test_generator_whose_close_fails():
    def bad():
        try:
            yield 1
        finally:
            raise OSError("close failed")

    def f():
        g = bad()
        next(g)
        return g

    with pytest.raises(TypeError, match="generator") as info:
        secret.do(f)
    assert isinstance(info.value.__cause__, OSError)
    assert secret.enabled() is False


def test_coroutine_result_is_closed():
    kept = []

    async def coro():
        return 1

    def f():
        c = coro()
        kept.append(c)
        return c

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "never awaited" would be an error
        with pytest.raises(TypeError, match="coroutine"):
            secret.do(f)
        assert kept[0].cr_frame is None
        kept.clear()
        gc.collect()
    # An async def function passed directly: same.
    with pytest.raises(TypeError, match="coroutine"):
        secret.do(coro)


def test_async_generator_result_is_closed():
    kept = []

    async def agen():
        yield 1

    def f():
        a = agen()
        kept.append(a)
        return a

    with pytest.raises(TypeError, match="async generator"):
        secret.do(f)
    with pytest.raises(StopAsyncIteration):
        # Closed: it can no longer produce anything.
        asyncio.run(kept[0].__anext__())
    assert secret.enabled() is False


def test_threads_started_in_secret_mode_inherit_it_for_life():
    parent_done = threading.Event()
    seen = {}

    def child():
        seen["start"] = secret.enabled()
        parent_done.wait(10)
        seen["after-parent-do"] = secret.enabled()
        # A thread started by an inherited thread is secret too.
        g = threading.Thread(
            target=lambda: seen.__setitem__("grandchild", secret.enabled()))
        g.start()
        g.join()

    def f():
        t = threading.Thread(target=child)
        t.start()
        return t

    t = secret.do(f)
    assert secret.enabled() is False
    parent_done.set()
    t.join()
    assert seen == {"start": True, "after-parent-do": True,
                    "grandchild": True}


def test_existing_and_later_threads_are_not_affected():
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def existing():
        inside.wait(10)
        seen["existing"] = secret.enabled()
        release.set()

    t = threading.Thread(target=existing)
    t.start()

    def f():
        inside.set()
        release.wait(10)

    secret.do(f)
    t.join()
    later = threading.Thread(
        target=lambda: seen.__setitem__("later", secret.enabled()))
    later.start()
    later.join()
    assert seen == {"existing": False, "later": False}


def test_concurrent_do_in_many_threads():
    errors = []
    barrier = threading.Barrier(8)

    def work(i):
        try:
            for _ in range(200):
                def f():
                    assert secret.enabled()
                    return i
                assert secret.do(f) == i
                assert not secret.enabled()
            barrier.wait(10)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_subinterpreter():
    _interpreters = pytest.importorskip("_interpreters")
    interp = _interpreters.create("isolated")
    try:
        err = _interpreters.exec(interp, "\n".join([
            "import secret",
            "assert secret.do(lambda x: x * 2, 21) == 42",
            "assert secret.do(secret.enabled) is True",
            "assert secret.enabled() is False",
        ]))
    finally:
        _interpreters.destroy(interp)
    assert err is None, err


def test_supported_on_linux_x86_64_and_aarch64():
    expected = (sys.platform == "linux"
                and platform.machine() in ("x86_64", "aarch64"))
    assert secret.supported() is expected


def test_protections_are_reported():
    p = secret.protections()
    assert set(p) == {"registers", "c_stack", "signal_frames",
                      "frame_stack", "heap", "no_core_dump", "no_swap",
                      "no_core_dump_or_swap", "io_buffers",
                      "exception_frames", "caches", "code_state",
                      "native_heap"}
    assert all(isinstance(v, bool) for v in p.values())
    # What this build erases (tests/test_erasure.py and tests/test_heap.py
    # prove each); out of swap only if the kernel lets all the secret heap
    # commits be locked (tests/test_heap.py::test_swap_claim_follows_the_lock);
    # no_core_dump_or_swap (deprecated) is both. code_state only with
    # -X secret_freeze_code (tests/test_adaptive_state.py).
    info = secret.heap_info()
    assert info["reserved"] > 0     # protections() reserved the heap
    dump, swap = info["dontdump"], info["locked"]
    assert p == {"registers": True, "c_stack": True, "signal_frames": True,
                 "frame_stack": True, "heap": True, "no_core_dump": dump,
                 "no_swap": swap, "no_core_dump_or_swap": dump and swap,
                 "io_buffers": True, "exception_frames": True,
                 "caches": True, "code_state": False,
                 # no allocator preloaded here (tests/test_native_heap.py);
                 # under ASan its malloc takes the C library's place
                 "native_heap": not ASAN}


def test_star_import_gives_the_whole_public_api():
    # A merge once left two __all__ lists, the second without survivors.
    names = {"do", "do_async", "iterate", "aiterate", "enabled",
             "supported", "protections", "heap_info", "survivors",
             "Survivor"}
    assert set(secret.__all__) == names
    ns = {}
    exec("from secret import *", ns)
    assert names <= set(ns)
