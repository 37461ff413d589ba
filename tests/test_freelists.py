"""Free lists (spec §3.4, docs/heap-design.md §3): a secret object is never
pushed on a free list (it is freed and zeroed instead), and code in secret
mode never pops one (it gets secret memory).

For each recycling type, three checks, each with its control:
- not recycled: after do, the next object of the type does not get the
  secret object's address (control: without do, it does: the free list is
  live);
- zeroed: the freed secret object's payload is gone (control: the freed
  object on the free list still holds it);
- secret mode pops nothing: with the free list filled outside do, a new
  object made inside do lives in the secret heap.
Plus the dict-keys free list, the in-place float reuse of
BINARY_OP_*_FLOAT, and the two free lists Python cannot reach (object-stack
chunks, async generator wrapped values) through _secret._test_recycle.
dtoa's Bigint pools are tested by the residue scenario dtoa_float.
"""

import asyncio
import contextvars
import os
import struct
import weakref

import pytest

import secret
from conftest import in_secret_heap, read_mem

T = pytest.importorskip("_testsecret")

# asend objects are made and dropped unawaited on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _words(b):
    return [b[i:i + 8] for i in range(0, len(b) - 7, 8)]


def _left(addr, snap):
    """Nonzero words of snap still at addr."""
    now = read_mem(addr, len(snap))
    return sum(1 for a, b in zip(_words(snap), _words(now))
               if a == b and a != b"\0" * 8)


async def _agen():
    yield 1
    yield 2


_keep = []


def _asend():
    ag = _agen()
    _keep.append(ag)        # the generator outlives the asend object
    return ag.asend(None)


_loop = asyncio.new_event_loop()
_future = _loop.create_future()     # _asyncio.Future: its iterators pool


def _futureiter():
    return iter(_future)


def _float():
    return struct.unpack("<d", os.urandom(7) + b"\x40")[0]


def _dict():
    return {os.urandom(8).hex(): os.urandom(8).hex()}


def _no_memory():
    # C code out of memory: PyErr_NoMemory(), not MemoryError().
    try:
        bytearray(1 << 62)
    except MemoryError as e:
        e.__traceback__ = None      # no cycle through the caller's frame
        return e


# name -> (make a new object, payload offset, payload size, payload holds
# something after a plain dealloc)
KINDS = {
    "float": (_float, 16, 8, True),
    "tuple1": (lambda: tuple([object()]), 16, 16, True),
    "tuple5": (lambda: tuple([object() for _ in range(5)]), 16, 48, True),
    "tuple20": (lambda: tuple([object() for _ in range(20)]), 16, 168, True),
    "list": (lambda: [object(), object()], 16, 24, True),
    "dict": (_dict, 16, 32, True),
    "slice": (lambda: slice(object(), object(), object()), 16, 24, True),
    "context": (contextvars.copy_context, 16, 24, False),
    "asend": (_asend, 16, 16, False),
    "futureiter": (_futureiter, 16, 8, False),
    "memoryerror": (lambda: MemoryError(), 16, 8, False),
    "nomemory": (_no_memory, 16, 8, False),
}


def _made_and_freed(make, off, size, protect):
    """Make an object (in do if protect), snapshot its payload, let it
    die; return its address and the snapshot."""
    def f():
        o = make()
        a = id(o)
        return a, read_mem(a + off, size)
    addr, snap = secret.do(f) if protect else f()
    return addr, snap


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("protect", [False, True])
def test_secret_object_is_not_recycled(kind, protect):
    make, off, size, payload = KINDS[kind]
    for _ in range(3):      # fill the free list a little
        make()
    addr, snap = _made_and_freed(make, off, size, protect)
    again = make()
    if protect:
        assert in_secret_heap(addr)
        assert id(again) != addr
    else:
        assert id(again) == addr, "control: the free list is not in use"
    del again


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if KINDS[k][3]))
@pytest.mark.parametrize("protect", [False, True])
def test_secret_object_is_zeroed(kind, protect):
    make, off, size, payload = KINDS[kind]
    addr, snap = _made_and_freed(make, off, size, protect)
    left = _left(addr + off, snap)
    if protect:
        assert left == 0
    else:
        assert left > 0, "control: the free list keeps the payload"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("protect", [False, True])
