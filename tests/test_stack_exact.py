"""The C-stack erasure is exact (spec §3.2, §5): shapes that try to defeat it.

Each generated case plants a random pattern somewhere below do's frame
through a chain of C-level calls (map, sorted's key, reduce, properties,
__getattr__, __eq__, __hash__, descriptors, a ctypes callback from libc's
qsort, C frames with untouched stretches of 64 B to 64 KiB), at the
bottom of a frame whose rest is never written (a store, or the kernel's
read()), with nested do() calls at generated points, on the main thread
and on fresh threads with stacks from 256 KiB to 64 MiB, some with a timer
signal arriving meanwhile. The control (the same shape without do) must
find the pattern below the caller's frame; the protected run must find
none. The seed is printed, so a failure can be replayed
(RUNTIMESECRET_SEED=...).

The rest: the issue's own reproductions (a nested do after deep work,
bytes.fromhex through call chains), going deeper than the unmapped hole
below a thread's window (the reserve and its fault handler), a stack
larger than RLIMIT_STACK, capacity that nothing steals, faulthandler in
every order, a genuine crash still reported, threads C code starts,
fork(), and a thread reusing a stack glibc cached.
"""

import ctypes
import functools
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest

import secret
from conftest import ASAN, in_thread

T = pytest.importorskip("_testsecret")

pytestmark = pytest.mark.skipif(not secret.supported(),
                                reason="fallback mode erases nothing")

SEED = int(os.environ.get("RUNTIMESECRET_SEED") or
           int.from_bytes(os.urandom(4), "little"))


def new_pattern():
    p = os.urandom(8)
    while b"\0" in p:
        p = os.urandom(8)
    return p


# --- the generated shapes ----------------------------------------------------

_libc = ctypes.CDLL(None)
_CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_libc.qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                        _CMP]


def _via_qsort(f):
    arr = (ctypes.c_int * 2)(1, 0)

    def cmp(a, b):
        f()
        return 0
    cb = _CMP(cmp)
    _libc.qsort(arr, 2, ctypes.sizeof(ctypes.c_int), cb)


class _Prop:
    def __init__(self, f):
        self.f = f

    @property
    def v(self):
        return self.f()


class _GetAttr:
    def __init__(self, f):
        self.f = f

    def __getattr__(self, name):
        return self.f()


class _Eq:
    def __init__(self, f):
        self.f = f

    def __eq__(self, other):
        self.f()
        return False

    __hash__ = object.__hash__


class _Hash:
    def __init__(self, f):
        self.f = f

    def __hash__(self):
        self.f()
        return 1


class _Desc:
    def __init__(self, f):
        self.f = f

    def __get__(self, obj, typ=None):
        return self.f()


def _descriptor(f):
    cls = type("D", (), {"x": _Desc(f)})
    return lambda: cls().x


WRAPPERS = {
    "map": lambda f: lambda: list(map(lambda _: f(), (0,))),
    "sorted": lambda f: lambda: sorted((1, 0), key=lambda x: (f(), x)[1]),
    "reduce": lambda f: lambda: functools.reduce(lambda a, b: f(), (0, 1)),
    "property": lambda f: lambda: _Prop(f).v,
    "getattr": lambda f: lambda: _GetAttr(f).missing,
    "eq": lambda f: lambda: [_Eq(f)].count(0),
    "hash": lambda f: lambda: {_Hash(f)},
    "descriptor": _descriptor,
    "qsort": lambda f: lambda: _via_qsort(f),
}


def _log_uniform(rng, lo, hi):
    return int(lo * (hi / lo) ** rng.random())


