"""Running out of secret memory (spec §3.4): a MemoryError, never a crash,
a hang or another error, wherever the heap fills up; the reserve that
makes that MemoryError serves only its making and unwinding; the heap's
message whenever a secret allocation failed. The findings F1, F3 and F7
of the heap's attack review (main 14881e7), each with a control.

The sweep (tests/oom_sweep.py) injects failures at sampled allocation
points of representative workloads. Its on-demand form runs every point
(52,158 runs, 1 to 1.5 minutes on 2 cores):
    python tests/oom_sweep.py --points 100000
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import interpreter

T = pytest.importorskip("_testsecret")

HERE = os.path.dirname(os.path.abspath(__file__))
SWEEP = os.path.join(HERE, "oom_sweep.py")


def run(code, *options, env=None, timeout=60, python=None):
    """code in a child interpreter: (returncode, stdout, stderr). A child
    that does not finish in time failed (a hang)."""
    e = dict(os.environ)
    e.pop("PYTHONSECRETHEAPSIZE", None)
    e.pop("PYTHONSECRETREQUIRELOCK", None)
    e.update(env or {})
    try:
        r = subprocess.run([python or sys.executable, *options, "-c",
                            textwrap.dedent(code)],
                           capture_output=True, text=True, env=e,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail("the child did not finish in %s s (a hang)" % timeout)
    return r.returncode, r.stdout, r.stderr


# --- the sweep (F3) -------------------------------------------------------

SWEEP_WORKLOADS = ["json", "re", "dict_set_list", "classes", "format",
                   "exceptions", "bytes", "numbers", "misc", "crypto"]


@pytest.mark.parametrize("workload", SWEEP_WORKLOADS)
def test_injection_sweep(workload):
    """At 100 sampled allocation points of the workload (its first 40 and
    a random sample, the seed in the output), in three modes: every
    secret allocation fails from there on (the heap full), only that one
    fails, every one fails the reserve's too. Each run returns the
    workload's result or raises the heap's MemoryError; the process stays
    sound (a full collection, the workload again). On main 14881e7 it
    crashed (SIGSEGV) in json, classes and re (dictiter_new,
    dict_setdefault_ref_lock_held), raised SystemError (take_ownership),
    and json.loads raised ValueError quoting the number it parsed (320 of
    its 2,931 points in mode "one"). The control: every mode does fail
    allocations (the heap's MemoryErrors seen). Since issue 23 OpenSSL's
    own allocations in do() are secret and fail too: hashlib and hmac
    raise them as OpenSSL's ValueError, which counts as sound."""
    try:
        r = subprocess.run([sys.executable, SWEEP, workload, "--points",
                            "100"], capture_output=True, text=True,
                           timeout=180)
    except subprocess.TimeoutExpired as e:
        last = (e.stderr or b"").decode(errors="replace").splitlines()[-1:]
        pytest.fail("hang at %s" % last)
    last = [l for l in r.stderr.splitlines() if l.startswith("at ")][-1:]
    assert r.returncode == 0, ("crashed %s at %s\n%s"
                               % (r.returncode, last, r.stderr[-3000:]))
    report = json.loads(r.stdout)
    res = report["workloads"][workload]
    for mode in ("all", "one", "reserve"):
        m = res[mode]
        assert m["bad"] == [], (report["seed"], mode, m)
        assert m["kinds"].get("MemoryError", 0) > 0, (mode, m)   # control
    # A heap full from point n on: the result only where n is past the
    # workload's last allocation.
    assert res["all"]["kinds"].get("ok", 0) <= 10, res


def test_sweep_seed_that_found_a_bare_memory_error():
    """The sampled sweep that found it (seed 4125418193, classes, the heap
    full from each point on): at point 92, after points 0-19 had run,
    type_ready_managed_dict() reported a failure that
    _PyDict_NewKeysForClass() had already reported and cleared, and got a
    MemoryError without the heap's message (the first report had consumed
    the failure). Now every point gives the result or the heap's error."""
    r = subprocess.run([sys.executable, SWEEP, "classes", "--points", "100",
                        "--seed", "4125418193", "--mode", "all"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)["workloads"]["classes"]["all"]
    assert res["bad"] == [], res
    assert res["kinds"].get("MemoryError", 0) > 50, res     # control


def test_a_failure_reported_twice_keeps_its_message():
    """Every point of a class creation with the heap full from there on
    (a thousand classes of generated shapes, each point): every
    MemoryError says the secret heap is full, however often C code
    reports a failure it cleared. Controls: a MemoryError that no heap
    failure caused (a size overflow) has no heap message, and one made
    after do() returned either."""
    code = r"""
import random, secret, sys, _testsecret as T
rng = random.Random(%d)
bad, heap_errors, shapes = [], 0, 0
def make(k):
    ns = {"a%%d" %% i: i for i in range(k %% 7)}
    if k %% 3 == 0:
        ns["__slots__"] = ("x", "y")[:k %% 2 + 1]
    bases = (dict,) if k %% 5 == 0 else ()
    C = type("C%%d" %% k, bases, ns)
    return C, C()
for shape in range(60):
    k = rng.randrange(1000)
    before = secret.heap_info()["allocations"]
    secret.do(make, k)
    total = secret.heap_info()["allocations"] - before
    for n in range(total + 1):
        T.fail_secret_allocations(n, -1, False)
        try:
            secret.do(make, k)
        except MemoryError as e:
            if "secret heap" in str(e):
                heap_errors += 1
            else:
                bad.append((k, n, repr(e)))
        finally:
            T.fail_secret_allocations(-1)
    shapes += 1
def overflow():
    try:
        bytearray(sys.maxsize)
    except MemoryError as e:
        return str(e)
inside = secret.do(overflow)
T.fail_secret_allocations(0, -1, False)
try:
    secret.do(make, 1)
except MemoryError:
    pass
finally:
    T.fail_secret_allocations(-1)
after = overflow()
print(repr((bad[:5], len(bad), heap_errors, shapes, inside, after)))
""" % int.from_bytes(os.urandom(4), "little")
    rc, out, err = run(code)
    assert rc == 0, err[-3000:]
    bad, nbad, heap_errors, shapes, inside, after = eval(out)
    assert nbad == 0, bad
    assert heap_errors > shapes * 5, out                 # control: failures
    assert "secret heap" not in inside, inside            # control
    assert "secret heap" not in after, after              # control


# --- the upstream sites (patch 0021), on pristine and here ---------------

# Each script injects failures with _testcapi.set_nomemory (any build,
# outside do): pristine shows upstream's bug, the experiment the fix.
DICTITER = r"""
import gc, _testcapi
gc.disable()
d = {1: 2}; view = d.items()
args = (1, 2)                   # the 2nd allocation fails: the result tuple
hold = [(i, -i) for i in range(5000)]   # no 2-tuple left in the free list
_testcapi.set_nomemory(*args)   # (*args: no argument tuple made and freed)
try:
    it = iter(view)
    r = "iter ok"
except MemoryError:
    r = "MemoryError"
_testcapi.remove_mem_hooks()
gc.collect()
print(r)
"""

SETDEFAULT = r"""
import _testcapi
d = {"k%d" % i: i for i in range(5)}     # the next insert resizes
n = len(d)
_testcapi.set_nomemory(0, 1)             # the resize fails
try:
    d.setdefault("new", 1)
    r = "ok"
except MemoryError:
    r = "MemoryError"
except SystemError:
    r = "SystemError"
_testcapi.remove_mem_hooks()
print(r, len(d) - n, "new" in d)
"""

TAKE_OWNERSHIP = r"""
import sys, _testcapi
keep = []
def leaf():
    keep.append(sys._getframe())  # the frame object outlives the frame
    e = ValueError("raised")
    args = (1, 2)   # the traceback entry is made; the caller's frame
    _testcapi.set_nomemory(*args) # object (take_ownership) is not
    raise e
def mid():
    leaf()
try:
    mid()
    r = "no error"
except BaseException as e:
    _testcapi.remove_mem_hooks()
    r = "%s %s" % (type(e).__name__, e)
print(r)
"""

SITES = {
    # name: (script, pristine's outcome, the experiment's)
    "dictiter": (DICTITER, (-signal.SIGSEGV, ""), (0, "MemoryError")),
    "setdefault": (SETDEFAULT, (0, "SystemError 1 False"),
                   (0, "MemoryError 0 False")),
    "take_ownership": (TAKE_OWNERSHIP,
                       (0, "SystemError error return without exception "
                           "set"),
                       (0, "ValueError raised")),
}


@pytest.mark.parametrize("site", sorted(SITES))
def test_upstream_site_pristine_control(site):
    """The same failure injected on pristine 3.13.5 (the control) and on
    the experiment (outside do: the fix is compiled in, not a secret-mode
    branch): dictiter_new drops an untracked iterator (pristine: SIGSEGV),
    setdefault counts an entry it did not insert and returns a result
    with an exception set (SystemError, len one too many), take_ownership
    clears the exception being raised ("error return without exception
    set"). The experiment: MemoryError, the dict unchanged, the ValueError
    kept."""
    code, want_pristine, want_here = SITES[site]
    rc, out, err = run(code, python=interpreter("pristine"))
    assert (rc, out.strip()) == want_pristine, (rc, out, err[-1500:])
    rc, out, err = run(code)
    assert (rc, out.strip()) == want_here, (rc, out, err[-1500:])


def test_dictiter_in_do():
    """The same site in do(), by the secret heap's own injection: the
    iterator is allocated, its tuple fails. On main: SIGSEGV. Control:
    keys() iterators (no tuple) are made under the same injection."""
    rc, out, err = run(r"""
import gc, secret, _testsecret as T
def f(kind):
    d = {1: 2}
    view = d.items() if kind == "items" else d.keys()
    T.fail_secret_allocations(1)        # the iterator, not its tuple
    try:
        it = iter(view)
        r = "ok"
    except MemoryError:
        r = "MemoryError"
    T.fail_secret_allocations(-1)
    gc.collect()
    return r
print(secret.do(f, "items"), secret.do(f, "keys"))
""")
    assert rc == 0, err[-2000:]
    assert out.split() == ["MemoryError", "ok"], out


def test_setdefault_in_do():
    """dict.setdefault() in do() whose insert cannot grow the table
    raises MemoryError and leaves the dict as it was. On main it went on:
    the dict counted an entry it did not have. Control: the same dict,
    the insert not failed, grows by one."""
    rc, out, err = run(r"""
import gc, secret, _testsecret as T
def f(fail):
    d = {"k%d" % i: i for i in range(5)}     # the next insert resizes
    n = len(d)
    key = "new"
    if fail:
        T.fail_secret_allocations(0)
    try:
        d.setdefault(key, 1)
        r = "ok"
    except MemoryError:
        r = "MemoryError"
    T.fail_secret_allocations(-1)
    gc.collect()
    return r, len(d) - n, len(list(d.items())) - n, key in d
print(secret.do(f, True), secret.do(f, False))
""")
    assert rc == 0, err[-2000:]
    assert out.strip() == \
        "('MemoryError', 0, 0, False) ('ok', 1, 1, True)", out


def test_frame_clear_keeps_the_exception_in_do():
    """Every secret allocation fails, the reserve's too, while frames with
    frame objects unwind: the exception that leaves do() is a MemoryError.
    On main: take_ownership() cleared it when it could not make the
    caller's frame object, and do() raised SystemError ("returned NULL
    without setting an exception"). With the reserve available, the
    same."""
    rc, out, err = run(r"""
import sys, secret, _testsecret as T
def leaf(reserve):
    f = sys._getframe()              # a frame object outlives the frame
    T.fail_secret_allocations(0, -1, reserve)
    return [bytes(100) for _ in range(10)], f
def mid(reserve):
    x = [1, 2, 3]
    return leaf(reserve)
def top(reserve):
    try:
        return mid(reserve)
    finally:
        T.fail_secret_allocations(-1)
for reserve in (True, False):
    try:
        secret.do(top, reserve)
        print("no error")
    except MemoryError as e:
        print("MemoryError", "secret heap" in str(e))
    except BaseException as e:
        print(type(e).__name__, str(e)[:80])
""")
    assert rc == 0, err[-2000:]
    assert out.splitlines() == ["MemoryError True", "MemoryError True"], out


def test_float_parse_keeps_the_memory_error():
    """float() of a number whose parsing (dtoa's big integers, never
    pooled in secret mode) cannot allocate raises that MemoryError, at
    every allocation point of the parse (11 for these 25 digits). On the
    branch before the fix, 9 of the 10 points of a 17-digit number raised
    ValueError("could not convert string to float: '...'"), the number (a
    secret) in its message (found by the sweep in json.loads). Controls: without injection the number parses;
    a text that is not a number still raises ValueError."""
    rc, out, err = run(r"""
import collections, os, secret, _testsecret as T
# 25 random digits: more than a double's 17, so dtoa's big integers work
text = "0.%d" % (10 ** 24 + int.from_bytes(os.urandom(11), "little")
                % (9 * 10 ** 24))
def count():
    before = secret.heap_info()["allocations"]
    secret.do(float, text)
    return secret.heap_info()["allocations"] - before
def parse(k, s):
    T.fail_secret_allocations(k, 1)
    try:
        float(s)
        r = "ok"
    except MemoryError:
        r = "MemoryError"
    except ValueError as e:
        r = "ValueError"
    T.fail_secret_allocations(-1)
    return r
got = collections.Counter()
n = count()
for k in range(n):
    got[secret.do(parse, k, text)] += 1
print(n, dict(got), secret.do(parse, -1, text),
      secret.do(parse, -1, "x" + text))
""")
    assert rc == 0, err[-2000:]
    n, rest = out.split(" ", 1)
    assert int(n) >= 3, out
    assert rest.strip() == "{'MemoryError': %s} ok ValueError" % n, out


# --- the reserve (F1) -------------------------------------------------------

DRAIN = r"""
import json, sys, secret, _testsecret as T
mode = MODE
def fill():
    hog = []
    n = 1 << 20
    while n >= 16:
        try:
            hog.append(bytes(n))
        except MemoryError:
            n //= 2                    # go on allocating after it
    return hog
def f():
    if mode == "granted":
        T.grant_reserve(True)          # main's rule, the control
    hog = fill()
    while True:                        # until an allocation fails for good
        hog.append([len(hog)])
try:
    secret.do(f)
    got = "no error"
except BaseException as e:
    got = "%s %s" % (type(e).__name__, "secret heap" in str(e))
T.grant_reserve(False)
i = secret.heap_info()
print(json.dumps([got, i["peak_committed"] - i["size"]]))
"""


def test_reserve_not_drained():
    """A thread that catches the heap's MemoryError and goes on allocating
    does not eat the reserve: its allocations fail at the heap's size
    (peak committed at most 256 KiB over it: the MemoryErrors and their
    unwinding), and when one fails for good do() raises the heap's
    MemoryError. On main every allocation after the first MemoryError
    could use the reserve until the next do(): the same loop committed
    1 MiB over the size and do() raised SystemError (the exception lost
    with no memory left for its unwinding). Control: the same loop with
    main's rule (_testsecret.grant_reserve): over by about 1 MiB."""
    rc, out, err = run(DRAIN.replace("MODE", "'drain'"),
                       env={"PYTHONSECRETHEAPSIZE": "8M"})
    assert rc == 0, err[-2000:]
    got, over = json.loads(out)
    assert got == "MemoryError True", got
    assert over <= 256 << 10, over
    rc, out, err = run(DRAIN.replace("MODE", "'granted'"),
                       env={"PYTHONSECRETHEAPSIZE": "8M"})
    assert rc == 0, err[-2000:]
    got, over = json.loads(out)
    assert over > 768 << 10, over                   # the control drained it


RERAISE = r"""
import gc, json, secret, _testsecret as T
T.set_unwind_grants(GRANTS)
gc.disable()    # the traceback's 20,000 entries would start collections
def f():
    hog = []
    err = None
    raises = iter([None] * 20000)   # made now: the loop below allocates
    for n in [1 << 20, 1 << 16, 4096, 256, 16]:
        while True:
            try:
                hog.append(bytes(n))
            except MemoryError as e:
                err = e
                break
    for _ in raises:                # raise the heap's error again and again
        try:
            raise err
        except MemoryError:
            pass
    while True:                     # until an allocation fails for good
        hog.append([len(hog)])
try:
    secret.do(f)
    got = "no error"
except BaseException as e:
    got = "%s %s" % (type(e).__name__, "secret heap" in str(e))
i = secret.heap_info()
print(json.dumps([got, i["peak_committed"] - i["size"]]))
"""


def test_reraised_error_does_not_drain_the_reserve():
    """Raising the heap's MemoryError again and again (caught each time)
    grows its traceback by one entry a raise; only the first 2,000 come
    from the reserve, so 20,000 raises leave the reserve for the next
    MemoryError, which leaves do() (peak committed at most 512 KiB over
    the size). Control: with no such bound (_testsecret.set_unwind_grants)
    the raises use the whole reserve."""
    rc, out, err = run(RERAISE.replace("GRANTS", "-1"),
                       env={"PYTHONSECRETHEAPSIZE": "8M"})
    assert rc == 0, err[-2000:]
    got, over = json.loads(out)
    assert got == "MemoryError True", got
    assert over <= 512 << 10, over
    rc, out, err = run(RERAISE.replace("GRANTS", str(10 ** 9)),
                       env={"PYTHONSECRETHEAPSIZE": "8M"})
    assert rc == 0, err[-2000:]
    got, over = json.loads(out)
    assert over > 960 << 10, over                   # the control drained it


def test_traceback_of_the_heap_error_uses_the_reserve():
    """Every secret allocation fails (the reserve aside) and the heap's
    MemoryError unwinds through 30 frames: its traceback has all of them
    (each entry and frame object from the reserve) and do() raises it.
    Control: a MemoryError raised by code (not the heap's) gets no
    reserve: the frame object of its first traceback entry cannot be made,
    and the heap's MemoryError that says so replaces it (as upstream
    replaces an exception whose traceback cannot be made), with the 30
    frames above."""
    rc, out, err = run(r"""
import traceback, secret, _testsecret as T
def deep(n, own):
    if n == 0:
        exc = MemoryError("mine")
        T.fail_secret_allocations(0)
        if own:
            raise exc
        return bytes(1000)
    return deep(n - 1, own)
def f(own):
    try:
        deep(30, own)
    except MemoryError as e:
        T.fail_secret_allocations(-1)
        tb = traceback.extract_tb(e.__traceback__)
        return (str(e)[:11], str(e.__context__)[:4],
                sum(1 for t in tb if t.name == "deep"))
    finally:
        T.fail_secret_allocations(-1)
print(secret.do(f, False), secret.do(f, True))
""")
    assert rc == 0, err[-2000:]
    assert out.strip() == ("('secret heap', 'None', 31) "
                           "('secret heap', 'None', 30)"), out


# --- the heap's message outside do (F7) ------------------------------------

def test_heap_message_outside_do():
    """A secret list grown outside do() while the heap is full: the
    MemoryError says the secret heap is full. On main a bare MemoryError()
    (the message only in secret mode). Control: an ordinary allocation
    that fails outside do() gives the bare MemoryError, as pristine's."""
    rc, out, err = run(r"""
import secret
def fill():
    hog = []
    for n in [1 << 20, 1 << 16, 4096, 256, 32]:
        while True:
            try:
                hog.append(bytes(n))
            except MemoryError:
                break
    return hog
lst = secret.do(lambda: [0] * 1000)
hog = secret.do(fill)
try:
    lst.extend(range(10 ** 6))
    print("ok")
except MemoryError as e:
    print(repr(str(e)[:21]))
try:
    bytearray(1 << 62)
except MemoryError as e:
    print(repr(str(e)))
""", env={"PYTHONSECRETHEAPSIZE": "8M"})
    assert rc == 0, err[-2000:]
    assert out.splitlines() == ["'secret heap exhausted'", "''"], out


def test_a_handled_heap_error_is_not_blamed_later():
    """A secret heap MemoryError that Python code caught, then a
    MemoryError with another cause (a size overflow) in the same do(),
    nothing allocated in between: the second has no heap message, whether
    it is raised after the handler or inside it. Control: the heap's own
    errors had the heap's message."""
    code = r"""
import secret, _testsecret as T
L, BIG = [0, 0], 2 ** 62
def caught_then_overflow(alloc):
    first = ""
    try:
        alloc()
    except MemoryError as e:
        first = str(e)
    try:
        L * BIG
    except MemoryError as e:
        return first, str(e)
def overflow_in_handler(alloc):
    try:
        alloc()
    except MemoryError as e:
        try:
            L * BIG
        except MemoryError as e2:
            return str(e), str(e2)
out = []
for alloc in (lambda: T.alloc_untouched("raw", 64 << 20),
              lambda: bytearray(64 << 20)):
    out.append(secret.do(caught_then_overflow, alloc))
    out.append(secret.do(overflow_in_handler, alloc))
print(repr(out))
"""
    rc, out, err = run(code, env={"PYTHONSECRETHEAPSIZE": "8M"})
    assert rc == 0, err[-3000:]
    for heap_msg, later in eval(out):
        assert "secret heap" in heap_msg, out          # control
        assert "secret heap" not in later, out


def test_generated_handlers_forget_the_heap_failure():
    """Generated cases (a workload, the allocation of it that fails, the
    shape that handles the error: except MemoryError, except Exception, a
    finally inside it, contextlib.suppress, a generator that catches what
    is thrown into it, nested do()): right after the heap's MemoryError is
    handled, or while it is, nothing allocated in between (the handler
    stores the error in a list made before), a MemoryError with another
    cause (a size overflow) never has the heap's message. The failure is armed for the
    workload only (a failure in the overflow's own traceback would make
    that a heap error, rightly). Control: the handled errors had the
    heap's message."""
    code = r"""
import contextlib, random, secret, sys, _testsecret as T
rng = random.Random(%d)
L, BIG = [0, 0], 2 ** 62
N = [0]
def overflow():
    T.fail_secret_allocations(-1)
    try:
        L * BIG
    except MemoryError as e:
        return str(e)
def work(k):
    T.fail_secret_allocations(N[0], 1, False)
    d = {"k%%d" %% i: [i] * (k %% 5 + 1) for i in range(k %% 9 + 1)}
    return type("C%%d" %% k, (), d)
def except_memory(k, out):
    try:
        work(k)
    except MemoryError as e:
        out[0] = e
    return overflow()
def except_exception(k, out):
    try:
        work(k)
    except Exception as e:
        out[0] = e
        return overflow()
    return overflow()
def finally_inside(k, out):
    try:
        try:
            work(k)
        finally:
            pass
    except MemoryError as e:
        out[0] = e
    return overflow()
def suppressed(k, out):
    with contextlib.suppress(MemoryError):
        try:
            work(k)
        except MemoryError as e:
            out[0] = e
            raise
    return overflow()
def generator(k, out):
    def g():
        while True:
            try:
                yield
            except MemoryError as e:
                out[0] = e
    it = g()
    next(it)
    try:
        work(k)
    except MemoryError as e:
        it.throw(e)
    return overflow()
def nested(k, out):
    try:
        secret.do(work, k)
    except MemoryError as e:
        out[0] = e
    return overflow()
SHAPES = [except_memory, except_exception, finally_inside, suppressed,
          generator, nested]
bad, heap_msgs, caught = [], 0, 0
for case in range(1200):
    shape, k = rng.choice(SHAPES), rng.randrange(1000)
    N[0] = rng.randrange(40)
    out = [None]        # made here: storing into it allocates nothing
    try:
        later = secret.do(shape, k, out)
    except MemoryError:
        continue        # the failure hit the shape's own code
    finally:
        T.fail_secret_allocations(-1)
    caught += out[0] is not None
    heap_msgs += out[0] is not None and "secret heap" in str(out[0])
    if later is None or "secret heap" in later:
        bad.append((shape.__name__, k, N[0], out[0] is not None, later))
print(repr((bad[:5], len(bad), caught, heap_msgs)))
""" % int.from_bytes(os.urandom(4), "little")
    rc, out, err = run(code)
    assert rc == 0, err[-3000:]
    bad, nbad, caught, heap_msgs = eval(out)
    assert nbad == 0, bad
    assert caught > 200 and heap_msgs == caught, out       # control
