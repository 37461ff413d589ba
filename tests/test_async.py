"""Secret mode follows coroutines, generators and asyncio tasks (spec §2.1).

secret.do_async() runs each step of a coroutine (from a resume to the next
suspension) in secret mode and erases what the step left at the
suspension; coroutines, generators and tasks made in a step are protected
at each of their steps wherever they are resumed; secret.iterate() and
secret.aiterate() do the same for generators. Every check runs a control
that finds what the protection removes: the same code without it.

Secrets and stack patterns are random (os.urandom), never literals.
"""

import asyncio
import contextvars
import gc
import os
import random
import traceback

import pytest

import secret

T = pytest.importorskip("_testsecret")
pytestmark = pytest.mark.skipif(not secret.supported(),
                                reason="fallback mode: nothing is erased")


def new_pattern():
    p = os.urandom(8)
    while b"\0" in p:
        p = os.urandom(8)
    return p


_range = []


def is_secret(obj):
    """Is obj a block of the secret heap?"""
    if not _range:
        secret.protections()        # reserves the heap
        info = secret.heap_info()
        _range[:] = [info["base"], info["reserved"]]
    base, size = _range
    return base <= id(obj) < base + size


def stack_hits(pattern):
    """Copies of pattern in this thread's C stack below the caller."""
    return T.call_and_scan(pattern, int)[1]


def frames_of(exc):
    """Names of the functions in exc's traceback and in those of the
    exceptions chained to it."""
    names, seen, todo = [], set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        names += [f.f_code.co_name for f, _ in traceback.walk_tb(
            e.__traceback__)]
        todo += [e.__cause__, e.__context__]
        todo += list(getattr(e, "exceptions", ()))
    return names


# --- the API ---------------------------------------------------------------

def test_do_refuses_a_coroutine_and_names_do_async():
    async def body():
        return 1
    with pytest.raises(TypeError, match="do_async"):
        secret.do(body)


def test_do_refuses_generators_and_names_iterate():
    def gen():
        yield 1

    async def agen():
        yield 1
    with pytest.raises(TypeError, match=r"secret\.iterate"):
        secret.do(gen)
    with pytest.raises(TypeError, match=r"secret\.aiterate"):
        secret.do(agen)


def test_do_async_bad_use():
    with pytest.raises(TypeError, match="callable"):
        secret.do_async(42)

    def not_async():
        return 3
    with pytest.raises(TypeError, match="coroutine"):
        asyncio.run(secret.do_async(not_async))

    def gen():
        yield 1
    with pytest.raises(TypeError, match="iterate"):
        asyncio.run(secret.do_async(gen))


def test_do_async_result_mode_and_arguments():
    seen = []

    async def body(a, *, b):
        seen.append(secret.enabled())
        await asyncio.sleep(0)
        seen.append(secret.enabled())
        return a + b

    async def main():
        seen.append(secret.enabled())
        r = await secret.do_async(body, 2, b=3)
        seen.append(secret.enabled())
        return r
    assert asyncio.run(main()) == 5
    assert seen == [False, True, True, False]
    # directly as a task's coroutine
    assert asyncio.run(secret.do_async(body, 1, b=1)) == 2


def test_do_async_result_is_secret_control_is_not():
    async def body():
        await asyncio.sleep(0)
        return bytearray(os.urandom(32))
    assert is_secret(asyncio.run(secret.do_async(body)))
    assert not is_secret(asyncio.run(body()))


def test_do_async_awaitable_not_coroutine():
    class Aw:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return secret.enabled()
    assert asyncio.run(secret.do_async(Aw)) is True


def test_reuse_and_close():
    async def body():
        await asyncio.sleep(0)
        return 1
    aw = secret.do_async(body)
    assert asyncio.run(_await(aw)) == 1
    with pytest.raises(RuntimeError, match="reuse"):
        asyncio.run(_await(aw))
    aw = secret.do_async(body)
    aw.close()                              # never started
    aw = secret.do_async(body)
    aw.send(None)
    assert aw.close() is None               # closed at its suspension


async def _await(aw):
    return await aw


# --- each suspension erases the step's C stack ---------------------------

