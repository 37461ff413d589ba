"""Secret mode follows greenlet switches under gevent (spec §2.1), with
gevent's monkey-patched sockets.

A greenlet that runs secret.do() and parks in the hub inside it (a socket
read, gevent.sleep, an Event, a Queue) leaves secret mode at each switch
away, erasing what it left below on the C stack, and re-enters it at each
switch back: other greenlets (the hub's callbacks, a ticker, a queue
drainer, clients) never run in secret mode nor get secret blocks, and
never find the protected greenlet's stack pattern below their frames. A
greenlet made in secret mode (gevent.spawn inside do) runs in it, and so
does gevent's hub if the first gevent wait made it inside do.

The programs run in a child interpreter (tests/gevent_programs.py): they
monkey-patch the standard library, which this process must not be. Each
runs twice: protected, and as the control, the same program without do,
which the same checks must catch.

Secrets and stack patterns are random (os.urandom), never literals.
"""

import json
import os
import subprocess
import sys

import pytest

import secret
from conftest import ASAN, GREENLET_UNDER_ASAN

if ASAN:
    pytest.skip(GREENLET_UNDER_ASAN, allow_module_level=True)

pytest.importorskip("gevent")
pytest.importorskip("_testsecret")
pytestmark = pytest.mark.skipif(not secret.supported(),
                                reason="fallback mode: nothing is erased")

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "gevent_programs.py")


def program(*args, env=None):
    """Run tests/gevent_programs.py ARGS in a child of this interpreter;
    return what it printed (JSON)."""
    r = subprocess.run([sys.executable, PROGRAMS] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **(env or {})))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.splitlines()[-1])


def bad(records):
    """Steps in the wrong mode, allocating the wrong kind of memory, or
    (outside secret mode) finding a protected greenlet's stack pattern.
    Expected None: either mode, as long as the allocations agree."""
    return [r for r in records
            if (r[1] if r[0] is None else r[0]) != r[1] or r[1] != r[2]
            or (not r[1] and r[3])]


def mode_caught(records):
    return any(r[0] is not None and (r[0] != r[1] or r[0] != r[2])
               for r in records)


def stack_caught(records):
    return any(r[3] for r in records if not r[1])


# --- a StreamServer whose handler parks inside do ---------------------------

# gevent's monitoring thread puts a greenlet trace function of its own in
# place (one that calls the one it replaced)
MONITOR = {"GEVENT_MONITOR_THREAD_ENABLE": "1",
           "PYTHONWARNINGS": "ignore::UserWarning"}


@pytest.mark.parametrize("env", [None, MONITOR], ids=["plain", "monitor"])
def test_server_handler_parks_on_its_socket_inside_do(env):
    prot = program("server", 8, "protected", env=env)
    assert prot["answers"] == [True] * 8
    assert bad(prot["records"]) == []
    # the handler saw secret mode after every switch back; the others ran
    kinds = {r[4] for r in prot["records"]}
    assert {"recv1", "recv", "sleep", "sleep0", "send", "ticker",
            "client", "on_client"} <= kinds, kinds
    assert sum(r[0] for r in prot["records"]) >= 8 * 7
    # out of do, the server's greenlet is out of secret mode
    assert [m for _, m in prot["handlers"]] == [False] * 8

    ctl = program("server", 8, "control", env=env)
    assert ctl["answers"] == [True] * 8
    assert mode_caught(ctl["records"])
    assert stack_caught(ctl["records"])


# --- a greenlet parked inside do, ended from outside ------------------------

@pytest.mark.parametrize("how", ["timeout", "kill", "throw"])
def test_greenlet_parked_inside_do_ended_from_outside(how):
    exc = {"timeout": "Timeout", "kill": "GreenletExit",
           "throw": "ValueError"}[how]
    prot = program("parked", how, "protected")
    assert bad(prot["records"]) == []
    # its finally block ran inside do, in secret mode, with its key secret
    assert ("finally", True) in [(r[4], r[1]) for r in prot["records"]]
    assert prot["key_secret"] is True
    # the exception left do without the body's frames, out of secret mode
    assert prot["exc"] == exc
    assert "body" not in prot["frames"]
    assert prot["mode_after"] is False
    assert "other" in {r[4] for r in prot["records"]}

    ctl = program("parked", how, "control")
    assert ctl["exc"] == exc
    assert "body" in ctl["frames"]
    assert ctl["key_secret"] is False
    assert mode_caught(ctl["records"]) and stack_caught(ctl["records"])


# --- a switch out erases the stack below -------------------------------------

@pytest.mark.parametrize("depth", [512, 4096, 32 * 1024])
def test_a_switch_to_the_hub_erases_the_stack_below(depth):
    assert program("switch_erases", depth, "protected")["hits"] == [0] * 3
    ctl = program("switch_erases", depth, "control")["hits"]
    assert all(h > 0 for h in ctl), ctl


