"""Secret mode follows greenlet switches (spec §2.1).

A greenlet that enters secret.do() is in secret mode; a switch to another
greenlet leaves it, erasing what it left below (registers, C stack, signal
stack), and a switch back re-enters it. A greenlet made in secret mode runs
in it (as a thread or task started there). Each check has a control that
finds what the protection removes: the same program in a process where
secret.do() cannot see greenlet (its C module is taken out of sys.modules
before the first do(), so no tracer is put in place: the old behaviour).

Secrets and stack patterns are random (os.urandom), never literals.
"""

import gc
import os
import subprocess
import sys
import textwrap

import pytest

import secret
from conftest import ASAN, GREENLET_UNDER_ASAN

if ASAN:
    pytest.skip(GREENLET_UNDER_ASAN, allow_module_level=True)

greenlet = pytest.importorskip("greenlet")
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


def run_child(code, *, blind=False, timeout=300):
    """Run code in a fresh interpreter; blind: secret.do() never sees the
    greenlet module (the control). Returns the last line of stdout."""
    if blind:
        # taken out before the secret module is loaded: it neither follows
        # greenlet's switches nor wraps greenlet's switch()
        prelude = ("import greenlet, sys\n"
                   "del sys.modules['greenlet._greenlet']\n"
                   "import _secret, secret\n")
    else:
        prelude = "import _secret, greenlet, secret, sys\n"
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, MALLOC_PERTURB_="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


# --- the mode follows the greenlet ------------------------------------------

BASIC = """
    seen = {}
    main_g = greenlet.getcurrent()

    def other():
        seen["other"] = (secret.enabled(), _secret._is_secret(bytearray(64)))
        main_g.switch()
        seen["other2"] = (secret.enabled(), _secret._is_secret(bytearray(64)))

    g2 = greenlet.greenlet(other)

    def inside():
        seen["in0"] = secret.enabled()
        g2.switch()
        seen["in1"] = (secret.enabled(), _secret._is_secret(bytearray(64)))

    secret.do(inside)
    g2.switch()
    seen["after"] = secret.enabled()
    print(sorted(seen.items()))
"""


def test_a_switch_leaves_secret_mode_and_a_switch_back_enters_it():
    got = dict(eval(run_child(BASIC)))
    assert got == {"in0": True, "other": (False, False), "in1": (True, True),
                   "other2": (False, False), "after": False}
    # control: without the tracer the other greenlet runs in secret mode
    ctl = dict(eval(run_child(BASIC, blind=True)))
    assert ctl["other"] == (True, True)


def test_in_process_switches_nesting_and_exceptions():
    main_g = greenlet.getcurrent()
    seen = []

    def worker(name, depth):
        def level(d):
            seen.append((name, d, secret.enabled()))
            main_g.switch()
            seen.append((name, d, secret.enabled()))
            if d < depth:
                secret.do(level, d + 1)
            seen.append((name, d, secret.enabled()))
            main_g.switch()
            if name == "raiser" and d == depth:
                raise KeyError(name)
        try:
            secret.do(level, 1)
        except KeyError:
            seen.append((name, 0, secret.enabled()))
        main_g.switch()

    plain = greenlet.greenlet(lambda: [seen.append(("plain", 0,
                                                    secret.enabled())),
                                       main_g.switch(),
                                       seen.append(("plain", 0,
                                                    secret.enabled()))])
    gs = [greenlet.greenlet(worker) for _ in range(3)]
    gs[0].switch("a", 1)
    gs[1].switch("b", 3)
    gs[2].switch("raiser", 2)
    plain.switch()
    for _ in range(8):
        for g in gs + [plain]:
            if not g.dead:
                g.switch()
                assert not secret.enabled()
    assert all(g.dead for g in gs + [plain])
    for name, d, mode in seen:
        assert mode == (d > 0), (name, d, mode)