def test_each_suspension_erases_the_stack():
    for depth in (512, 4096, 32 * 1024):
        p = new_pattern()

        async def body():
            for _ in range(3):
                T.write_stack_pattern(p, depth)
                await asyncio.sleep(0)
        aw = secret.do_async(body)
        control = body()
        for _ in range(3):
            assert T.call_and_scan(p, control.send, None)[1] > 0
            assert T.call_and_scan(p, aw.send, None)[1] == 0, depth
        control.close()
        aw.close()


def test_tasks_made_in_a_step_are_protected_wherever_resumed():
    p = new_pattern()
    made = {}

    async def child():
        made["child_mode"] = secret.enabled()
        T.write_stack_pattern(p, 8192)
        await asyncio.sleep(0)
        made["child_mode2"] = secret.enabled()
        return bytearray(os.urandom(16))

    async def body():
        made["coro"] = child()
        await asyncio.sleep(0)
    asyncio.run(secret.do_async(body))
    coro = made.pop("coro")
    assert is_secret(coro)
    # resumed here, outside any do: protected step by step
    assert T.call_and_scan(p, coro.send, None)[1] == 0
    assert made["child_mode"] is True
    assert not secret.enabled()
    res = T.call_and_scan(p, coro.send, None)[0]
    assert isinstance(res, StopIteration) and is_secret(res.value)
    assert made["child_mode2"] is True
    # control: the same coroutine made outside
    c = child()
    assert T.call_and_scan(p, c.send, None)[1] > 0
    assert made["child_mode"] is False
    c.close()


def test_create_task_taskgroup_gather_inherit():
    modes = []

    async def leaf(tag):
        modes.append((tag, secret.enabled()))
        await asyncio.sleep(0)
        modes.append((tag, secret.enabled()))
        return tag

    async def body():
        t = asyncio.create_task(leaf("task"))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf("tg"))
        r = await asyncio.gather(leaf("g1"), leaf("g2"))
        return [await t] + r

    async def main():
        other = asyncio.create_task(leaf("other"))
        r = await secret.do_async(body)
        await other
        return r
    assert asyncio.run(main()) == ["task", "g1", "g2"]
    for tag, mode in modes:
        assert mode is (tag != "other"), (tag, mode)


def test_to_thread_inherits():
    async def body():
        return await asyncio.to_thread(secret.enabled)

    async def main():
        # a fresh default executor: its threads are started in the step
        loop = asyncio.get_running_loop()
        r = await secret.do_async(body)
        outside = await asyncio.to_thread(secret.enabled)
        return r, outside
    # to_thread's first call starts the executor's thread inside the step
    assert asyncio.run(main())[0] is True


# --- finishing: the exception rule, cancellation, timeout ----------------

def test_exception_leaving_do_async_holds_no_frame():
    token = os.urandom(16).hex()

    async def inner_raiser(t):
        await asyncio.sleep(0)
        raise ValueError("bad token")

    async def body():
        t = token
        await asyncio.sleep(0)
        await inner_raiser(t)

    async def main():
        try:
            await secret.do_async(body)
        except ValueError as e:
            return e
    e = asyncio.run(main())
    names = frames_of(e)
    assert "body" not in names and "inner_raiser" not in names
    assert any("body" in n for n in getattr(e, "__notes__", []))

    async def control():
        try:
            await body()
        except ValueError as e:
            return e
    assert "inner_raiser" in frames_of(asyncio.run(control()))


def test_cancellation_and_timeout():
    state = {}

    async def body():
        key = bytearray(os.urandom(32))
        try:
            await asyncio.sleep(10)
        finally:
            state["finally_mode"] = secret.enabled()
            state["key"] = is_secret(key)

    async def main():
        t = asyncio.create_task(secret.do_async(body))
        await asyncio.sleep(0)
        t.cancel()
        try:
            await t
        except asyncio.CancelledError as e:
            state["cancel"] = frames_of(e)
        try:
            async with asyncio.timeout(0.01):
                await secret.do_async(body)
        except TimeoutError as e:
            state["timeout"] = frames_of(e)
    asyncio.run(main())
    assert state["finally_mode"] is True and state["key"] is True
    assert "body" not in state["cancel"]
    assert "body" not in state["timeout"]


def test_dropped_while_suspended_finishes_in_secret_mode():
    state = {}

    async def body():
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            state["mode"] = secret.enabled()
    aw = secret.do_async(body)
    aw.send(None)
    del aw
    gc.collect()
    assert state["mode"] is True


# --- contextvars as upstream ---------------------------------------------

