"""Secret mode follows greenlet switches under gevent (spec §2.1), with
gevent's monkey-patched sockets.

A greenlet that runs secret.do() and parks in the hub inside it (a socket
read, gevent.sleep, an Event, a Queue) leaves secret mode at each switch
away, erasing what it left below on the C stack, and re-enters it at each
switch back: other greenlets (the hub's callbacks, a ticker, a queue
drainer, clients) never run in secret mode nor get secret blocks, and
never find the protected greenlet's stack pattern below their frames. A
greenlet made in secret mode (gevent.spawn inside do) runs in it.

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
    (outside secret mode) finding a protected greenlet's stack pattern."""
    return [r for r in records
            if r[0] != r[1] or r[0] != r[2] or (not r[0] and r[3])]


def mode_caught(records):
    return any(r[0] != r[1] or r[0] != r[2] for r in records)


def stack_caught(records):
    return any(r[3] for r in records if not r[0])


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
    leaves = [r for p in prot for r in p["records"] if r[4] == "leaf"]
    assert {r[0] for r in leaves} == {True, False}