def test_a_greenlet_made_in_secret_mode_runs_in_it():
    main_g = greenlet.getcurrent()
    log = []

    def body():
        log.append((secret.enabled(), is_secret(bytearray(32))))
        main_g.switch()
        log.append((secret.enabled(), is_secret(bytearray(32))))

    g = secret.do(lambda: greenlet.greenlet(body))
    assert is_secret(g)
    g.switch()
    assert not secret.enabled() and not is_secret(bytearray(32))
    g.switch()
    assert log == [(True, True), (True, True)]
    # control: made outside
    log.clear()
    g = greenlet.greenlet(body)
    g.switch()
    g.switch()
    assert log == [(False, False), (False, False)]
    # the main greenlet of a thread whose first greenlet use is in do()
    # is never secret
    r = []

    def in_thread():
        def f():
            return greenlet.getcurrent()
        m = secret.do(f)
        r.append((secret.enabled(), m.parent))
    import threading
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert r == [(False, None)]


def test_a_parked_greenlet_killed_by_the_collector_leaves_do():
    main_g = greenlet.getcurrent()
    log = []

    def parked():
        def f():
            try:
                main_g.switch()
            finally:
                log.append(("finally", secret.enabled()))
        secret.do(f)
        log.append(("after do", secret.enabled()))

    g = greenlet.greenlet(parked)
    g.switch()
    assert not secret.enabled()
    del g
    gc.collect()
    assert log == [("finally", True)]
    assert not secret.enabled()


def test_throw_into_a_greenlet_parked_in_do():
    main_g = greenlet.getcurrent()
    out = []
    key = os.urandom(16).hex()

    def parked():
        def func(k):
            local_key = k + "!"   # noqa: F841  (a frame local of func)
            main_g.switch()
        try:
            secret.do(func, key)
        except ValueError as e:
            out.append((secret.enabled(), e))

    g = greenlet.greenlet(parked)
    g.switch()
    g.throw(ValueError("stop"))
    (mode, exc), = out
    assert mode is False
    names = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "func" not in names


def test_threads_started_in_do_stay_secret_in_every_greenlet():
    import threading
    res = []

    def thread_body():
        main_g = greenlet.getcurrent()
        g = greenlet.greenlet(lambda: [res.append(secret.enabled()),
                                       main_g.switch(),
                                       res.append(secret.enabled())])
        g.switch()
        res.append(secret.enabled())
        secret.do(lambda: g.switch())
        res.append(secret.enabled())

    def start():
        t = threading.Thread(target=thread_body)
        t.start()
        return t
    secret.do(start).join()
    assert res == [True, True, True, True]


# --- each switch out of secret mode erases the C stack ---------------------

@pytest.mark.parametrize("depth", [512, 4096, 32 * 1024, 200 * 1024])
def test_a_switch_out_erases_the_stack_below(depth):
    main_g = greenlet.getcurrent()
    p = new_pattern()

    def writer():
        for _ in range(3):
            T.write_stack_pattern(p, depth)
            main_g.switch()

    for protected in (True, False):
        g = greenlet.greenlet(
            (lambda: secret.do(writer)) if protected else writer)
        for _ in range(3):
            hits = T.call_and_scan(p, g.switch)[1]
            if protected:
                assert hits == 0, depth
            else:
                assert hits > 0, depth
        g.switch()
        assert g.dead


def test_a_switch_out_erases_below_an_untouched_gap():
    # The pattern at the bottom of a frame of untouched bytes, the switch
    # made from below it: no canary in the gap tells how deep it went.
    main_g = greenlet.getcurrent()
    for gap in (8 * 1024, 64 * 1024):
        p = new_pattern()

        def writer():
            T.write_gapped(p, gap, 2, main_g.switch)

        for protected in (True, False):
            g = greenlet.greenlet(
                (lambda: secret.do(writer)) if protected else writer)
            hits = T.call_and_scan(p, g.switch)[1]
            g.switch()
            assert g.dead
            # the pattern lies in writer's live frame while it is parked
            # (above the switch, copied by greenlet or left in place): what
            # counts is the dead stack below the running greenlet
            if protected:
                assert hits == 0, gap
            else:
                assert hits > 0, gap


# --- a trace function that hides switches ----------------------------------

HIDDEN = """
    main_g = greenlet.getcurrent()

    def b_body():
        try:
            secret.do(lambda: 1)
        except RuntimeError as e:
            print("refused", "greenlet switch was not seen" in str(e))
            raise SystemExit(0)
        print("entered")

    b = greenlet.greenlet(b_body)

    def inside():
        greenlet.settrace(lambda ev, args: None)   # does not chain
        b.switch()

    secret.do(inside)
"""