class Case:
    """One generated shape: describe(), and make(pattern, protected)."""

    def __init__(self, rng, key):
        self.key = key
        self.leaf = rng.choice(["dense", "gapped", "gapped", "fromhex"])
        self.size = _log_uniform(rng, 64, 64 * 1024)
        self.mode = rng.randrange(3)
        # Levels from the outside in: a wrapper, a C gap frame, or a
        # nested do() (around the rest, or right after it).
        self.levels = []
        for _ in range(rng.randrange(7)):
            r = rng.random()
            if r < 0.15:
                self.levels.append(("gap", _log_uniform(rng, 64, 64 * 1024)))
            elif r < 0.25:
                self.levels.append(("do", None))
            elif r < 0.32:
                self.levels.append(("do-after", None))
            else:
                self.levels.append((rng.choice(sorted(WRAPPERS)), None))
        self.thread = rng.choice([None, None, 256 << 10, 1 << 20, 8 << 20,
                                  64 << 20])
        self.timer = self.thread is None and rng.random() < 0.2
        if self.timer:
            # The Python-level handler runs once the leaf has returned and
            # overwrites the shallow dead stack: plant deeper than it goes.
            self.leaf = rng.choice(["dense", "gapped"])
            self.size = _log_uniform(rng, 16 * 1024, 64 * 1024)

    def describe(self):
        return "leaf=%s size=%d mode=%d levels=%s thread=%s timer=%s" % (
            self.leaf, self.size, self.mode, self.levels, self.thread,
            self.timer)

    def make(self, pattern, protected):
        if self.leaf == "dense":
            f = functools.partial(T.write_stack_pattern, pattern, self.size)
        elif self.leaf == "gapped":
            f = functools.partial(T.write_gapped, pattern, self.size,
                                  self.mode, lambda: None)
        else:
            f = functools.partial(bytes.fromhex, self.key.hex())
        for kind, arg in reversed(self.levels):
            f = self._wrap(kind, arg, f, protected)
        return f

    @staticmethod
    def _wrap(kind, arg, f, protected):
        if kind == "gap":
            return functools.partial(T.call_below_gap, arg, f)
        if kind == "do":
            return (lambda: secret.do(f)) if protected else f
        if kind == "do-after":
            if not protected:
                return f

            def after():
                f()
                secret.do(lambda: None)
            return after
        return WRAPPERS[kind](f)


def run_case(case, pattern, protected):
    """Copies of pattern below the caller's frame after the case ran, on
    the main thread or a fresh one."""
    f = case.make(pattern, protected)

    def body():
        if protected:
            return T.call_and_scan(pattern, secret.do, f)[1]
        return T.call_and_scan(pattern, f)[1]

    if case.thread is not None:
        return in_thread(case.thread, body)
    if case.timer:
        signal.signal(signal.SIGALRM, lambda *a: None)
        signal.setitimer(signal.ITIMER_REAL, 1e-5, 2e-5)
    try:
        n = body()
    finally:
        if case.timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
    # Frames of handlers that ran on the alternate stack (pytest's
    # faulthandler installs one on the main thread).
    alt = T.altstack_info()
    if protected and alt is not None:
        n += T.count_in_range(alt[0], alt[1], pattern)
    return n


N_CASES = 1500


def test_generated_shapes_leave_nothing():
    rng = random.Random(SEED)
    controls_missed, leaks = [], []
    for i in range(N_CASES):
        key = new_pattern() + os.urandom(24)
        pattern = key[:8]
        case = Case(rng, key)
        if run_case(case, pattern, False) == 0:
            controls_missed.append(case.describe())
        n = run_case(case, pattern, True)
        if n:
            leaks.append("%d copies: %s" % (n, case.describe()))
    info = "seed %d, %d cases" % (SEED, N_CASES)
    assert leaks == [], info + "\n" + "\n".join(leaks[:20])
    # Under AddressSanitizer its runtime writes the stack below the caller
    # too (a few controls of 1,500 find nothing there); a case whose control
    # missed proves nothing, the others still do.
    allowed = N_CASES // 100 if ASAN else 0
    assert len(controls_missed) <= allowed, (
        info + ": controls that found nothing (the shape proves nothing)\n"
        + "\n".join(controls_missed[:20]))


def test_runs_of_shallow_calls_then_a_deep_one():
    # The mapping below the window is trimmed once 16 exits in a row could
    # have trimmed it (or at once when it reaches 16 KiB deeper than
    # needed), and the window is 2 KiB at least: runs of 0-40 shallow
    # do() calls leave it at every point of that schedule before a call
    # whose frame skips over the window and writes only at its bottom (a
    # gap, a gapped leaf), found by the growth check alone. The control
    # runs after the protected call, so that its own growth of the
    # mapping cannot help the protected one.
    rng = random.Random(SEED ^ 0x5A5A)

    def body():
        bad = []
        for _ in range(150):
            pattern = new_pattern()
            runs = rng.randrange(41)
            size = _log_uniform(rng, 64, 64 * 1024)
            f = functools.partial(T.write_gapped, pattern, size,
                                  rng.randrange(3), lambda: None)
            gap = _log_uniform(rng, 64, 64 * 1024) if rng.random() < 0.5 \
                else None
            if gap is not None:
                f = functools.partial(T.call_below_gap, gap, f)
            for _ in range(runs):
                secret.do(len, "")
            protected = T.call_and_scan(pattern, secret.do, f)[1]
            control = T.call_and_scan(pattern, f)[1]
            if control == 0 or protected != 0:
                bad.append((control, protected, runs, size, gap))
        return bad

    info = "seed %d" % SEED
    assert body() == [], info
    assert in_thread(1 << 20, body) == [], info
    assert in_thread(8 << 20, body) == [], info


