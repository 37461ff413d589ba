"""Cyclic garbage at the outermost do() exit (spec §3.4): when do returns,
the garbage cycles func made are already collected and zeroed, without
gc.collect() and with the collector disabled, including objects that a
collection during func promoted to an older generation. A do() whose func
made no GC object triggers no collection. Each check has a control."""

import gc
import os

import pytest

import secret
from conftest import read_mem

T = pytest.importorskip("_testsecret")


@pytest.fixture
def no_auto_gc():
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


def _cycle(data, promote):
    b = data + b"\x01"          # made here: secret inside do
    c = [b]
    c.append(c)                 # only the cyclic GC can free b
    if promote:
        gc.collect(0)           # c survives: promoted to generation 1
    return T.buffer_address(b)


def _found(addr, data, buf):
    return read_mem(addr, buf).count(data[16:48])


@pytest.mark.parametrize("promote", [False, True])
def test_cycle_collected_at_exit(no_auto_gc, promote):
    data = os.urandom(300)
    buf = bytearray(len(data))
    # control: without do, the dead cycle keeps the data in memory
    addr = _cycle(data, promote)
    assert _found(addr, data, buf) == 1, "control: garbage still holds it"
    gc.collect()
    # protected: collected and zeroed when do returns
    addr = secret.do(_cycle, data, promote)
    assert _found(addr, data, buf) == 0


def test_no_collection_without_gc_objects(no_auto_gc):
    calls = []

    def cb(phase, info):
        if phase == "start":
            calls.append(info["generation"])

    gc.callbacks.append(cb)
    try:
        secret.do(lambda: 1 + 1)
        assert calls == []
        # control: a func that makes a GC object gets the exit collection
        secret.do(lambda: [[]])
        assert calls == [0]
        # nested do: only the outermost collects
        secret.do(lambda: secret.do(lambda: [[]]))
        assert calls == [0, 0]
    finally:
        gc.callbacks.remove(cb)


def test_exit_collection_keeps_exception_and_result(no_auto_gc):
    def f():
        c = []
        c.append(c)
        raise ValueError("kept")
    with pytest.raises(ValueError, match="kept"):
        secret.do(f)
    r = secret.do(lambda: [[1]])
    assert r == [[1]]