def test_a_tracer_that_does_not_chain_is_refused_not_ignored():
    assert run_child(HIDDEN) == "refused True"


def test_a_tracer_put_later_that_chains_keeps_it_working():
    main_g = greenlet.getcurrent()
    secret.do(lambda: None)          # ours is in place on this thread
    events = []
    prev = greenlet.gettrace()

    def chained(ev, args):
        events.append(ev)
        if prev is not None:
            prev(ev, args)
    greenlet.settrace(chained)
    try:
        seen = []
        g2 = greenlet.greenlet(lambda: [seen.append(secret.enabled()),
                                        main_g.switch()])

        def inside():
            g2.switch()
            seen.append(secret.enabled())
        secret.do(inside)
        g2.switch()
        assert seen == [False, True]
        assert events
    finally:
        greenlet.settrace(prev)


# --- generated interleavings ------------------------------------------------

GENERATED = """
    import os, random, gc, _testsecret as T
    seed = int(os.environ.get("GL_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    main_g = greenlet.getcurrent()
    secret.protections()
    info = secret.heap_info()
    base, size = info["base"], info["reserved"]

    def sec(o):
        return base <= id(o) < base + size

    bad_mode = bad_alloc = stack_left = checks = stack_checks = 0
    exc_frames = 0

    class Actor:
        def __init__(self, made_secret):
            self.level = 0
            self.made_secret = made_secret
            self.pattern = None

    actors = {}

    def check(a):
        global bad_mode, bad_alloc, checks
        want = a.level > 0 or a.made_secret
        # a greenlet that runs below a parked one's frames left wholly in
        # place allocates secretly without being in secret mode
        t = greenlet.gettrace()
        bumped = bool(t and t._stats()["bumped"]) if hasattr(t, "_stats") \
            else False
        checks += 1
        if secret.enabled() != want:
            bad_mode += 1
        if sec(bytearray(48)) != (want or bumped):
            bad_alloc += 1

    def yield_point(a):
        if a.level > 0 and rng.random() < 0.5:
            a.pattern = os.urandom(8).replace(b"\\0", b"\\1")
            T.write_stack_pattern(a.pattern, rng.choice((256, 2048, 16384)))
        else:
            a.pattern = None
        check(a)
        main_g.switch()
        check(a)

    def body(a, budget):
        while budget[0] > 0:
            budget[0] -= 1
            r = rng.random()
            if r < 0.45:
                yield_point(a)
            elif r < 0.7 and a.level < 3:
                def inner():
                    a.level += 1
                    try:
                        body(a, budget)
                        if rng.random() < 0.15:
                            raise ValueError("x")
                    finally:
                        a.level -= 1
                try:
                    secret.do(inner)
                except ValueError as e:
                    global exc_frames
                    tb = e.__traceback__
                    while tb is not None:
                        if tb.tb_frame.f_code.co_name == "inner":
                            exc_frames += 1
                        tb = tb.tb_next
                check(a)
            elif r < 0.8:
                spawn(a.level > 0 or a.made_secret)
            elif a.level > 0:
                return

    def spawn(in_secret):
        a = Actor(in_secret)
        g = greenlet.greenlet(lambda: body(a, [rng.randrange(1, 30)]))
        actors[g] = a

    for _ in range(4):
        spawn(False)
    rounds = 0
    while actors and rounds < 400:
        rounds += 1
        g = rng.choice(list(actors))
        a = actors[g]
        if g.dead:
            del actors[g]
            continue
        if rng.random() < 0.03 and a.level > 0 and not g.dead \\
                and g.gr_frame is not None:
            del actors[g]           # parked inside do: the collector kills it
            del g, a
            gc.collect()
            continue
        p = a.pattern
        res, hits = T.call_and_scan(p or b"\\1" * 8, g.switch)
        if p is not None:
            stack_checks += 1
            stack_left += hits > 0
        if secret.enabled():
            bad_mode += 1
        if g.dead:
            del actors[g]
    print((seed, checks, bad_mode, bad_alloc, stack_checks, stack_left,
           exc_frames))
"""