def _maps():
    spans = []
    with open("/proc/self/maps") as f:
        for line in f:
            a, b = line.split()[0].split("-")
            spans.append((int(a, 16), int(b, 16), line.rstrip()))
    return spans


def _covered(spans, lo, hi):
    for a, b, _ in sorted(spans):
        if a <= lo < b:
            lo = b
        if lo >= hi:
            return True
    return lo >= hi


def test_mapped_test_agrees_with_the_kernel():
    # Each exit asks the kernel whether the page under the window is
    # mapped, i.e. whether the grows-down mapping grew: msync(MS_ASYNC),
    # which fails at the first unmapped page of a range (mincore() says
    # the same but allocates a page a call). Generated layouts (pages
    # unmapped, PROT_NONE, a grows-down mapping) and the main thread's
    # stack with its hole below the window: for every range, msync's
    # answer must be mincore's and /proc/self/maps's (the control: ranges
    # on both sides of every answer occur).
    if not hasattr(T, "range_mapped"):
        pytest.skip("no secret heap in this build")
    secret.do(len, "")
    page = os.sysconf("SC_PAGE_SIZE")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    rng = random.Random(SEED)
    answers = {True: 0, False: 0}
    disagree = []

    def check(base, npages):
        for _ in range(20):
            before = _maps()
            got = []
            for _ in range(200):
                a = rng.randrange(npages)
                b = rng.randrange(a + 1, npages + 1)
                lo, hi = base + a * page, base + b * page
                got.append((lo, hi, T.range_mapped(lo, hi, 0),
                            T.range_mapped(lo, hi, 1)))
            if _maps() == before:
                break
        for lo, hi, by_msync, by_mincore in got:
            truth = _covered(before, lo, hi)
            answers[truth] += 1
            if not by_msync == by_mincore == truth:
                disagree.append((hex(lo), hex(hi), by_msync, by_mincore,
                                 truth))

    n = 64
    for _ in range(20):
        base = libc.mmap(None, n * page, 3, 0x22, -1, 0)  # RW, private|anon
        assert base not in (None, ctypes.c_void_p(-1).value)
        try:
            for i in range(1, n - 1):
                r = rng.random()
                if r < 0.3:
                    libc.munmap(base + i * page, page)
                elif r < 0.45:
                    libc.mprotect(base + i * page, page, 0)
            g = rng.randrange(8, n - 8)
            # MAP_FIXED | MAP_GROWSDOWN over two pages
            libc.mmap(base + g * page, 2 * page, 3, 0x22 | 0x10 | 0x100,
                      -1, 0)
            check(base - page, n + 2)
        finally:
            libc.munmap(base, n * page)
    stack = [a for a, b, line in _maps() if line.endswith("[stack]")]
    if stack:
        # Below the window the main thread's stack is unmapped.
        check(stack[0] - 64 * page, 80)
    assert disagree == [], disagree[:10]
    assert answers[True] > 100 and answers[False] > 100, answers


# --- the reproductions ---------------------------------------------

def test_nested_do_after_deep_work_fresh_threads():
    # func goes 64 KiB deep, comes back up and calls do(): the inner exit
    # must not hide from the outer one how deep func went.
    pattern = new_pattern()

    def outer(nested):
        T.write_stack_pattern(pattern, 64 * 1024)
        if nested:
            secret.do(lambda: None)

    for _ in range(20):
        control = in_thread(None,
                            lambda: T.call_and_scan(pattern, outer, 0)[1])
        assert control > 0
        protected = in_thread(
            None, lambda: T.call_and_scan(pattern, secret.do, outer, 1)[1])
        assert protected == 0


@pytest.mark.parametrize("fresh", [True, False])
def test_fromhex_through_call_chains(fresh):
    rng = random.Random(SEED + 1)
    key = new_pattern() + os.urandom(24)
    pattern, keyhex = key[:8], key.hex()
    kinds = ["map", "sorted", "reduce", "property"]
    missed = leaked = 0
    for i in range(210):
        f = lambda: bytes.fromhex(keyhex)  # noqa: E731
        for _ in range(i % 7):
            f = WRAPPERS[rng.choice(kinds)](f)
        for protected in (False, True):
            call = ((lambda: T.call_and_scan(pattern, secret.do, f)[1])
                    if protected else (lambda: T.call_and_scan(pattern, f)[1]))
            n = in_thread(None, call) if fresh else call()
            if protected:
                leaked += n > 0
            else:
                missed += n == 0
    assert (missed, leaked) == (0, 0)


# --- the reserve below a thread's hole -------------------------------------