# --- greenlets made inside do ------------------------------------------------

def test_a_greenlet_spawned_inside_do_runs_in_secret_mode():
    """A greenlet spawned in func (a secret block) runs in secret mode at
    each of its steps, as a thread or a task started there; a greenlet
    made outside runs outside it meanwhile and finds nothing of either's
    stack."""
    prot = program("spawn_in_do", "protected")
    assert prot["made_secret"] is True
    assert bad(prot["records"]) == []
    kinds = [r[4] for r in prot["records"]]
    assert kinds.count("leaf") == 3 and kinds.count("outsider") == 4
    ctl = program("spawn_in_do", "control")
    assert ctl["made_secret"] is False
    assert mode_caught(ctl["records"]) and stack_caught(ctl["records"])


# --- gevent's hub made inside do ---------------------------------------------

def test_make_the_hub_before_the_first_do():
    """gevent makes its hub at the first call that waits. Made inside do, it
    is a greenlet made in secret mode: it and every callback it runs stay
    in secret mode for good (a documented limit). Made at start-up
    (gevent.get_hub()), its callbacks run outside secret mode while a
    greenlet waits inside do, and the first wait may be inside do."""
    prot = program("first_use_in_do", "protected", "1")
    assert prot["hub_secret"] is False
    assert bad(prot["records"]) == []
    kinds = {r[4] for r in prot["records"]}
    assert {"first", "other", "hub", "main"} <= kinds, kinds
    ctl = program("first_use_in_do", "control", "1")
    assert mode_caught(ctl["records"]) and stack_caught(ctl["records"])
    # the limit: a hub made in do runs its callbacks in secret mode
    late = program("first_use_in_do", "protected", "0")
    assert late["hub_secret"] is True
    hub = [r for r in late["records"] if r[4] == "hub"]
    assert hub and all(r[1] and r[2] for r in hub), hub
    assert bad([r for r in late["records"] if r[4] != "hub"]) == []


# --- a parked handler's frames ------------------------------------------------

def test_a_parked_handlers_frames_are_not_in_ordinary_memory():
    """While a handler parked inside do waits on its socket, the pattern in
    its C frame is nowhere in writable memory outside the secret heap:
    greenlet copied it into a secret block at the switch to the hub, and
    the switch erased the thread's stack below the hub."""
    prot = dict(enumerate(program("parked_copy", "protected")))
    (_, base), rest = prot.pop(0), list(prot.values())
    assert len(rest) == 6
    for what, counts in rest:
        assert counts == base, (what, counts, base)
    ctl = program("parked_copy", "control")
    (_, base), rest = ctl[0], ctl[1:]
    parked = [c for what, c in rest if what == "parked"]
    # control: greenlet's copy in ordinary memory, the frame on the stack
    assert all(other > base[1] for _, other in parked), ctl
    assert all(stack > base[0] for stack, _ in parked), ctl


# --- generated interleavings ------------------------------------------------

@pytest.mark.parametrize("first", [0, 100])
def test_generated_interleavings(first):
    """100 random programs a batch: 2-6 greenlets, some in do, each a
    random sequence of gevent.sleep, socket reads, Events, Queues, nested
    do, do in an unprotected greenlet, greenlets spawned inside, raised
    and escaping exceptions, gevent.Timeout fired inside and around do,
    kill() while parked; a ticker and a queue drainer meanwhile."""
    n = 100
    prot = program("interleavings", first, n, "protected")
    ctl = program("interleavings", first, n, "control")
    assert [p["seed"] for p in prot] == [c["seed"] for c in ctl]
    for p in prot:
        assert bad(p["records"]) == [], (p["seed"], bad(p["records"])[:5])
        # every greenlet ended outside secret mode
        assert [e for e in p["ended"] if e[2]] == [], p["seed"]
    # The control (no do) is caught by the same judge: every program by
    # the mode and allocation checks, most by the stack check.
    assert all(mode_caught(c["records"]) for c in ctl)
    assert sum(stack_caught(c["records"]) for c in ctl) > n // 2
    # An exception escaping a protected body holds none of its frames;
    # without do it does.
    esc = [e for p in prot for e in p["escaped"]]
    esc_ctl = [e for c in ctl for e in c["escaped"]]
    assert [e for e in esc if e[0] and e[1]] == []
    assert any(e[0] for e in esc)
    assert esc_ctl and all(frames for _, frames in esc_ctl)
    # The batch exercised what it claims to: protected greenlets ended by
    # a Timeout and by kill(), greenlets made inside do.
    ended = {(e[0], e[1]) for p in prot for e in p["ended"]}
    assert {(True, "timeout"), (True, "killed"), (True, "escaped"),
            (True, "returned")} <= ended, ended
    # greenlets spawned inside do ran, in secret mode
    assert any(r[4] == "leaf-in-do" for p in prot for r in p["records"])