@pytest.mark.parametrize("batch", range(4))
def test_generated_interleavings(batch):
    """Random greenlets entering do() at random depths, switching at random
    points, raising, spawning greenlets inside and outside secret mode,
    killed while parked: at every step each greenlet's mode, its
    allocations and the stack it left. 4 batches x 25 programs."""
    total_checks = total_stack = 0
    ctl_mode = ctl_stack = 0
    for i in range(25):
        seed = 1 + batch * 1000 + i
        env_code = f"import os; os.environ['GL_SEED'] = '{seed}'\n"
        out = eval(run_child(env_code + textwrap.dedent(GENERATED)))
        _, checks, bad_mode, bad_alloc, stack_checks, left, exc = out
        assert (bad_mode, bad_alloc, left, exc) == (0, 0, 0, 0), out
        total_checks += checks
        total_stack += stack_checks
        if i < 5:
            ctl = eval(run_child(env_code + textwrap.dedent(GENERATED),
                                 blind=True))
            ctl_mode += ctl[2]
            ctl_stack += ctl[5]
    assert total_checks > 500 and total_stack > 20
    # control: the same programs without the tracer go wrong
    assert ctl_mode > 0 and ctl_stack > 0


# --- a parked greenlet's stack --------------------------------------------

PARKED_COPY = """
    import gc, os, _testsecret as T
    main_g = greenlet.getcurrent()

    def new_pattern():
        p = os.urandom(8)
        while b"\\0" in p:
            p = os.urandom(8)
        return p

    # the needle itself is a secret block: the scan skips the secret heap
    p = secret.do(new_pattern)
    info = secret.heap_info()
    base, size = info["base"], info["reserved"]

    def ordinary_copies():
        n = 0
        for line in open("/proc/self/maps"):
            addr, rest = line.split(" ", 1)
            lo, hi = (int(x, 16) for x in addr.split("-"))
            if "rw" not in rest.split()[0] or "[stack]" in line \\
                    or "[vvar" in line or base <= lo < base + size:
                continue
            n += T.count_in_range(lo, hi - lo, p)
        return n

    out = []
    for gap in (1024, 4096, 32768):
        B = greenlet.greenlet(lambda: main_g.switch())   # made outside do

        def func():
            # p lives in func's C frame while B runs below it, then B
            # switches to main: greenlet copies both stacks to the heap
            T.write_gapped(p, gap, 2, B.switch)

        def in_A():
            secret.do(func) if PROTECTED else func()

        A = greenlet.greenlet(in_A)
        A.switch()
        out.append(ordinary_copies())
        B.switch()
        if not A.dead:
            A.switch()
        gc.collect()
        out.append(ordinary_copies())
    print(out)
"""


# A helper made and started outside do(), deep below the greenlet that
# later enters do() and switches to it: nothing of the parked frames is
# copied at that switch (the helper lies wholly below them); the helper,
# not in secret mode, switches to main later and greenlet copies them in
# its mode. The tracer makes a greenlet that runs below such frames
# allocate secretly.
BELOW_PARKED = """
    import gc, os, _testsecret as T
    main_g = greenlet.getcurrent()

    def new_pattern():
        p = os.urandom(8)
        while b"\\0" in p:
            p = os.urandom(8)
        return p

    p = secret.do(new_pattern)
    info = secret.heap_info()
    base, size = info["base"], info["reserved"]

    def ordinary_copies():
        n = 0
        for line in open("/proc/self/maps"):
            addr, rest = line.split(" ", 1)
            lo, hi = (int(x, 16) for x in addr.split("-"))
            if "rw" not in rest.split()[0] or "[stack]" in line \\
                    or "[vvar" in line or base <= lo < base + size:
                continue
            n += T.count_in_range(lo, hi - lo, p)
        return n

    out = []
    for gap in (1024, 4096, 32768):
        def t_run():
            G.switch()
            main_g.switch()
        Tg = greenlet.greenlet(t_run)

        def func():
            T.write_gapped(p, gap, 2, Tg.switch)

        def g_run():
            T.call_below_gap(gap + 64 * 1024, Tg.switch)
            secret.do(func) if MODE == "do" else func()

        # "made": G is made in do() (in secret mode for life) and calls
        # func without a do() of its own
        G = secret.do(lambda: greenlet.greenlet(g_run)) if MODE == "made" \
            else greenlet.greenlet(g_run)
        G.switch()
        out.append(ordinary_copies())
        Tg.switch()
        while not G.dead:
            G.switch()
        gc.collect()
        out.append(ordinary_copies())
    print(out)
"""