def test_deeper_than_the_hole_in_a_thread():
    # The hole below a thread's window is at most 1 MiB deep; going 4 MiB
    # deep faults in the reserve, which makes room. Erased all the same.
    pattern = new_pattern()

    def body():
        c = T.call_and_scan(pattern, T.write_stack_pattern, pattern, 4 << 20)
        secret.do(lambda: None)        # the thread now has a reserve
        p = T.call_and_scan(pattern, secret.do, T.write_stack_pattern,
                            pattern, 4 << 20)
        # and outside do, later: the whole stack is still there
        T.write_stack_pattern(pattern, 7 << 20)
        return c[1], p[1]

    # ASan's frames are larger: the 7 MiB write needs a larger stack there.
    control, protected = in_thread((16 if ASAN else 8) << 20, body)
    assert control > 0
    assert protected == 0


def test_stack_larger_than_rlimit_stack():
    # RLIMIT_STACK (8 MiB here) caps a grows-down mapping; a 64 MiB thread
    # stack goes deeper through the fault handler's plain mappings.
    import resource
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if soft == resource.RLIM_INFINITY or soft >= 48 << 20:
        pytest.skip("RLIMIT_STACK is not below the thread's stack here")
    pattern = new_pattern()

    def body():
        c = T.call_and_scan(pattern, T.write_stack_pattern, pattern, 40 << 20)
        p = T.call_and_scan(pattern, secret.do, T.write_stack_pattern,
                            pattern, 40 << 20)
        T.write_stack_pattern(pattern, 40 << 20)
        q = T.call_and_scan(pattern, secret.do, lambda: None)
        return c[1], p[1], q[1]

    control, protected, after = in_thread(64 << 20, body)
    assert control > 0
    assert (protected, after) == (0, 0)


CHILD_PRELUDE = """
import faulthandler, mmap, os, sys, threading
import secret, _testsecret as T
P = bytes.fromhex(sys.stdin.readline().strip())
threading.stack_size(8 << 20)
def run(fn):
    t = threading.Thread(target=fn); t.start(); t.join()
"""


def run_child(body, pattern=None, expect_rc=0):
    code = CHILD_PRELUDE + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code],
                       input=(pattern or new_pattern()).hex() + "\n",
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == expect_rc, (r.returncode, r.stdout, r.stderr)
    return r


def test_address_space_taken_meanwhile_does_not_shorten_the_stack():
    # The hole below a thread's window is free address space: mmap() must
    # not be able to take it (the reserve), or deep recursion later would
    # crash where the stack used to be.
    r = run_child("""
        def work():
            secret.do(lambda: None)
            maps = [mmap.mmap(-1, 1 << 20) for _ in range(400)]
            for m in maps:
                m[0] = 1
            T.write_stack_pattern(P, 7 << 20)
            secret.do(T.write_stack_pattern, P, 7 << 20)
            print("ok")
        run(work)
    """)
    assert r.stdout.strip() == "ok"


@pytest.mark.parametrize("order", ["before", "after", "enable-disable",
                                   "disable-enable"])
def test_faulthandler_in_any_order(order):
    # faulthandler's SIGSEGV handler asks the core first; without it the
    # core's own handler serves. A deep call must never read as a crash.
    r = run_child("""
        order = sys.argv[1] if len(sys.argv) > 1 else %r
        if order in ("before", "enable-disable"):
            faulthandler.enable()
        if order == "disable-enable":
            faulthandler.enable(); faulthandler.disable()
        def work():
            secret.do(lambda: None)
            if order == "after":
                faulthandler.enable()
            if order == "enable-disable":
                faulthandler.disable()
            if order == "disable-enable":
                faulthandler.enable()
            T.write_stack_pattern(P, 6 << 20)
            secret.do(T.write_stack_pattern, P, 6 << 20)
            print("ok")
        run(work)
    """ % order)
    assert r.stdout.strip() == "ok"
    assert "Fatal Python error" not in r.stderr


@pytest.mark.parametrize("with_faulthandler", [True, False])
def test_a_genuine_crash_is_still_a_crash(with_faulthandler):
    # Control for the handler's chaining: a real fault in a thread that
    # has a reserve still ends the process with SIGSEGV (and faulthandler's
    # report when it is on), instead of looping or being swallowed.
    r = run_child("""
        import ctypes
        if %r:
            faulthandler.enable()
        def work():
            secret.do(lambda: None)
            ctypes.string_at(16)
        run(work)
    """ % with_faulthandler, expect_rc=-signal.SIGSEGV)
    assert ("Fatal Python error: Segmentation fault" in r.stderr) \
        == with_faulthandler


