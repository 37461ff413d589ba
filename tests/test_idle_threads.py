"""Threads started in do() that outlive it (spec §2, §3.1, §3.2): each time
such a thread is about to wait (a lock, an RLock, a condition, an event, a
semaphore, queue.Queue, queue.SimpleQueue, a join), what its finished work
left on its C stack below the waiting frame is zeroed.

Each shape (a generated mix of where the pattern lies, how the thread
waits, with or without a timeout, how many wait cycles, the thread's stack
size) plants a random pattern in C frames (_testsecret), waits, and, once
woken, counts the copies left below the frame it waited in (its address
is what the idle point recorded). Every shape runs three times:

- protected: a thread started in do(): no copy;
- control: the same, with the idle erasure turned off (_testsecret): the
  pattern is found, so the protected run could have failed;
- ordinary: the same in a thread started outside do(): found too, and no
  idle point is reached.

A last test looks as an attacker would: another thread scans an idle pool
worker's stack (a ThreadPoolExecutor made inside do()).
"""

import queue
import random
import threading
import time

import pytest

secret = pytest.importorskip("secret")
_testsecret = pytest.importorskip("_testsecret")

if not secret.supported() or not hasattr(_testsecret, "idle_points"):
    pytest.skip("no erasure in this build", allow_module_level=True)

import os  # noqa: E402

WAITS = ("lock", "rlock", "condition", "event", "semaphore", "queue",
         "simplequeue", "join", "barrier")


def make_shape(rng):
    """One shape: its cycles of (where the pattern goes, how the thread
    waits), and the thread's stack size."""
    cycles = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        cycles.append({
            "how": rng.choice(("frames", "frames", "gapped", "pipe")),
            "gap": rng.choice((0, 0, 512, 4096, 30000, 200000)),
            "nbytes": rng.choice((4096, 8192, 20000, 100000)),
            # The wait made this far below the planting frame's caller.
            "wait_gap": rng.choice((0, 0, 0, 256, 1024)),
            "py_depth": rng.choice((0, 0, 3, 20)),
            "wait": rng.choice(WAITS),
            "timeout": rng.choice((None, None, 0.05)),
        })
    return {"cycles": cycles,
            "stack": rng.choice((0, 0, 512 * 1024, 2 << 20, 16 << 20))}


def plant(c, pat):
    if c["how"] == "frames":
        fn = lambda: _testsecret.write_stack_pattern(pat, c["nbytes"])  # noqa
    elif c["how"] == "gapped":
        fn = lambda: _testsecret.write_gapped(pat, c["nbytes"], 0)  # noqa
    else:   # the kernel writes it (read() from a pipe)
        fn = lambda: _testsecret.write_gapped(pat, c["nbytes"], 1)  # noqa
    if c["gap"]:
        _testsecret.call_below_gap(c["gap"], fn)
    else:
        fn()


def nested(depth, fn):
    if depth:
        return nested(depth - 1, fn)
    return fn()