@pytest.mark.parametrize("mode", ["do", "made"])
def test_a_greenlet_below_parked_frames_copies_them_secretly(mode):
    prot = eval(run_child(f"MODE = {mode!r}\n"
                          + textwrap.dedent(BELOW_PARKED)))
    ctl = eval(run_child("MODE = 'control'\n"
                         + textwrap.dedent(BELOW_PARKED)))
    assert prot == [0] * 6
    assert all(ctl[i] > 0 for i in (0, 2, 4)), ctl


# --- the tracer is put back, and a lost one is said -------------------------

GONE = """
    main_g = greenlet.getcurrent()
    seen = {}

    def other():
        seen["other"] = (secret.enabled(), _secret._is_secret(bytearray(8)))
        main_g.switch()

    secret.do(lambda: None)        # the tracer is in place
    if HOW == "none":
        greenlet.settrace(None)
    elif HOW == "raise":
        ARM = [False]

        def boom(ev, args):
            if ARM[0]:
                raise KeyError("tracer")
        greenlet.settrace(boom)    # in front, calls nothing
        ARM[0] = True
        try:
            greenlet.greenlet(lambda: None).switch()
        except KeyError:
            pass                   # greenlet dropped the trace function
        ARM[0] = False
    g = greenlet.greenlet(other)
    secret.do(lambda: g.switch())
    print(seen["other"], greenlet.gettrace() is not None)
"""


@pytest.mark.parametrize("how", ["none", "raise"])
def test_a_removed_tracer_is_put_back_at_the_next_do(how):
    assert run_child(f"HOW = {how!r}\n" + textwrap.dedent(GONE)) \
        == "(False, False) True"
    # control: not followed, the other greenlet runs in secret mode
    assert run_child(f"HOW = {how!r}\n" + textwrap.dedent(GONE),
                     blind=True).startswith("(True, True)")


def test_a_tracer_removed_inside_do_is_said_at_its_exit():
    code = """
        main_g = greenlet.getcurrent()
        seen = {}
        other = greenlet.greenlet(
            lambda: [seen.setdefault("other", secret.enabled()),
                     main_g.switch()])

        def func():
            greenlet.settrace(None)
            other.switch()
        try:
            secret.do(func)
            print("returned", seen)
        except RuntimeError as e:
            print("raised", "was not seen" in str(e), secret.enabled(),
                  secret.do(lambda: 5))
    """
    assert run_child(code) == "raised True False 5"
    # control: the same switch with the tracer in place returns
    ctl = """
        main_g = greenlet.getcurrent()
        seen = {}
        other = greenlet.greenlet(
            lambda: [seen.setdefault("other", secret.enabled()),
                     main_g.switch()])
        secret.do(other.switch)
        print("returned", seen)
    """
    assert run_child(ctl) == "returned {'other': False}"


def test_main_greenlet_is_known_without_its_parent_attribute():
    # A subclass whose parent property says None is not taken for main.
    class Liar(greenlet.greenlet):
        @property
        def parent(self):
            return None
    main_g = greenlet.getcurrent()
    log = []

    def body():
        log.append((secret.enabled(), is_secret(bytearray(16))))
        main_g.switch()
    g = secret.do(lambda: Liar(body))
    g.switch()
    assert log == [(True, True)]


SUBINTERP = '''
    import _interpreters
    secret.do(lambda: None)        # this interpreter's tracer
    iid = _interpreters.create(_interpreters.new_config("legacy"))
    _interpreters.exec(iid, """if 1:
        import greenlet, secret
        main_g = greenlet.getcurrent()
        g = greenlet.greenlet(lambda: main_g.switch())
        try:
            secret.do(g.switch)
            print("sub: returned")
        except RuntimeError as e:
            print("sub: refused", "another interpreter" in str(e))
        """)
    _interpreters.destroy(iid)
    print("main ok", secret.do(lambda: 7))
'''