def test_stack_overflow_still_ends_the_process():
    # Recursion deeper than the thread's stack: SIGSEGV, as upstream.
    run_child("""
        def work():
            secret.do(lambda: None)
            T.write_stack_pattern(P, 64 << 20)
        run(work)
    """, expect_rc=-signal.SIGSEGV)


def test_thread_reusing_a_cached_stack():
    # A thread's stack is mapped plain again when it ends: glibc caches
    # stacks, and the next thread on it knows nothing of a reserve.
    r = run_child("""
        def secret_work():
            secret.do(T.write_stack_pattern, P, 1 << 20)
        def deep():
            T.write_stack_pattern(P, 7 << 20)
        for _ in range(20):
            run(secret_work)
            run(deep)
        print("ok")
    """)
    assert r.stdout.strip() == "ok"


def test_thread_started_by_c_code():
    # A thread that C code starts (here libc's pthread_create through
    # ctypes) is not _thread's: its stack is checked in /proc/self/maps.
    pattern = new_pattern()
    libc = ctypes.CDLL(None)
    START = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
    out = []

    def start(arg):
        c = T.call_and_scan(pattern, T.write_gapped, pattern, 32 << 10, 0)
        p = T.call_and_scan(pattern, secret.do, T.write_gapped, pattern,
                            32 << 10, 0)
        q = T.call_and_scan(pattern, secret.do, T.write_stack_pattern,
                            pattern, 3 << 20)
        out.append((c[1], p[1], q[1]))
        return None

    cb = START(start)
    tid = ctypes.c_ulong()
    assert libc.pthread_create(ctypes.byref(tid), None, cb, None) == 0
    assert libc.pthread_join(tid, None) == 0
    control, protected, deep = out[0]
    assert control > 0
    assert (protected, deep) == (0, 0)


def test_fork_from_a_thread_with_a_reserve():
    r = run_child("""
        def work():
            secret.do(lambda: None)
            pid = os.fork()
            if pid == 0:
                try:
                    T.write_stack_pattern(P, 6 << 20)
                    n = T.call_and_scan(P, secret.do, T.write_stack_pattern,
                                        P, 6 << 20)[1]
                    os._exit(0 if n == 0 else 3)
                except BaseException:
                    os._exit(4)
            _, status = os.waitpid(pid, 0)
            print(os.waitstatus_to_exitcode(status))
        run(work)
    """)
    assert r.stdout.strip() == "0"


def test_generated_shapes_in_scan_mode():
    # The fallback (stacks that cannot be set up, valgrind) is exact too:
    # the same generated shapes with PYTHONSECRETSTACK=scan, in a child.
    code = textwrap.dedent("""
        import os, random, sys
        sys.path.insert(0, sys.argv[1])
        import test_stack_exact as t
        rng = random.Random(int(sys.argv[2]))
        bad = []
        for i in range(300):
            key = t.new_pattern() + os.urandom(24)
            case = t.Case(rng, key)
            c = t.run_case(case, key[:8], False)
            p = t.run_case(case, key[:8], True)
            if c == 0 or p != 0:
                bad.append((c, p, case.describe()))
        print(len(bad), bad[:5])
    """)
    r = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__), str(SEED)],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHONSECRETSTACK="scan"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("0 "), r.stdout


FORK_CHILD = """
import os, sys, threading
import secret, _testsecret as T
P = bytes.fromhex(sys.stdin.readline().strip())
mode = sys.argv[1]
ready, go = threading.Event(), threading.Event()
info = {}

def func():
    T.write_stack_pattern(P, 64 << 10)
    ready.set()
    go.wait()                   # blocked inside do() (the GIL released)

def worker():
    info["b"] = T.stack_info()
    secret.do(func) if mode == "protected" else func()

t = threading.Thread(target=worker)
t.start()
ready.wait()
lo, hi, sp = info["b"]
pid = os.fork()
if pid == 0:
    n = T.count_in_range(lo, hi - lo, P)
    sys.stdout.write("%d\\n" % n)
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
go.set()
t.join()
"""


def test_fork_while_another_thread_is_in_do():
    # The child has only the thread that forked; the other was inside do().
    # Its stack is zeroed below that do()'s frame in the child, and the
    # child is told (a RuntimeWarning) that the objects its work made stay.
    def run(mode):
        r = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning",
                            "-c", FORK_CHILD, mode],
                           input=new_pattern().hex() + "\n",
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split()[0]), r.stderr
    control, err = run("control")
    assert control > 0 and "secret:" not in err
    protected, err = run("protected")
    assert protected == 0
    assert "1 other thread(s) were inside secret.do()" in err, err
