"""The exception walk against the attack review of its second version
(issue 20, spec §2). Each test is one way the review found past it, with a
control where one exists (the same program without do() finds the
secret); the review's reproducers failed on that version.
"""

import concurrent.futures
import gc
import os
import subprocess
import sys
import textwrap
import threading
import types

import pytest

import secret
from conftest import ASAN, GREENLET_UNDER_ASAN, interpreter
from test_exceptions_review2 import (_entries, catch, made_before, plain,
                                     reaches, tb_names)


def new_secret():
    return os.urandom(16).hex()


@pytest.mark.skipif(ASAN, reason=GREENLET_UNDER_ASAN)
def test_greenlet_switching_out_of_do_then_collecting():
    # The running do() calls are found by the collector's hook through the
    # thread state: records on do()'s C stack were moved away by greenlet
    # (the process crashed or hung).
    pytest.importorskip("greenlet")
    code = textwrap.dedent("""
        import gc, greenlet, secret
        main = greenlet.getcurrent()
        gs = []
        for i in range(4):
            g = greenlet.greenlet(lambda: secret.do(main.switch))
            g.switch()
            gs.append(g)
        for r in range(200):
            [bytearray(64) for _ in range(50)]
            gc.collect()
            gs[r % 4].switch()      # finishes do() out of order
            g = greenlet.greenlet(lambda: secret.do(main.switch))
            g.switch()
            gs[r % 4] = g
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr[-2000:]


def test_callers_results_of_earlier_do_stay_in_its_frames():
    # do() results are secret blocks: the caller's frame that holds them
    # is the caller's, whatever a later do() raises.
    def handler():
        key = secret.do(new_secret)  # noqa: F841
        cfg = secret.do(lambda: {"user": "bob"})  # noqa: F841
        raise ValueError("request failed")

    try:
        handler()
    except ValueError as e:
        old = e
    frame = _entries(old.__traceback__)[-1].tb_frame
    assert sorted(frame.f_locals) == ["cfg", "key"]

    def func():
        raise RuntimeError("report")
    try:
        raise old
    except ValueError:
        e = catch(secret.do, func)
    assert e.__context__ is old
    assert sorted(frame.f_locals) == ["cfg", "key"]


def test_copied_entries_stay_the_callers():
    # Copies of the caller's entries (made when func linked its own after
    # them) are ordinary memory: a later do() does not take them for its
    # func's.
    def helper():
        v = "caller's local"  # noqa: F841
        raise ValueError("old")

    def run():
        try:
            helper()
        except ValueError as e:
            return e
    old = run()

    def func1():
        last = _entries(old.__traceback__)[-1]
        last.tb_next = types.TracebackType(None, sys._getframe(), 0, 1)
        raise old

    def func2():
        raise old
    catch(secret.do, func1)
    catch(secret.do, func2)
    assert tb_names(old)[-2:] == ["run", "helper"]
    assert any(t.tb_frame.f_locals.get("v") == "caller's local"
               for t in _entries(old.__traceback__))


@pytest.mark.parametrize("how", ["unfreeze", "freeze+unfreeze"])
def test_unfreeze_in_func_keeps_an_older_exception(how):
    gc.collect()
    old = made_before("thread")
    frame = old.__traceback__.tb_frame
    names = tb_names(old)

    def f():
        if how == "freeze+unfreeze":
            gc.freeze()
        gc.unfreeze()
        raise KeyError("k") from old

    e = catch(secret.do, f)
    assert e.__cause__ is old and tb_names(old) == names
    assert frame.f_locals.get("before_local") == "made before do"
    assert not hasattr(old, "__notes__")


def test_other_threads_exit_collection_keeps_an_older_exception():
    # Thread A's do() exits (its collection moves objects between
    # generations) while thread B is in do(): B's caller's exception made
    # before B's do() keeps its history.
    a_collected, b_in, a_done = (threading.Event() for _ in range(3))
    res = {}

    def a():
        def fa():
            keep = [[] for _ in range(100)]  # noqa: F841
            gc.collect()
            junk = [[] for _ in range(100)]  # noqa: F841
            a_collected.set()
            b_in.wait()
        secret.do(fa)
        a_done.set()

    def b():
        a_collected.wait()
        old = made_before("thread")
        names = tb_names(old)

        def fb():
            b_in.set()
            a_done.wait()
            raise KeyError("k") from old
        try:
            secret.do(fb)
        except KeyError:
            pass
        res["r"] = (names, tb_names(old),
                    old.__traceback__.tb_frame.f_locals.get("before_local"))

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    names, after, local = res["r"]
    assert after == names and local == "made before do"


def finalizer_shapes(key, when):
    """func's exception, and a finalizer that links a new exception whose
    frame holds the key to it: run by the exit collection (a cycle) or by
    the walk's clearing (a local of a chained exception's frame)."""
    e = ValueError("clean")
    box = [e]

    class Evil:
        def __del__(self):
            k = key  # noqa: F841
            try:
                raise KeyError("x")
            except KeyError as x:
                if when == "exit":
                    box[0].__context__ = x
                else:
                    box[0].__cause__ = x
    if when == "exit":
        ev = Evil()
        ev.me = ev
        del ev
        raise e

    def g():
        ev = Evil()  # noqa: F841
        raise OSError("ctx")
    try:
        g()
    except OSError:
        raise e


@pytest.mark.parametrize("when", ["exit", "walk"])
@pytest.mark.parametrize("protect", [False, True])
def test_finalizers_that_link_after_the_walk(when, protect):
    keys = [new_secret()]
    key = keys[0]
    e = catch(secret.do if protect else plain,
              lambda: finalizer_shapes(keys.pop(), when))
    gc.collect()        # the control's cycle
    assert reaches(e, key) is (not protect)


@pytest.mark.parametrize("protect", [False, True])
def test_walk_out_of_budget_cuts_what_it_found_in_arguments(protect):
    keys = [new_secret()]
    key = keys[0]

    def f():
        k = keys.pop()

        def g():
            kk = k  # noqa: F841
            raise KeyError("inner")
        try:
            g()
        except KeyError as x:
            inner = x
        caller = sys._getframe(1)
        tb = None
        for _ in range(10000):
            tb = types.TracebackType(tb, caller, 0, 1)
        burners = []
        for i in range(101):
            b = OSError(i)
            b.__traceback__ = tb
            burners.append(b)
        raise RuntimeError(*burners, inner)

    e = catch(secret.do if protect else plain, f)
    assert reaches(e.args[-1], key) is (not protect)


@pytest.mark.parametrize("trick", [False, True])
@pytest.mark.parametrize("protect", [False, True])
def test_forged_caller_entry_before_a_workers_traceback(trick, protect):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()
        keys = [new_secret()]
        derived = keys[0].upper()

        def work(k):
            d = k.upper()  # noqa: F841 - ordinary memory (the worker's)
            raise ValueError("worker")

        def f():
            x = pool.submit(work, keys.pop()).exception()
            if trick:
                tb = types.TracebackType(x.__traceback__, sys._getframe(1),
                                         0, 1)
                raise RuntimeError("failed").with_traceback(tb)
            raise RuntimeError("failed") from x

        e = catch(secret.do if protect else plain, f)
    assert reaches(e, derived) is (not protect)