def test_contextvars_as_upstream():
    var = contextvars.ContextVar("v", default="unset")

    def program(wrap):
        log = []

        async def child():
            log.append(("child", var.get()))
            var.set("child")

        async def body():
            log.append(("body0", var.get()))
            var.set("body")
            await asyncio.create_task(child())
            log.append(("body1", var.get()))
            await asyncio.sleep(0)
            log.append(("body2", var.get()))

        async def main():
            var.set("main")
            await wrap(body)
            log.append(("main", var.get()))
        asyncio.run(main())
        return log
    assert program(secret.do_async) == program(lambda f: f())


# --- generators ----------------------------------------------------------

def test_iterate_steps_in_secret_mode_and_erases():
    p = new_pattern()

    def gen(n):
        for i in range(n):
            T.write_stack_pattern(p, 8192)
            yield secret.enabled(), bytearray(os.urandom(8))

    it = secret.iterate(gen, 3)
    for _ in range(3):
        (mode, buf), hits = T.call_and_scan(p, next, it)
        assert mode is True and is_secret(buf) and hits == 0
        assert not secret.enabled()
    with pytest.raises(StopIteration):
        next(it)
    control = gen(1)
    (mode, buf), hits = T.call_and_scan(p, next, control)
    assert mode is False and not is_secret(buf) and hits > 0
    assert list(secret.iterate(gen, 2))[1][0] is True
    with pytest.raises(TypeError, match="generator"):
        secret.iterate(lambda: 1)


def test_generator_made_in_do_is_protected_after_it():
    def gen():
        yield secret.enabled()
        yield secret.enabled()
    holder = []
    secret.do(lambda: holder.append(gen()))
    g = holder.pop()
    assert next(g) is True
    assert [x for x in g] == [True]         # FOR_ITER_GEN does not inline it

    def consume(g):
        return [x for x in g]
    for _ in range(50):                     # specialized sites deopt
        secret.do(lambda: holder.append(gen()))
        assert consume(holder.pop()) == [True, True]
        assert consume(gen()) == [False, False]


def test_yield_from_and_await_of_secret_objects_deopt():
    def gen():
        yield secret.enabled()

    def outer(g):
        yield from g

    holder = []
    for _ in range(50):
        secret.do(lambda: holder.append(gen()))
        assert list(outer(holder.pop())) == [True]
        assert list(outer(gen())) == [False]

    async def coro():
        await asyncio.sleep(0)
        return secret.enabled()

    async def plain_awaiter(c):
        return await c

    async def main():
        out = []
        for _ in range(50):
            made = []
            await secret.do_async(_make_into, made, coro)
            out.append(await plain_awaiter(made.pop()))
            out.append(await plain_awaiter(coro()))
        return out
    assert asyncio.run(main()) == [True, False] * 50


async def _make_into(lst, f):
    lst.append(f())


def test_aiterate():
    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield secret.enabled(), bytearray(os.urandom(8))

    async def main():
        out = []
        async for mode, buf in secret.aiterate(agen, 3):
            out.append((mode, is_secret(buf), secret.enabled()))
        ctl = []
        async for mode, buf in agen(1):
            ctl.append((mode, is_secret(buf)))
        return out, ctl
    out, ctl = asyncio.run(main())
    assert out == [(True, True, False)] * 3
    assert ctl == [(False, False)]


# --- generated interleavings ---------------------------------------------

class Escaped(Exception):
    pass


