"""Branch history in code objects made before do() (issue 20 §3, patch 0020).

CPython 3.13's POP_JUMP_IF_FALSE/TRUE/NONE/NOT_NONE (and their instrumented
forms, used under sys.monitoring) shift each outcome into a 16-bit history
kept in the code object's inline cache (co_code_adaptive). A loop over the
bits of a key in a function defined before do() leaves the last 16 bits of
each branch there after do() returns. Only the tier-2 optimizer reads that
history; the experiment does not record it when tier 2 is not built (this
build), and not in secret mode when it is.

Control: pristine and the off build (upstream's code) show the key's bits
in the history; the experiment shows none, inside do() or outside it.
"""

import json
import os

import pytest

from conftest import interpreter, run_python

CHILD = r"""
import dis, json, os, sys

def bits_if(key):                     # POP_JUMP_IF_FALSE
    n = 0
    for i in range(16):
        if (key >> i) & 1:
            n += 1
    return n

def bits_if_not(key):                 # POP_JUMP_IF_TRUE
    n = 0
    for i in range(16):
        if not (key >> i) & 1:
            n += 1
    return n

def bits_none(key):                   # POP_JUMP_IF_NONE / NOT_NONE
    n = 0
    for i in range(16):
        x = None if (key >> i) & 1 else i
        if x is None:
            n += 1
        if x is not None:
            n -= 1
    return n

def bits_while(key):                  # a while loop, short-circuits
    i = n = 0
    while i < 16:
        if (key >> i) & 1 and i >= 0 or False:
            n += 1
        i += 1
    return n

FUNCS = [bits_if, bits_if_not, bits_none, bits_while]
JUMPS = {"POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "POP_JUMP_IF_NONE",
         "POP_JUMP_IF_NOT_NONE"}

def histories(f):
    code = f.__code__
    raw = code._co_code_adaptive
    out = []
    for ins in dis.get_instructions(code):
        if ins.opname in JUMPS:
            at = ins.offset + 2
            out.append(int.from_bytes(raw[at:at + 2], "little"))
    return out

mode = sys.argv[1]
key = int.from_bytes(os.urandom(2), "little") | 0x8001
if mode.endswith("monitored"):
    # sys.monitoring's BRANCH events: the INSTRUMENTED_POP_JUMP_IF_* forms
    mon = sys.monitoring
    mon.use_tool_id(3, "test")
    mon.register_callback(3, mon.events.BRANCH, lambda *a: None)
    for f in FUNCS:
        mon.set_local_events(3, f.__code__, mon.events.BRANCH)
run = [f(key) for f in FUNCS]         # warmed up outside first
before = {f.__name__: histories(f) for f in FUNCS}
# Then another key, in do() or not: its bits must not show in do().
key2 = key ^ (int.from_bytes(os.urandom(2), "little") | 0x0100)
while key2 in (0x5555, 0xAAAA):   # the quickened value, either way round
    key2 ^= 0x0101
if mode.startswith("do"):
    import secret
    assert secret.supported()
    secret.do(lambda: [f(key2) for f in FUNCS])
else:
    [f(key2) for f in FUNCS]
print(json.dumps({"key": key, "key2": key2, "before": before,
                  "after": {f.__name__: histories(f) for f in FUNCS}}))
"""


def reverse16(x):
    return int("{:016b}".format(x)[::-1], 2)


def shows_key(histories, key):
    """Whether a 16-bit history holds the key's bits (in the order the loop
    shifted them in, either polarity)."""
    want = {reverse16(key), reverse16(key) ^ 0xFFFF}
    return sorted({name for name, hs in histories.items()
                   for h in hs if h in want})


def run(variant, mode, **env):
    r = run_python(variant, CHILD, mode, timeout=60,
                   env=dict(os.environ, **env))
    return json.loads(r.stdout)


@pytest.mark.parametrize("variant", ["pristine", "off"])
@pytest.mark.parametrize("mode", ["plain", "plain-monitored"])
def test_control_shows_the_key(variant, mode):
    d = run(variant, mode)
    # Every loop shape leaves the key's 16 bits in a history.
    assert shows_key(d["after"], d["key2"]) == [
        "bits_if", "bits_if_not", "bits_none", "bits_while"], d


@pytest.mark.parametrize("mode", ["do", "do-monitored", "plain",
                                  "plain-monitored"])
def test_experiment_keeps_no_history(mode):
    d = run("experiment", mode)
    assert shows_key(d["after"], d["key"]) == [], d
    assert shows_key(d["after"], d["key2"]) == [], d
    # Nothing recorded at all: the caches did not change over the calls,
    # and keep the value quickening gave them (or, under sys.monitoring,
    # the counter the instrumentation wrote there).
    assert d["after"] == d["before"], d
    for name, hs in d["after"].items():
        assert hs and len(set(hs)) == 1, (name, hs)
        if not mode.endswith("monitored"):
            assert set(hs) == {0x5555}, (name, hs)


# The tier-2 build reads the history, so it records it outside secret mode
# and not inside: the only build where the secret-mode test runs. Optional
# (`ninja -C cpython-build/_meson experiment-tier2.stamp`, about 10 minutes).
TIER2 = "experiment-tier2"
needs_tier2 = pytest.mark.skipif(
    not os.path.exists(interpreter(TIER2)),
    reason="the experiment-tier2 variant is not built (optional)")


@needs_tier2
@pytest.mark.parametrize("jit", ["0", "1"])
def test_tier2_build_records_outside_do_only(jit):
    # PYTHON_JIT=0: tier 2 is built but not used, so every branch runs in
    # tier 1 and records (the control); PYTHON_JIT=1: hot loops move into
    # traces, whose branches record nothing anyway.
    if jit == "0":
        control = run(TIER2, "plain", PYTHON_JIT=jit)
        assert shows_key(control["after"], control["key2"]) == [
            "bits_if", "bits_if_not", "bits_none", "bits_while"], control
    d = run(TIER2, "do", PYTHON_JIT=jit)
    # The warm-up outside recorded the first key; do() recorded nothing of
    # the second.
    if jit == "0":
        assert shows_key(d["before"], d["key"]), d
    assert d["after"] == d["before"], d
    assert shows_key(d["after"], d["key2"]) == [], d