def test_greenlets_of_another_interpreter_on_the_thread_are_refused():
    r = subprocess.run([sys.executable, "-c", "import greenlet, secret\n"
                        + textwrap.dedent(SUBINTERP)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["sub:", "refused", "True", "main", "ok",
                                "7"], r.stdout


def test_a_parked_greenlets_stack_copy_is_a_secret_block():
    prot = eval(run_child("PROTECTED = True\n" + textwrap.dedent(PARKED_COPY)))
    ctl = eval(run_child("PROTECTED = False\n"
                         + textwrap.dedent(PARKED_COPY)))
    assert prot == [0] * 6
    # control: the copy greenlet made of the parked frames is found while
    # parked (ordinary memory)
    assert all(ctl[i] > 0 for i in (0, 2, 4)), ctl


# --- a switch to a greenlet deeper on the stack -----------------------------

DEEPER = """
    import os, _testsecret as T
    main_g = greenlet.getcurrent()
    secret.do(lambda: None)
    p = os.urandom(8).replace(b"\\0", b"\\1")
    out = {}

    def t_run():
        try:
            main_g.switch()
        except KeyError:
            pass
        lo, hi, sp = T.stack_info()
        # the thread's stack above this greenlet's frames (16 KiB margin)
        out["hits"] = T.count_in_range(sp + 16384, hi - (sp + 16384), p)
        main_g.switch()
    Tg = greenlet.greenlet(t_run)
    T.call_below_gap(128 * 1024, Tg.switch)       # parks 128 KiB deep

    def func():
        T.write_stack_pattern(p, 64 * 1024)
        SWITCH(Tg)
    secret.do(func) if PROTECTED else func()
    print(out["hits"])
"""


@pytest.mark.parametrize("how", ["method", "unbound", "throw"])
def test_a_switch_to_a_deeper_greenlet_erases_what_lies_between(how):
    # The trace function runs on the deeper greenlet's stack, after the
    # switch: greenlet's switch() and throw() erase first (unbound: the
    # method taken from the type before the first do()).
    switch = {"method": "lambda g: g.switch()",
              "unbound": "greenlet.greenlet.switch",
              "throw": "lambda g: g.throw(KeyError)"}[how]
    code = f"SWITCH = {switch}\n"
    assert int(run_child("PROTECTED = True\n" + code
                         + textwrap.dedent(DEEPER))) == 0
    # control: without do() the pattern is there
    assert int(run_child("PROTECTED = False\n" + code
                         + textwrap.dedent(DEEPER))) > 0


ENDING = """
    import os, _testsecret as T
    main_g = greenlet.getcurrent()
    p = os.urandom(8).replace(b"\\0", b"\\1")
    secret.do(lambda: None)

    def s_run():
        T.write_stack_pattern(p, 48 * 1024)    # in secret mode: made in do
        return "S done"

    box = {}

    def p_run():
        box["S"] = secret.do(lambda: greenlet.greenlet(s_run)) if MADE_IN_DO \\
            else greenlet.greenlet(s_run)
        main_g.switch()
        main_g.switch("P done")

    P = greenlet.greenlet(p_run)
    T.call_below_gap(64 * 1024, P.switch) if DEEP else P.switch()
    res, hits = T.call_and_scan(p, box["S"].switch)
    print(hits)
"""


@pytest.mark.parametrize("deep", [False, True])
def test_a_greenlet_ending_into_its_parent_leaves_nothing(deep):
    # It switches to its parent inside greenlet: the run callable of a
    # greenlet made in secret mode erases when it returns.
    code = f"DEEP = {deep}\nMADE_IN_DO = True\n" + textwrap.dedent(ENDING)
    assert int(run_child(code)) <= 1
    if deep:
        # control: made outside do(), its stack is found above the parent
        code = "DEEP = True\nMADE_IN_DO = False\n" + textwrap.dedent(ENDING)
        assert int(run_child(code)) > 0


def test_the_run_callable_of_a_greenlet_made_in_do_is_the_one_given():
    def body():
        return 7
    g = secret.do(lambda: greenlet.greenlet(body))
    assert g.run.__self__ is body and g.switch() == 7
    h = greenlet.greenlet(body)
    assert h.run is body