def test_secret_mode_pops_nothing(kind, protect):
    make, off, size, payload = KINDS[kind]
    for _ in range(3):
        make()              # free objects of this kind, outside do

    def body():
        return id(make())
    run = secret.do if protect else (lambda f: f())   # made before the del
    o = make()
    freed = id(o)
    del o                   # the head of the free list
    new = run(body)
    if protect:
        assert in_secret_heap(new)
    else:
        assert new == freed, "control: the free list is not in use"


def test_dict_keys_free_list():
    def keys_addr(d):
        # PyDictObject: refcnt, type, ma_used, ma_version_tag, ma_keys
        return struct.unpack("<Q", read_mem(id(d) + 32, 8))[0]

    def f():
        d = _dict()
        k = keys_addr(d)
        return k, read_mem(k, 120)

    for protect in (False, True):
        k, snap = secret.do(f) if protect else f()
        left = _left(k, snap)
        again = keys_addr(_dict())
        if protect:
            assert in_secret_heap(k) and left == 0 and again != k
        else:
            assert left > 0 and again == k, "control: keys free list"
    # secret mode pops no keys object
    _dict()
    k = secret.do(lambda: keys_addr(_dict()))
    assert in_secret_heap(k)


def _reuse(values):
    # values.pop() has refcount 1 on the stack: BINARY_OP_MULTIPLY_FLOAT
    # writes the result into it instead of allocating.
    return id(values.pop() * 1.5)


@pytest.mark.parametrize("protect", [False, True])
def test_float_in_place_reuse(protect):
    for _ in range(50):       # specialize BINARY_OP
        _reuse([_float()])
    values = [_float()]
    old = id(values[0])
    new = secret.do(_reuse, values) if protect else _reuse(values)
    if protect:
        assert in_secret_heap(new) and new != old
    else:
        assert new == old, "control: the float is reused in place"


@pytest.mark.parametrize("kind", ["object_stack", "async_gen_wrapped_value"])
def test_internal_free_lists(kind):
    import _secret
    recycle = _secret._test_recycle
    recycle(kind)
    # control: outside do, the free list hands the same block back
    a = recycle(kind)
    assert recycle(kind) == a, "control: the free list is not in use"
    # secret mode pops nothing: the block just pushed is not reused
    b = secret.do(recycle, kind)
    assert b != a and in_secret_heap(b)
    # a secret block is never pushed: the next one outside do is another
    c = recycle(kind)
    assert c != b and not in_secret_heap(c)


class _Local:
    pass


@pytest.mark.parametrize("protect", [False, True])
def test_no_memory_keeps_no_frame_alive(protect):
    """PyErr_NoMemory() with the MemoryError free list empty (16 alive)
    falls back to a static MemoryError that keeps each raise's traceback:
    the frames, hence the locals, of the code that raised stay alive. In
    secret mode, where the free list is never popped, that was every
    PyErr_NoMemory() (secret heap exhausted, too): it gets a fresh
    MemoryError in the secret heap instead."""
    held = [MemoryError() for _ in range(20)]   # empty the free list
    refs = []

    def f():
        local = _Local()
        refs.append(weakref.ref(local))
        try:
            bytearray(1 << 62)
        except MemoryError as e:
            return id(e), e.__traceback__ is not None

    try:
        addr, has_tb = secret.do(f) if protect else f()
        assert has_tb
        if protect:
            assert in_secret_heap(addr)
            assert refs[0]() is None
        else:
            assert refs[0]() is not None, \
                "control: the static MemoryError keeps the frame alive"
    finally:
        if not protect:
            _no_memory()        # clears the static object's traceback
        del held