class Program:
    """A random program: tasks, some protected, each a random sequence of
    actions; every step of every task records its mode, whether what it
    allocates is secret, and the copies of the protected tasks' stack
    pattern it finds below its own frame."""

    ACTIONS = ["sleep0", "sleep", "nested", "child", "do", "do_async",
               "raise", "queue", "stack", "timeout", "escape"]

    def __init__(self, seed, wrap=True):
        self.rng = random.Random(seed)
        self.wrap = wrap
        self.pattern = new_pattern()
        self.records = []           # (protected, mode, secret_alloc, hits)
        self.escaped = []           # (protected, body frames in traceback)

    def check(self, protected):
        # What the step allocates, of several kinds (free lists included):
        # all secret in a protected step, none in another.
        made = [bytearray(16), [protected], {"k": protected}, float(
            len(self.records)) + 0.5, str(len(self.records)) + "x", (1, [])]
        kinds = {is_secret(o) for o in made}
        self.records.append((protected, secret.enabled(),
                             kinds.pop() if len(kinds) == 1 else None,
                             0 if protected else stack_hits(self.pattern)))

    async def nested(self, protected, depth):
        self.check(protected)
        if protected:
            T.write_stack_pattern(self.pattern, 2048 << depth % 3)
        await asyncio.sleep(0)
        self.check(protected)

    async def body(self, protected, plan, queue):
        for act in plan:
            self.check(protected)
            if protected:
                T.write_stack_pattern(self.pattern, 4096)
            if act == "sleep0":
                await asyncio.sleep(0)
            elif act == "sleep":
                await asyncio.sleep(self.rng.random() / 2000)
            elif act == "nested":
                await self.nested(protected, len(self.records))
            elif act == "child":
                await asyncio.create_task(self.nested(protected, 1))
            elif act == "do":
                secret.do(T.write_stack_pattern, self.pattern, 1024)
            elif act == "do_async" and protected:
                await secret.do_async(self.nested, True, 2)
            elif act == "raise":
                try:
                    await self.raiser(protected)
                except KeyError:
                    pass
            elif act == "queue":
                await queue.put(bytes(8))
                await asyncio.sleep(0)
            elif act == "stack":
                await asyncio.sleep(0)
            elif act == "timeout":
                try:
                    async with asyncio.timeout(0):
                        await asyncio.sleep(1)
                except TimeoutError:
                    pass
            elif act == "escape":
                await asyncio.sleep(0)
                self.check(protected)
                raise Escaped(protected)
            self.check(protected)

    async def raiser(self, protected):
        await asyncio.sleep(0)
        self.check(protected)
        raise KeyError("k")

    async def drain(self, queue):
        while True:
            await queue.get()
            self.check(False)

    async def main(self):
        queue = asyncio.Queue()
        drainer = asyncio.create_task(self.drain(queue))
        tasks = []
        for i in range(self.rng.randint(2, 6)):
            protected = self.rng.random() < 0.5 or i == 0
            plan = [self.rng.choice(self.ACTIONS)
                    for _ in range(self.rng.randint(1, 8))]
            if protected and self.wrap:
                aw = secret.do_async(self.body, True, plan, queue)
            else:
                aw = self.body(protected, plan, queue)
            tasks.append(asyncio.create_task(aw))
        for t in tasks:
            if self.rng.random() < 0.2:
                await asyncio.sleep(0)
                t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, Escaped):
                # (protected, the body's frames still reachable)
                self.escaped.append((r.args[0], "body" in frames_of(r)))
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)


def run_program(seed, wrap, loop_factory=None, escaped=None):
    prog = Program(seed, wrap)
    if loop_factory is None:
        asyncio.run(prog.main())
    else:
        with asyncio.Runner(loop_factory=loop_factory) as r:
            r.run(prog.main())
    if escaped is not None:
        escaped += prog.escaped
    return prog.records


def judge(records):
    """Steps of protected tasks in secret mode and allocating secretly;
    the others neither, and finding no copy of the pattern."""
    bad = [r for r in records
           if r[0] != r[1] or r[0] != r[2] or (not r[0] and r[3])]
    return bad


def interleavings(n, loop_factory=None):
    modes_caught = stacks_caught = 0
    esc, esc_ctl = [], []
    for seed in range(n):
        rec = run_program(seed, True, loop_factory, esc)
        assert judge(rec) == [], seed
        ctl = run_program(seed, False, loop_factory, esc_ctl)
        modes_caught += any(r[0] != r[1] or r[0] != r[2] for r in ctl)
        stacks_caught += any(r[3] for r in ctl if not r[0])
    # The control (no do_async) must be caught by the same judge: every
    # program by the mode and allocation checks, and most by the stack
    # check (a program whose unprotected tasks never run after a step of
    # a protected one has nothing to find).
    assert modes_caught == n
    assert stacks_caught > n // 2, stacks_caught
    # An exception that leaves a protected body holds none of its frames;
    # without do_async it does (and an unprotected body's always does).
    assert [p for p, frames in esc if p and frames] == []
    assert any(p for p, _ in esc)
    assert all(frames for _, frames in esc_ctl) and esc_ctl


def test_generated_interleavings_default_loop():
    interleavings(200)


def test_generated_interleavings_uvloop():
    uvloop = pytest.importorskip("uvloop")
    interleavings(100, uvloop.new_event_loop)
