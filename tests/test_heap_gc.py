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


# --- what the exit collection covers, and what it costs (spec §4) ----------

class _Node:
    """A weakly referenceable object in a cycle: dead only when collected."""


def _make_cycles(n, promote_to):
    """n garbage cycles; promote_to: collect that generation meanwhile (so
    the cycles' objects move to an older one), or None. Returns weakrefs
    to them."""
    import weakref
    refs = []
    for _ in range(n):
        a = _Node()
        a.self = a
        refs.append(weakref.ref(a))
        del a
    if promote_to is not None:
        gc.collect(promote_to) if promote_to < 2 else None
    return refs


def _collections_during(fn):
    gens = []

    def cb(phase, info):
        if phase == "start":
            gens.append(info["generation"])
    gc.callbacks.append(cb)
    try:
        r = fn()
    finally:
        gc.callbacks.remove(cb)
    return r, gens


def _promoted_cycles():
    # Two generation-0 collections that find them alive (they are held)
    # and one of generation 1: their objects end in the oldest generation.
    import weakref
    held = []
    for _ in range(50):
        a = _Node()
        a.self = a
        held.append(a)
    gc.collect(0)
    gc.collect(1)
    refs = [weakref.ref(a) for a in held]
    held.clear()                # now garbage, in the oldest generation
    return refs


def test_promoted_garbage_collected_without_a_full_collection(no_auto_gc):
    # Control: plainly, the garbage stays until a full collection.
    refs, _ = _collections_during(_promoted_cycles)
    assert all(r() is not None for r in refs)
    gc.collect()
    refs, gens = _collections_during(lambda: secret.do(_promoted_cycles))
    assert all(r() is None for r in refs)
    # func's two collections, then the exit's: generation 1, not 2 (the
    # oldest generation's tail that func's objects reached is moved back).
    assert gens == [0, 1, 1], gens


def test_exit_collection_after_gc_freeze_still_collects(no_auto_gc):
    # gc.freeze() in func moves everything to the permanent generation:
    # the marker is gone from the oldest one; a full collection is the
    # only sure one, and it is what happens.
    def f():
        refs = _promoted_cycles()
        gc.freeze()
        gc.unfreeze()
        return refs
    refs, gens = _collections_during(lambda: secret.do(f))
    assert all(r() is None for r in refs)
    assert gens[-1] == 2, gens


def test_do_in_a_finalizer_during_a_collection(no_auto_gc):
    # A collection does not nest: a do() that returns while one runs (in a
    # __del__ the collector calls) cannot collect at its exit; the
    # collection, once done, collects what its func left, in secret mode.
    import weakref
    out = []

    def make():
        a = _Node()
        a.self = a
        out.append(weakref.ref(a))
        out.append(secret.enabled())

    class Finalized:
        def __init__(self, protect):
            self.protect = protect
            self.me = self

        def __del__(self):
            if self.protect:
                secret.do(make)
            else:
                make()

    for protect in (False, True):
        out.clear()
        Finalized(protect)
        gc.collect()
        if protect:
            assert out[0]() is None     # collected before gc.collect returned
        else:
            assert out[0]() is not None  # control: left for a later one
        gc.collect()


def test_do_in_a_gc_callback(no_auto_gc):
    import weakref
    out = []

    def make():
        a = _Node()
        a.self = a
        out.append(weakref.ref(a))

    def cb(phase, info):
        if phase == "stop" and not out:
            secret.do(make)
    gc.callbacks.append(cb)
    try:
        gc.collect(0)
    finally:
        gc.callbacks.remove(cb)
    assert out and out[0]() is None


def test_generated_collection_orders(no_auto_gc):
    # Generated: forced collections of each generation before and after
    # func's garbage is made, gc.freeze(), nested do(), other threads
    # allocating meanwhile. The garbage is always gone at exit, and the exit
    # collection is of the oldest generation only when freeze() moved
    # everything.
    import random
    import threading
    import weakref
    rng = random.Random(os.urandom(4))
    for _ in range(300):
        steps = [rng.choice(["c0", "c1", "c2", "make", "nest", "thread",
                             "freeze"]) for _ in range(rng.randrange(1, 7))]
        steps.append("make")
        refs = []

        def func():
            for s in steps:
                if s == "make":
                    a = _Node()
                    a.self = a
                    a.data = os.urandom(64)
                    refs.append(weakref.ref(a))
                    del a
                elif s.startswith("c"):
                    gc.collect(int(s[1]))
                elif s == "nest":
                    secret.do(lambda: None)
                elif s == "thread":
                    t = threading.Thread(target=lambda: [[] for _ in
                                                         range(3000)])
                    t.start()
                    t.join()
                elif s == "freeze":
                    gc.freeze()
                    gc.unfreeze()

        _, gens = _collections_during(lambda: secret.do(func))
        assert all(r() is None for r in refs), steps
        exit_gen = gens[-1]
        assert exit_gen <= 1 or "freeze" in steps, (steps, gens)
