"""An exception that leaves secret.do() carries nothing of func (spec §2,
issue 20 §2): its traceback, and those of the exceptions chained to it
(__context__, __cause__, exception groups), hold no frame of func or of what
it called; those frames are cleared, so their locals are freed (hence
zeroed, being secret blocks); a note names each dropped frame. Exceptions
that are the caller's (the one it was handling when it called do()) keep
their traceback.

Every case has a control: the same code called without do() (or through
the fallback build's do(), which only calls func) finds func's frames and
the secret in their locals.
"""

import concurrent.futures
import gc
import os
import random
import signal
import sys
import textwrap
import threading
import time
import traceback
import weakref

import pytest

import secret
from conftest import EXPERIMENT, read_mem, run_python


def plain(func, *args, **kwargs):
    return func(*args, **kwargs)


def new_secret():
    # Random, and never a literal: the tests look for it afterwards.
    return os.urandom(16).hex()


def reachable_exceptions(exc):
    """exc and every exception chained to it, cycles included."""
    seen, todo = {}, [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen[id(e)] = e
        todo += [e.__context__, e.__cause__]
        if isinstance(e, BaseExceptionGroup):
            todo += list(e.exceptions)
    return list(seen.values())


def reachable_frames(exc):
    """Every frame an error reporter can reach from exc: the frames of each
    chained exception's traceback and their f_back chains."""
    frames = {}
    for e in reachable_exceptions(exc):
        tb = e.__traceback__
        while tb is not None:
            f = tb.tb_frame
            while f is not None and id(f) not in frames:
                frames[id(f)] = f
                f = f.f_back
            tb = tb.tb_next
    return list(frames.values())


def code_tree(*funcs):
    """The code objects of funcs and of the functions nested in them."""
    out, todo = set(), [f.__code__ for f in funcs]
    while todo:
        c = todo.pop()
        if c not in out:
            out.add(c)
            todo += [k for k in c.co_consts if hasattr(k, "co_code")]
    return out


def leaked(exc, codes, key):
    """What exc still carries of func: frames with func's code, and frames
    whose locals show the key. The test's own frames (running, or catch())
    are the caller's: not looked at."""
    running = set()
    f = sys._getframe()
    while f is not None:
        running.add(id(f))
        f = f.f_back
    bad = []
    for f in reachable_frames(exc):
        if id(f) in running or f.f_code is catch.__code__:
            continue
        if f.f_code in codes:
            bad.append(("frame", f.f_code.co_name))
        for name, value in list(f.f_locals.items()):
            if key in repr(value):
                bad.append(("local", f.f_code.co_name, name))
    return bad


def catch(call, func, *args):
    # The arguments (the key) must not stay in this frame's locals: its
    # frame is the caller's, kept in the traceback.
    box = [args]
    del args
    try:
        call(func, *box.pop())
    except BaseException as e:  # noqa: B036 - every kind is tested
        return e
    raise AssertionError("no exception")


# --- the basic case, its control and its note --------------------------

class Holder:
    def __init__(self, key):
        self.key = key


def helper(key, kept):
    holder = Holder(key)
    kept.append(weakref.ref(holder))
    local_key = key + "!"
    raise KeyError("missing")


def raising_func(key, kept):
    copy = key.upper()
    helper(key, kept)


@pytest.mark.parametrize("protect", [False, True])
def test_traceback_keeps_nothing_of_func(protect):
    key, kept = new_secret(), []
    e = catch(secret.do if protect else plain, raising_func, key, kept)
    codes = code_tree(raising_func, helper)
    found = leaked(e, codes, key)
    summary = traceback.TracebackException.from_exception(
        e, capture_locals=True)
    text = "".join(summary.format())
    if not protect:
        # Control: the frames and their locals are all there.
        assert ("frame", "helper") in found and ("local", "helper",
                                                 "local_key") in found
        assert key in text
        assert kept[0]() is not None
        return
    assert found == []
    assert key not in text and key.upper() not in text
    assert kept[0]() is None        # the frame's locals were released
    # Where it was raised is still readable, without values.
    note = e.__notes__[-1]
    lines = note.splitlines()
    assert lines[0].startswith("secret.do() removed")
    here = os.path.abspath(__file__)
    assert lines[1].startswith('  File "%s", line ' % here)
    assert lines[1].endswith(", in raising_func")
    assert lines[2].endswith(", in helper")
    assert len(lines) == 3
    assert key not in note


def test_fallback_do_keeps_the_frames():
    # Fallback mode only calls func (spec §6): the control on another build.
    code = textwrap.dedent("""
        import os, secret, traceback
        def f():
            k = os.urandom(8).hex()
            raise ValueError
        try:
            secret.do(f)
        except ValueError as e:
            print([(fr.f_code.co_name, sorted(fr.f_locals))
                   for fr, _ in traceback.walk_tb(e.__traceback__)])
    """)
    r = run_python("fallback", code)
    assert "('f', ['k'])" in r.stdout


@pytest.mark.parametrize("protect", [False, True])
def test_locals_are_zeroed(protect):
    # The secret's memory, read through /proc/self/mem after do() raised:
    # freed with the cleared frame, hence zeroed (a secret block).
    where = []

    def f():
        key = os.urandom(32).hex().encode()
        where.append((id(key), key[:16]))
        raise ValueError("no")

    buf = bytearray(200)
    e = catch(secret.do if protect else plain, f)
    addr, head = where[0]
    mem = read_mem(addr, buf)
    assert mem, "unreadable"
    assert (head in mem) != protect
    del e


@pytest.mark.parametrize("protect", [False, True])
def test_frame_kept_elsewhere_is_cleared(protect):
    # func keeps its own frame (as a debugger hook or a profiler would):
    # clearing it, not only dropping it from the traceback, frees its locals.
    frames = []

    def f():
        key = new_secret()
        frames.append(sys._getframe())
        raise ValueError

    e = catch(secret.do if protect else plain, f)
    assert ("key" in frames[0].f_locals) != protect
    del e


@pytest.mark.parametrize("protect", [False, True])
def test_caller_of_a_caught_frame_is_cleared(protect):
    # An exception caught two calls below func, then chained: the frame in
    # between is in no traceback, but the caught frame's f_back keeps it.
    def leaf():
        raise ValueError

    def middle(key):
        mid_key = key
        try:
            leaf()
        except ValueError as e:
            return e

    def f(key):
        e = middle(key)
        raise RuntimeError from e

    key = new_secret()
    e = catch(secret.do if protect else plain, f, key)
    bad = leaked(e, code_tree(f, middle, leaf), key)
    assert (bad == []) == protect, bad


# --- chained exceptions and groups ---------------------------------------

def chained_context(key):
    try:
        int("x" + key[:0])
    except ValueError:
        inner = key
        raise RuntimeError("while parsing")


def chained_cause(key):
    try:
        {}[1]
    except KeyError as e:
        inner = key
        raise RuntimeError("lookup") from e


def group(key):
    errors = []
    for i in range(3):
        try:
            member_key = key
            raise ValueError(i)
        except ValueError as e:
            errors.append(e)
    raise ExceptionGroup("several", [ExceptionGroup("inner", errors[:2]),
                                     errors[2]])


def except_star(key):
    try:
        group(key)
    except* ValueError as eg:
        star_key = key
        raise RuntimeError("handled") from eg


def cycle(key):
    try:
        raise ValueError("a")
    except ValueError as a:
        try:
            raise KeyError("b")
        except KeyError as b:
            a.__context__ = b       # a <-> b
            cycle_key = key
            raise a


@pytest.mark.parametrize("shape", [chained_context, chained_cause, group,
                                   except_star, cycle])
@pytest.mark.parametrize("protect", [False, True])
def test_chained_exceptions(shape, protect):
    key = new_secret()
    e = catch(secret.do if protect else plain, shape, key)
    codes = code_tree(shape, group)
    bad = leaked(e, codes, key)
    assert (bad == []) == protect, bad
    if protect:
        # Each stripped exception says what it lost.
        for x in reachable_exceptions(e):
            if x.__traceback__ is None and getattr(x, "__notes__", None):
                assert x.__notes__[-1].startswith("secret.do() removed")
        assert any(getattr(x, "__notes__", None)
                   for x in reachable_exceptions(e) if x is not e)


def test_caller_context_keeps_its_traceback():
    def caller_helper():
        raise LookupError("the caller's own")

    def f():
        key = new_secret()
        raise ValueError("func's")

    try:
        caller_helper()
    except LookupError as e0:
        tb0 = e0.__traceback__
        frames0 = [fr for fr, _ in traceback.walk_tb(tb0)]
        caller_exc = e0
        try:
            secret.do(f)
        except ValueError as e:
            assert e.__context__ is e0
            assert e.__traceback__.tb_frame is sys._getframe()
            assert e.__traceback__.tb_next is None
    # Untouched: same traceback object, same frames, locals intact, no note.
    e0 = caller_exc
    assert e0.__traceback__ is tb0
    assert [fr for fr, _ in traceback.walk_tb(tb0)] == frames0
    assert frames0[0] is sys._getframe()
    assert not hasattr(e0, "__notes__")


def test_func_reraising_the_callers_exception():
    # func re-raises what its caller is handling: func's entries go, the
    # caller's history (where the exception came from first) stays.
    def caller_helper():
        raise LookupError("first")

    def f():
        key = new_secret()
        raise sys.exception()

    try:
        caller_helper()
    except LookupError as e0:
        caller_exc = e0
        try:
            secret.do(f)
        except LookupError as e:
            assert e is e0
            names = [fr.f_code.co_name
                     for fr, _ in traceback.walk_tb(e.__traceback__)]
    me = sys._getframe().f_code.co_name
    assert names == [me, me, "caller_helper"]
    assert caller_exc.__notes__[-1].splitlines()[1:] == [
        '  File "%s", line %d, in f' % (__file__, f.__code__.co_firstlineno
                                         + 2)]


def test_exception_made_before_do_and_raised_in_it():
    # An exception kept from earlier and raised by func: func's entries go,
    # its earlier history stays, whether it was caught by a frame still
    # running (here) or by one that has returned since (a helper).
    def earlier():
        raise OSError("earlier")

    def caught_in_a_helper():
        try:
            earlier()
        except OSError as e:
            return e

    try:
        earlier()
    except OSError as e:
        caught_here = e
    in_helper = caught_in_a_helper()

    def f(saved):
        key = new_secret()
        raise saved

    me = sys._getframe().f_code.co_name
    for saved, history in [(caught_here, [me, "earlier"]),
                           (in_helper, ["caught_in_a_helper", "earlier"])]:
        e = catch(secret.do, f, saved)
        assert e is saved
        names = [fr.f_code.co_name
                 for fr, _ in traceback.walk_tb(e.__traceback__)]
        assert names == ["catch"] + history
        assert [line.rsplit(" ", 1)[-1]
                for line in e.__notes__[-1].splitlines()[1:]] == ["f"]


# --- generators, threads, nesting -----------------------------------------

def test_generator_suspended_inside_func_is_not_closed():
    # A generator made in func that caught an exception and is suspended,
    # kept by the caller: the exception loses the generator's frame, the
    # generator keeps working.
    kept = []

    def gen(key):
        try:
            raise ValueError("in gen")
        except ValueError as e:
            gen_key = key
            yield e
        yield "still running"

    def f():
        g = gen(new_secret())
        kept.append(g)
        raise RuntimeError from next(g)

    e = catch(secret.do, f)
    assert leaked(e, code_tree(f, gen), "never") == []
    assert next(kept[0]) == "still running"


def test_generator_held_only_by_func_is_closed_in_secret_mode():
    log = []

    def gen(key):
        try:
            raise ValueError("in gen")
        except ValueError as e:
            gen_key = key
            try:
                yield e
            finally:
                log.append(secret.enabled())

    def f():
        g = gen(new_secret())
        raise RuntimeError from next(g)

    e = catch(secret.do, f)
    assert log == [True]
    assert leaked(e, code_tree(f, gen), "never") == []


def work_in_pool(key):
    pool_key = key
    raise ValueError("worker")


@pytest.mark.parametrize("how", ["result", "exception"])
@pytest.mark.parametrize("protect", [False, True])
def test_worker_thread_frames(how, protect):
    # A pool made before do(): its threads are not in secret mode, but what
    # they ran for func is func's work: no frame of it leaves with func's
    # exception.
    key = new_secret()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()       # the thread exists before do()

        def f():
            fut = pool.submit(work_in_pool, key)
            if how == "result":
                fut.result()
            concurrent.futures.wait([fut])
            raise RuntimeError("failed") from fut.exception()

        e = catch(secret.do if protect else plain, f)
    bad = leaked(e, code_tree(f, work_in_pool), key)
    assert (bad == []) == protect, bad


def deep_in_pool(n, key):
    if n:
        return deep_in_pool(n - 1, key)
    raise ValueError("deep")


def test_deep_worker_traceback():
    # Thousands of entries made outside secret mode (a pool worker's
    # recursion), re-raised by func: each is dropped, the walk stays linear.
    key = new_secret()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(int).result()
        e = catch(secret.do, lambda: pool.submit(deep_in_pool, 900,
                                                 key).result())
    assert isinstance(e, ValueError)
    assert leaked(e, code_tree(deep_in_pool), key) == []
    assert "[Previous line repeated" in e.__notes__[-1]


@pytest.mark.parametrize("protect", [False, True])
def test_event_loop_run_in_do(protect):
    # asyncio keeps its own reference to a failed task's traceback
    # (Future._exception_tb): the frames are cleared, not only dropped.
    import asyncio
    frames = []

    async def step(key):
        step_key = key
        frames.append(sys._getframe())
        await asyncio.sleep(0)
        raise ValueError("task failed")

    async def main(key):
        await asyncio.gather(step(key), asyncio.sleep(0))

    key = new_secret()
    e = catch(secret.do if protect else plain, asyncio.run, main(key))
    assert isinstance(e, ValueError)
    assert ("step_key" in frames[0].f_locals) != protect
    bad = leaked(e, code_tree(step, main), key)
    assert (bad == []) == protect, bad


def test_nested_do():
    seen = {}

    def inner(key):
        inner_key = key
        raise ValueError("inner")

    def outer(key):
        outer_key = key
        try:
            secret.do(inner, key)
        except ValueError as e:
            # Inside the outer do: inner's frames are gone already.
            seen["inner"] = leaked(e, code_tree(inner), key)
            seen["notes"] = len(e.__notes__)
            raise

    key = new_secret()
    e = catch(secret.do, outer, key)
    assert seen == {"inner": [], "notes": 1}
    assert leaked(e, code_tree(outer, inner), key) == []
    assert len(e.__notes__) == 2
    assert e.__notes__[0].splitlines()[-1].endswith("in inner")
    assert e.__notes__[1].splitlines()[-1].endswith("in outer")


def test_nested_do_keeps_the_outer_funcs_context():
    # The exception the outer func handles when it calls the inner do() is
    # the inner do's caller's: kept until the outer exit.
    seen = {}

    def outer(key):
        try:
            raise LookupError("outer's")
        except LookupError as e0:
            tb0 = e0.__traceback__
            try:
                secret.do(lambda: 1 / 0)
            except ZeroDivisionError as e:
                seen["ctx"] = e.__context__ is e0
                seen["tb"] = e0.__traceback__ is tb0
                raise

    e = catch(secret.do, outer, new_secret())
    assert seen == {"ctx": True, "tb": True}
    assert e.__context__.__traceback__ is None


def raise_keyboard_interrupt():
    signal.raise_signal(signal.SIGINT)
    for _ in range(1000):
        pass


def recurse(n=0):
    return recurse(n + 1) + 1


@pytest.mark.parametrize("kind, exc", [
    ("interrupt", KeyboardInterrupt),
    ("exit", SystemExit),
    ("memory", MemoryError),
    ("recursion", RecursionError),
])
def test_every_kind_of_exception(kind, exc):
    def f(key):
        func_key = key
        if kind == "interrupt":
            raise_keyboard_interrupt()
        elif kind == "exit":
            sys.exit(3)
        elif kind == "memory":
            bytearray(1 << 62)
        else:
            recurse()

    key = new_secret()
    e = catch(secret.do, f, key)
    assert isinstance(e, exc)
    assert leaked(e, code_tree(f, recurse, raise_keyboard_interrupt),
                  key) == []
    if kind == "recursion":
        # A thousand identical frames, shortened as traceback prints them.
        note = e.__notes__[-1]
        assert "[Previous line repeated" in note
        assert len(note.splitlines()) < 10


def test_returned_generator_whose_close_fails():
    # do()'s own TypeError: its cause (the generator's failure) is func's.
    def bad(key):
        gen_key = key
        try:
            yield 1
        finally:
            raise OSError("close failed")

    def f(key):
        g = bad(key)
        next(g)
        return g

    key = new_secret()
    e = catch(secret.do, f, key)
    assert isinstance(e, TypeError) and isinstance(e.__cause__, OSError)
    assert leaked(e, code_tree(f, bad), key) == []


def test_c_function_as_func():
    # No Python frame of func: nothing to drop, and the message is the
    # caller's (see test_arguments_are_the_callers).
    e = catch(secret.do, int, "not a number")
    assert isinstance(e, ValueError)
    assert [fr.f_code for fr, _ in traceback.walk_tb(e.__traceback__)] == [
        catch.__code__]
    assert not hasattr(e, "__notes__")


def test_arguments_are_the_callers():
    # Decision (docs/limitations.md): do() does not rewrite the exception
    # object or its arguments; an argument that embeds input carries it.
    # The pattern that avoids it: catch inside func and raise a sanitized
    # error outside the except block (no __context__).
    def unsafe(token):
        return {"known": 1}[token]

    def safe(token):
        try:
            return {"known": 1}[token]
        except KeyError:
            pass
        raise LookupError("unknown token")

    token = new_secret()
    e = catch(secret.do, unsafe, token)
    assert e.args == (token,)
    e = catch(secret.do, safe, token)
    for x in reachable_exceptions(e):
        assert token not in repr(x.args)
    assert e.__context__ is None
    text = "".join(traceback.format_exception(e))
    assert token not in text


def test_note_on_a_frozen_notes_attribute():
    # An exception whose __notes__ cannot take a note: the frames are still
    # dropped and cleared.
    class Frozen(Exception):
        __notes__ = ()

    def f():
        key = new_secret()
        raise Frozen

    e = catch(secret.do, f)
    assert [fr.f_code for fr, _ in traceback.walk_tb(e.__traceback__)] == [
        catch.__code__]
    assert e.__notes__ == ()


# --- what runs during the exit: finalizers, memory exhaustion ------------

def test_finalizer_relinking_the_traceback():
    # Clearing a frame runs finalizers, in secret mode; one that rewires the
    # traceback being stripped (tb_next is writable) must not crash the exit
    # nor bring func's frames back.
    tbs = []

    class Rewire:
        def __del__(self):
            tbs[0].tb_next = None

    def inner():
        inner_key = new_secret()
        raise ValueError

    def f():
        rewire = Rewire()
        try:
            inner()
        except ValueError as e:
            tbs.append(e.__traceback__)
            raise

    e = catch(secret.do, f)
    assert leaked(e, code_tree(f, inner), "never") == []
    assert tbs[0].tb_next is None and "in inner" in e.__notes__[-1]


def test_finalizer_raising_or_nesting_do():
    # A finalizer run by the exit that raises (reported as unraisable) or
    # calls do() itself (a nested exit, with its own exception).
    log = []

    class Noisy:
        def __del__(self):
            log.append(secret.enabled())
            try:
                secret.do(lambda: 1 / 0)
            except ZeroDivisionError as e:
                log.append(e.__notes__[-1].splitlines()[-1].split()[-1])
            raise OSError("from a finalizer")

    def f():
        noisy = Noisy()
        key = new_secret()
        raise KeyError("the one that leaves")

    unraisable = []
    old, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        e = catch(secret.do, f)
    finally:
        sys.unraisablehook = old
    assert isinstance(e, KeyError) and e.args == ("the one that leaves",)
    assert log == [True, "<lambda>"]
    assert [type(u.exc_value) for u in unraisable] == [OSError]
    assert leaked(e, code_tree(f), "never") == []


def test_secret_heap_full():
    # func fills the secret heap (its locals hold it) and fails: the exit
    # clears the frames first, which frees the heap, then walks the chain.
    code = textwrap.dedent("""
        import os, secret, traceback
        def fill():
            blocks = []
            key = os.urandom(16).hex()
            try:
                while True:
                    blocks.append(bytearray(1 << 20))
            except MemoryError as e:
                raise RuntimeError("gave up") from e
        before = secret.heap_info()["live_bytes"]
        try:
            secret.do(fill)
        except RuntimeError as e:
            err = e
        frames = [f for x in (err, err.__cause__)
                  for f, _ in traceback.walk_tb(x.__traceback__)]
        print(type(err.__cause__).__name__,
              [f.f_code.co_name for f in frames],
              secret.heap_info()["live_bytes"] - before < (1 << 20),
              "in fill" in err.__cause__.__notes__[-1])
    """)
    r = run_python(EXPERIMENT, code, timeout=120,
                   env=dict(os.environ, PYTHONSECRETHEAPSIZE="64M"))
    assert r.stdout.split() == ["MemoryError", "['<module>']", "True",
                                "True"], r.stdout


def test_big_groups_and_long_chains():
    # Thousands of chained exceptions and members, and a context chain too
    # deep for recursion: walked without recursion, each stripped.
    def f(key):
        errs = []
        for i in range(2000):
            try:
                raise ValueError(i)
            except ValueError as e:
                errs.append(e)
        group = ExceptionGroup("many", errs)
        prev = group
        for i in range(5000):
            try:
                raise prev
            except BaseException:
                try:
                    raise KeyError(i)
                except KeyError as e:
                    prev = e
        raise prev

    key = new_secret()
    e = catch(secret.do, f, key)
    every = reachable_exceptions(e)
    assert len(every) > 7000
    assert leaked(e, code_tree(f), key) == []


# --- what a cleared frame still points to (review F1) ----------------------

def reachable_key(obj, key, stop):
    """Whether key (a str) is reachable from obj through gc referents, as a
    memory walker holding obj would find it. stop: objects not to enter
    (the test's own running frames, modules and types)."""
    seen, todo = set(), [obj]
    while todo:
        o = todo.pop()
        if id(o) in seen or id(o) in stop or isinstance(
                o, (type, type(sys))):
            continue
        seen.add(id(o))
        if isinstance(o, str) and key in o:
            return True
        todo += gc.get_referents(o)
    return False


def running_frames():
    ids, f = set(), sys._getframe()
    while f is not None:
        ids.add(id(f))
        f = f.f_back
    return ids


def kept_closure(kept, key):
    def check(item):            # a closure over the key, made in func
        kept.append(sys._getframe())
        if item != key:
            raise ValueError("bad item")
    check("guess")


def kept_default(kept, key):
    def check(item, k=key):     # the key as a default argument
        kept.append(sys._getframe())
        raise ValueError("bad item")
    check("guess")


def kept_exec(kept, key):
    # A config file exec'd in func (Flask's from_pyfile shape): its
    # namespace holds the key, its code object the key as a constant.
    src = "SECRET_KEY = %r\nKEPT.append(sys._getframe())\nundefined\n" % key
    exec(compile(src, "settings.py", "exec"), {"KEPT": kept, "sys": sys})


def kept_lambda_in_pool(kept, key):
    # A lambda made in func, run by a thread that existed before do().
    with concurrent.futures.ThreadPoolExecutor(1) as p:
        p.submit(int).result()
        f = p.submit(lambda: (kept.append(sys._getframe()), 1 / len(key[:0])))
        concurrent.futures.wait([f])
    raise RuntimeError from f.exception()


@pytest.mark.parametrize("shape", [kept_closure, kept_default, kept_exec,
                                   kept_lambda_in_pool])
@pytest.mark.parametrize("protect", [False, True])
def test_kept_frame_reaches_nothing_of_func(shape, protect):
    # A frame held elsewhere (a profiler, a logging record) is cleared; what
    # the clearing leaves (the frame's function, globals, builtins and code)
    # must not lead back to the key either.
    kept = []
    key = new_secret()
    e = catch(secret.do if protect else plain, shape, kept, key)
    assert isinstance(e, (ValueError, NameError, RuntimeError))
    stop = running_frames() | {id(e)}
    assert reachable_key(kept[0], key, stop) != protect
    fr = kept[0]
    # Still a usable frame object: its line, code and names can be read.
    assert isinstance(fr.f_lineno, int) and fr.f_lineno > 0
    assert isinstance(fr.f_code.co_name, str) and fr.f_code.co_filename
    "".join(traceback.format_stack(fr))
    if protect:
        assert fr.f_locals == {}
        if shape is kept_exec:
            # The code compiled in func is the placeholder's now.
            assert fr.f_code.co_filename == "<cleared by secret.do()>"
            assert "SECRET_KEY" not in fr.f_globals
        else:
            # A function made before do() keeps its code: its name shows.
            assert fr.f_code.co_name in ("check", "<lambda>")
    del e


def test_kept_frames_of_a_logged_traceback():
    # The reviewer's shape: a BufferingHandler keeps the record of
    # log.exception(), with its traceback; the key, read in func, is in a
    # closure made there.
    import logging
    import logging.handlers
    buf = logging.handlers.BufferingHandler(100)
    log = logging.getLogger("test_exceptions.kept")
    log.addHandler(buf)
    log.propagate = False
    found = {}
    try:
        for protect in (False, True):
            buf.buffer.clear()
            box = []        # the key, for the test to look for it

            def work():
                key = new_secret()
                box.append(key)

                def check(item):
                    if item != key:
                        raise ValueError("bad item")
                try:
                    check("guess")
                except ValueError:
                    log.exception("check failed")
                    raise

            e = catch(secret.do if protect else plain, work)
            tb = buf.buffer[0].exc_info[2]
            # (work, made outside do(), reaches box: not followed.)
            found[protect] = reachable_key(
                tb, box[0], running_frames() | {id(e), id(box)})
            del e, tb, work
    finally:
        log.removeHandler(buf)
    assert found == {False: True, True: False}


# --- frames another thread made (review F1b) -------------------------------

class Sampler:
    """A sampling profiler's thread (started before do()) that keeps the
    frame objects of the main thread it samples with sys._current_frames():
    func's frame objects are then made outside secret mode."""

    def __init__(self):
        self.target = threading.get_ident()
        self.want, self.done = threading.Event(), threading.Event()
        self.stop = False
        self.kept = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            if self.want.wait(0.05):
                self.want.clear()
                f = sys._current_frames().get(self.target)
                while f is not None:
                    self.kept.append(f)
                    f = f.f_back
                self.done.set()

    def sample(self):
        self.done.clear()
        self.want.set()
        # Not an Event.wait(): the sampled frames stay as they are.
        while not self.done.is_set():
            time.sleep(0.0005)

    def close(self):
        self.stop = True
        self.thread.join()


@pytest.mark.parametrize("protect", [False, True])
def test_frames_sampled_by_another_thread_are_cleared(protect):
    # func calls a(key) -> b(), which catches c()'s exception and returns
    # it; func chains it. a's frame is in no traceback, kept alive by b's
    # f_back, and its frame object was made by the sampler's thread.
    sampler = Sampler()

    def c():
        raise ValueError("c failed")

    def b():
        try:
            c()
        except ValueError as e:
            return e

    def a(key):
        mid_key = key
        sampler.sample()
        return b()

    def f(key):
        e = a(key)
        raise RuntimeError("wrapped") from e

    key = new_secret()
    try:
        e = catch(secret.do if protect else plain, f, key)
    finally:
        sampler.close()
    mine = {f.__code__, a.__code__, b.__code__, c.__code__}
    kept = [fr for fr in sampler.kept if fr.f_code in mine]
    assert {fr.f_code.co_name for fr in kept} == {"f", "a"}
    readable = [(fr.f_code.co_name, name) for fr in kept
                for name, v in fr.f_locals.items() if v == key]
    assert (readable == []) == protect, readable
    assert (leaked(e, code_tree(f, a, b, c), key) == []) == protect
    del e


# --- exhaustion of the secret heap (review F2) -----------------------------

@pytest.mark.parametrize("members, fill", [(40, True), (40, False),
                                           (31, True)])
def test_secret_heap_full_group_members(members, fill):
    # func raises a group of many members, the secret heap full: the walk's
    # own memory is not secret, so every member is walked and stripped, and
    # gets its note once the frames are cleared (which frees the heap).
    # The control, the same program without do(), finds the key in every
    # member's frame. (Before the walk's memory left the secret heap, 40
    # members with the heap filled kept all 40 frames; 31, within the
    # walk's built-in stack, none.)
    code = textwrap.dedent("""
        import os, secret, sys, traceback
        def member(i, hog, key):
            member_key = key
            raise ValueError(i)
        def fill(hog):
            for size in (1 << 16, 4096, 1024, 256):
                try:
                    while True:
                        hog.append(bytearray(size))
                except MemoryError:
                    pass
        def work(n, do_fill):
            key = os.urandom(16).hex()
            hog, excs = [], []
            for i in range(n):
                try:
                    member(i, hog, key)
                except ValueError as e:
                    excs.append(e)
            eg = ExceptionGroup("many", excs)
            del excs
            if do_fill:
                fill(hog)
            del hog, key
            raise eg
        n, do_fill = int(sys.argv[1]), sys.argv[2] == "1"
        for protect in (False, True):
            try:
                # (Outside do() the heap is not secret: not filled.)
                (secret.do if protect else (lambda f, *a: f(*a)))(
                    work, n, do_fill and protect)
            except ExceptionGroup as e:
                err = e
            leaks = sum("member_key" in fr.f_locals
                        for m in err.exceptions
                        for fr, _ in traceback.walk_tb(m.__traceback__))
            notes = sum(bool(getattr(m, "__notes__", None))
                        for m in err.exceptions)
            print(protect, len(err.exceptions), leaks, notes)
            del err
    """)
    r = run_python(EXPERIMENT, code, str(members), str(int(fill)),
                   timeout=300,
                   env=dict(os.environ, PYTHONSECRETHEAPSIZE="8M"))
    assert r.stdout.split("\n")[:2] == [
        "False %d %d 0" % (members, members),     # the control
        "True %d 0 %d" % (members, members)], r.stdout + r.stderr


# --- exceptions that existed before do() (review F5) -----------------------

def job_failing(x):
    state = {"request": x}
    raise LookupError("job failed")


@pytest.mark.parametrize("how", ["cause", "reraise"])
def test_exception_from_before_do_keeps_its_history(how):
    # A pool worker's failure, made before do() and kept by the caller's
    # Future: func chains it (raise ... from) or re-raises it. Its history
    # (its frames, their locals, no note) stays the caller's; what func
    # added is dropped. The control: a failure made during do() by the same
    # pool is func's: stripped (test_worker_thread_frames).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(job_failing, 42)
        concurrent.futures.wait([fut])
        err = fut.exception()
        tb0 = err.__traceback__
        before = [(fr.f_code.co_name, sorted(fr.f_locals))
                  for fr, _ in traceback.walk_tb(tb0)]
        assert [n for n, _ in before] == ["run", "job_failing"]

        def f(key):
            func_key = key
            if how == "cause":
                raise RuntimeError("report") from fut.exception()
            fut.result()

        key = new_secret()
        e = catch(secret.do, f, key)
        during = catch(secret.do, lambda: pool.submit(
            job_failing, key).result())
    after = [(fr.f_code.co_name, sorted(fr.f_locals))
             for fr, _ in traceback.walk_tb(err.__traceback__)]
    if how == "cause":
        assert e.__cause__ is err
        assert err.__traceback__ is tb0 and after == before
        assert not hasattr(err, "__notes__")
    else:
        assert e is err
        # func's entries (f, the Future's result()) are dropped, a note says
        # so; the worker's history stays.
        assert after[-2:] == before
        assert [n for n, _ in after[:-2]] == ["catch"]
        assert e.__notes__[-1].splitlines()[-1].endswith("in __get_result")
    assert leaked(e, code_tree(f), key) == []
    # The control: made during do(), the worker's frames are func's.
    assert [fr.f_code.co_name for fr, _ in traceback.walk_tb(
        during.__traceback__)] == ["catch"]


def test_task_failure_from_before_do_keeps_its_history():
    # An asyncio task's failure, made before do(), chained by func.
    import asyncio

    async def task_body():
        local = "task-local"
        raise KeyError("task failed")

    async def main():
        t = asyncio.create_task(task_body())
        await asyncio.sleep(0)
        return t

    texc = asyncio.run(main()).exception()
    before = [(fr.f_code.co_name, sorted(fr.f_locals))
              for fr, _ in traceback.walk_tb(texc.__traceback__)]

    def f():
        raise RuntimeError("report") from texc

    e = catch(secret.do, f)
    assert e.__cause__ is texc
    assert [(fr.f_code.co_name, sorted(fr.f_locals))
            for fr, _ in traceback.walk_tb(texc.__traceback__)] == before
    assert before[-1] == ("task_body", ["local"])
    assert not hasattr(texc, "__notes__")


# --- generated shapes --------------------------------------------------------

# Each template is the body of one function; {g} is its callee, {k} its
# index. Every function keeps the key in a local.
TEMPLATES = [
    "raise ValueError({k})",
    "raise KeyboardInterrupt",
    "raise SystemExit({k})",
    "return {g}()",
    "try:\n    {g}()\nexcept BaseException:\n    raise",
    "try:\n    {g}()\nexcept BaseException:\n    raise RuntimeError({k})",
    "try:\n    {g}()\nexcept BaseException as e:\n"
    "    raise RuntimeError({k}) from e",
    "try:\n    {g}()\nexcept BaseException as e:\n    saved = e\n"
    "x = 1\nraise saved",
    "try:\n    {g}()\nexcept BaseException as e:\n    saved = e\n"
    "raise LookupError({k}) from saved",
    "errs = []\nfor _ in range(2):\n    try:\n        {g}()\n"
    "    except Exception as e:\n        errs.append(e)\n"
    "raise ExceptionGroup('g{k}', errs or [ValueError()])",
    "try:\n    {g}()\nexcept* ValueError as eg:\n"
    "    raise RuntimeError({k}) from eg\nexcept* BaseException:\n"
    "    raise",
    "def gen():\n    try:\n        {g}()\n    except BaseException as e:\n"
    "        yield e\nraise RuntimeError({k}) from next(gen())",
    "def gen():\n    yield 1\n    {g}()\nfor _ in gen():\n    pass",
    "HOLD.append(sys._getframe())\n{g}()",
    "sorted([2, 1], key=lambda v: {g}())",
    "list(map(lambda v: {g}(), [1]))",
    "try:\n    {g}()\nfinally:\n    late = KEY",
    "try:\n    {g}()\nexcept BaseException as e:\n    a = ValueError({k})\n"
    "    a.__context__ = e\n    e.__context__ = a\n    raise a",
    "try:\n    {g}()\nexcept BaseException as e:\n    tb = e.__traceback__\n"
    "raise ValueError({k}).with_traceback(tb)",
    "DO({g})",
    "try:\n    DO({g})\nexcept BaseException as e:\n"
    "    raise RuntimeError({k}) from e",
    "with CM():\n    {g}()",
    # a worker thread that existed before do() runs the callee
    "POOL.submit({g}).result()",
    "fut = POOL.submit({g})\nconcurrent.futures.wait([fut])\n"
    "raise RuntimeError({k}) from fut.exception()",
    # a generator that caught the callee's exception, kept suspended
    "def gen():\n    try:\n        {g}()\n    except BaseException as e:\n"
    "        gen_local = KEY\n        yield e\n    yield 'more'\n"
    "g = gen()\nKEEP.append(g)\nraise RuntimeError({k}) from next(g)",
]

PRELUDE = """
import concurrent.futures, contextlib, sys

class CM:
    def __enter__(self):
        return self
    def __exit__(self, t, v, tb):
        if v is not None and not isinstance(v, Exception):
            return False
        if v is not None:
            raise RuntimeError('from exit') from v
"""


def make_program(rng, n):
    """n functions f0..f{n-1}, each calling the next; the last one raises."""
    src = [PRELUDE]
    for k in range(n):
        if k == n - 1:
            body = rng.choice(TEMPLATES[:3])
        else:
            body = rng.choice(TEMPLATES[3:])
        body = body.format(g="f%d" % (k + 1), k=k)
        src.append("def f%d():\n    local_%d = KEY\n%s\n"
                   % (k, k, textwrap.indent(body, "    ")))
    return "\n".join(src)


def run_program(src, protect, key):
    """Run the program (in do() or plainly); return the exception, what it
    carries of func (leaked()), the names of the functions whose frame was
    kept elsewhere (HOLD) and is reachable from the exception, and the names
    of those kept frames that still show the key."""
    ns = {"KEY": key, "HOLD": [], "KEEP": [], "POOL": POOL,
          "DO": secret.do if protect else plain}
    exec(compile(src, "<shape>", "exec"), ns)
    funcs = [v for k, v in ns.items() if k.startswith("f") and callable(v)]
    e = catch(secret.do if protect else plain, ns["f0"])
    found = leaked(e, code_tree(*funcs), key)
    reachable = {id(f) for f in reachable_frames(e)}
    held_reachable = {f.f_code.co_name for f in ns["HOLD"]
                      if id(f) in reachable}
    held_key = {f.f_code.co_name for f in ns["HOLD"]
                if any(key in repr(v) for v in f.f_locals.values())}
    for g in ns["KEEP"]:
        # Kept generators were not closed by do(): they still run.
        assert next(g) == "more"
    return e, found, held_reachable, held_key


POOL = None


@pytest.fixture(scope="module")
def pool():
    # Its thread exists before any do(): not in secret mode.
    # A callee run by the pool may submit the next one and wait: one
    # worker per level of the deepest program, all started now.
    global POOL
    n = 8
    barrier = threading.Barrier(n)
    with concurrent.futures.ThreadPoolExecutor(n) as POOL:
        for f in [POOL.submit(barrier.wait) for _ in range(n)]:
            f.result()
        yield POOL
    POOL = None


@pytest.mark.parametrize("seed", range(4))
def test_generated_shapes(seed, pool):
    rng = random.Random(seed * 7919 + 1)
    control_found = 0
    cases = 150
    for i in range(cases):
        src = make_program(rng, rng.randint(1, 6))
        key = new_secret()
        _, found, held_reachable, _ = run_program(src, False, key)
        control_found += bool(found)
        key = new_secret()
        e, found, _, held_key = run_program(src, True, key)
        # A frame kept elsewhere that the exception reached is cleared (one
        # it did not reach is what func handed out, spec §3.5).
        assert found == [] and not held_key & held_reachable, (
            found, held_key, src)
        # Nothing of func in the formatted exception with every local.
        text = "".join(traceback.TracebackException.from_exception(
            e, capture_locals=True).format())
        assert key not in text, src
    # The control must find func's frames, else the shapes prove nothing.
    assert control_found == cases