class Waiter:
    """Something for a thread to wait on, and what wakes it. wake() is
    called once the waiter is parked (or never, with a timeout)."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "lock":
            self.obj = threading.Lock()
            self.obj.acquire()
        elif kind == "rlock":
            self.obj = threading.RLock()
            self.held = threading.Event()
            self.free = threading.Event()
            # An RLock is released by its owner: a thread of its own holds it.
            self.owner = threading.Thread(target=self._own)
            self.owner.start()
            self.held.wait()
        elif kind == "condition":
            self.obj = threading.Condition()
        elif kind == "event":
            self.obj = threading.Event()
        elif kind == "semaphore":
            self.obj = threading.Semaphore(0)
        elif kind == "queue":
            self.obj = queue.Queue()
        elif kind == "simplequeue":
            self.obj = queue.SimpleQueue()
        elif kind == "join":
            self.free = threading.Event()
            self.obj = threading.Thread(target=self.free.wait)
            self.obj.start()
        elif kind == "barrier":
            self.obj = threading.Barrier(2)

    def _own(self):
        with self.obj:
            self.held.set()
            self.free.wait()

    def wait(self, timeout):
        k, o = self.kind, self.obj
        if k in ("lock", "rlock"):
            o.acquire(timeout=-1 if timeout is None else timeout)
        elif k == "semaphore":
            o.acquire(timeout=timeout)
        elif k == "condition":
            with o:
                o.wait(timeout)
        elif k == "event":
            o.wait(timeout)
        elif k in ("queue", "simplequeue"):
            try:
                o.get(timeout=timeout)
            except queue.Empty:
                pass
        elif k == "join":
            o.join(timeout)
        elif k == "barrier":
            try:
                o.wait(timeout)
            except threading.BrokenBarrierError:
                pass

    def wake(self):
        k, o = self.kind, self.obj
        if k == "lock":
            o.release()
        elif k in ("rlock", "join"):
            self.free.set()
        elif k == "condition":
            with o:
                o.notify_all()
        elif k == "event":
            o.set()
        elif k == "semaphore":
            o.release()
        elif k in ("queue", "simplequeue"):
            o.put(1)
        elif k == "barrier":
            o.wait()

    def close(self):
        if self.kind in ("rlock", "join"):
            self.free.set()
            (self.owner if self.kind == "rlock" else self.obj).join()
        if self.kind == "barrier":
            self.obj.abort()


def run_shape(shape, pat, inherit, parked):
    """Run shape in a new thread (started in do() if inherit); return, per
    cycle, (idle points the thread reached while waiting, copies of pat
    below the frame it last waited in). parked(before) returns once the
    thread has reached an idle point after `before` (a total count)."""
    out = []
    errors = []
    go = threading.Event()
    box = {}
    waiters = [Waiter(c["wait"]) for c in shape["cycles"]]

    def body():
        try:
            lo, hi, _ = _testsecret.stack_info()
            for c, w in zip(shape["cycles"], waiters):
                plant(c, pat)
                seen0 = _testsecret.idle_points()[1]
                box["before"] = _testsecret.idle_points()[0]
                go.set()

                def wait(w=w, c=c):
                    nested(c["py_depth"], lambda: w.wait(c["timeout"]))
                if c["wait_gap"]:
                    _testsecret.call_below_gap(c["wait_gap"], wait)
                else:
                    wait()
                _, seen, top = _testsecret.idle_points()
                n = _testsecret.count_in_range(lo, top - lo, pat) \
                    if seen > seen0 else -1
                out.append((seen - seen0, n))
                go.clear()
                box["done"] = True
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            go.set()

    old = threading.stack_size()
    threading.stack_size(shape["stack"])
    try:
        if inherit:
            t = secret.do(lambda: _start(body))
        else:
            t = _start(body)
    finally:
        threading.stack_size(old)
    try:
        for c, w in zip(shape["cycles"], waiters):
            go.wait()
            if errors:
                break
            box.pop("done", None)
            if c["timeout"] is None:
                parked(box["before"])
                w.wake()
            while t.is_alive() and not box.get("done") and not errors:
                time.sleep(0.001)
    finally:
        t.join()
        for w in waiters:
            w.close()
    if errors:
        raise errors[0]
    return out


def _start(body):
    t = threading.Thread(target=body)
    t.start()
    return t


def parked_by_count(before):
    """The thread under test is the only one that inherited secret mode:
    the total count moves only when it reaches an idle point."""
    while _testsecret.idle_points()[0] <= before:
        time.sleep(0.0005)
    time.sleep(0.002)   # from the erasure into the wait itself


def parked_ordinary(thread_waits):
    """An ordinary thread reaches no idle point: give it time to park (a
    wake that comes first only makes the control find less)."""
    def parked(before):
        time.sleep(0.02)
    return parked


@pytest.fixture
def erase():
    yield
    _testsecret.idle_erase(True)


def shapes(seed, n):
    rng = random.Random(seed)
    return [make_shape(rng) for _ in range(n)]


N_SHAPES = int(os.environ.get("IDLE_SHAPES", "120"))


def test_shapes_protected_and_controls(erase):
    """Each shape: no copy below the waiting frame in a thread started in
    do(); the same shape finds copies with the erasure off and in an
    ordinary thread."""
    seed = random.randrange(1 << 32)
    failures = []
    for i, shape in enumerate(shapes(seed, N_SHAPES)):
        pat = os.urandom(8)
        _testsecret.idle_erase(True)
        prot = run_shape(shape, pat, True, parked_by_count)
        _testsecret.idle_erase(False)
        ctrl = run_shape(shape, pat, True, parked_by_count)
        _testsecret.idle_erase(True)
        plain = run_shape(shape, pat, False, parked_ordinary(True))
        for k, (p, c, o) in enumerate(zip(prot, ctrl, plain)):
            what = "seed %d shape %d cycle %d %r" % (
                seed, i, k, shape["cycles"][k])
            if p[0] < 1 or c[0] < 1:
                failures.append("%s: no idle point reached (%r, %r)"
                                % (what, p, c))
            elif p[1] != 0:
                failures.append("%s: %d copies left" % (what, p[1]))
            elif c[1] < 1:
                failures.append("%s: the control found nothing" % what)
            if o[0] != 0:
                failures.append("%s: an ordinary thread reached an idle "
                                "point" % what)
        # The ordinary thread's count: below where it waited is unknown
        # (no idle point); its whole stack is scanned in the next test.
    assert not failures, "\n".join(failures[:20])


def test_ordinary_thread_keeps_what_it_left(erase):
    """The control of the flag: a thread not started in do() waits with the
    pattern still below (found by scanning its stack from another thread
    while it waits); the same in a thread started in do() finds none."""
    for inherit in (False, True):
        pat = os.urandom(8)
        ev = threading.Event()
        info = {}

        def body():
            info["stack"] = _testsecret.stack_info()
            _testsecret.call_below_gap(8192, lambda: _testsecret.
                                       write_stack_pattern(pat, 16384))
            info["ready"] = True
            ev.wait()

        before = _testsecret.idle_points()[0]
        t = secret.do(lambda: _start(body)) if inherit else _start(body)
        while not info.get("ready"):
            time.sleep(0.001)
        if inherit:
            parked_by_count(before)
        else:
            time.sleep(0.05)
        lo, hi, _ = info["stack"]
        n = _testsecret.count_in_range(lo, hi - lo, pat)
        ev.set()
        t.join()
        if inherit:
            assert n == 0, "%d copies on an idle inherited thread" % n
        else:
            assert n >= 1, "the ordinary thread's control found nothing"


@pytest.mark.parametrize("erasing", [True, False])
def test_pool_worker_idle_scanned_from_outside(erase, erasing):
    """A ThreadPoolExecutor made in do(): its workers plant the pattern in
    C frames, then go idle on the pool's queue. Scanned from this thread
    while they wait: none left (erasure on); the control (off) finds it."""
    from concurrent.futures import ThreadPoolExecutor
    _testsecret.idle_erase(erasing)
    pat = os.urandom(8)
    stacks = []

    def task(i):
        stacks.append(_testsecret.stack_info())
        _testsecret.write_stack_pattern(pat, 4096 + 2048 * (i % 8))
        return i

    def start():
        pool = ThreadPoolExecutor(max_workers=4)
        return pool, [pool.submit(task, i) for i in range(64)]

    before = _testsecret.idle_points()[0]
    pool, futs = secret.do(start)
    assert sorted(f.result() for f in futs) == list(range(64))
    # Every worker went idle after its last task (total count moves).
    while _testsecret.idle_points()[0] < before + 4:
        time.sleep(0.001)
    time.sleep(0.05)
    found = sum(_testsecret.count_in_range(lo, hi - lo, pat)
                for lo, hi in {(s[0], s[1]) for s in stacks})
    pool.shutdown()
    if erasing:
        assert found == 0, "%d copies on idle pool workers" % found
    else:
        assert found >= 1, "the control found nothing"


def test_hundreds_of_threads_at_once(erase):
    """200 threads started in do(), 16 at a time, each plants and waits
    with a timeout (no waker): none leaves a copy below its waiting frame;
    with the erasure off, each finds its own."""
    for erasing in (True, False):
        _testsecret.idle_erase(erasing)
        results = []
        lock = threading.Lock()
        rng = random.Random()

        def body(pat, gap, nbytes, kind):
            w = Waiter(kind)
            _testsecret.call_below_gap(gap, lambda: _testsecret.
                                       write_stack_pattern(pat, nbytes))
            seen0 = _testsecret.idle_points()[1]
            w.wait(0.02)
            _, seen, top = _testsecret.idle_points()
            lo = _testsecret.stack_info()[0]
            n = _testsecret.count_in_range(lo, top - lo, pat)
            with lock:
                results.append((seen > seen0, n))

        for batch in range(200 // 16 + 1):
            ts = []
            for _ in range(16 if batch < 200 // 16 else 200 % 16):
                args = (os.urandom(8), rng.choice((0, 4096, 20000)),
                        rng.choice((4096, 30000)),
                        rng.choice(("lock", "condition", "event",
                                    "simplequeue", "semaphore")))
                ts.append(secret.do(lambda a=args: _start(
                    lambda: body(*a))))
            for t in ts:
                t.join()
        assert len(results) == 200
        assert all(idled for idled, _ in results)
        if erasing:
            left = [n for _, n in results if n]
            assert not left, "%d threads left copies" % len(left)
        else:
            assert all(n >= 1 for _, n in results), \
                "a control found nothing: %r" % results


def test_idle_points_among_native_allocation(erase):
    """Threads started in do() that allocate without the GIL (zlib, hashing
    large buffers: their malloc is the secret heap's) and wait on a shared
    lock between rounds: idle points (any of which may come inside malloc,
    when the secret heap's lock is contended) while the others allocate;
    none deadlocks, each finishes its work."""
    import hashlib
    import zlib
    data = os.urandom(1 << 20)
    done = []
    gate = threading.Lock()

    def body(i):
        for _ in range(20):
            c = zlib.compress(data, 1)
            assert zlib.decompress(c) == data
            hashlib.sha256(data).digest()
            with gate:
                time.sleep(0.001)
        done.append(i)

    before = _testsecret.idle_points()[0]
    ts = secret.do(lambda: [_start(lambda i=i: body(i)) for i in range(8)])
    for t in ts:
        t.join(300)
    assert not any(t.is_alive() for t in ts), "a thread is stuck"
    assert sorted(done) == list(range(8))
    assert _testsecret.idle_points()[0] > before
