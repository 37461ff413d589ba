"""Interning and implicit caches (spec §3.5 decision, docs/limitations.md):
a string made in secret mode may be interned, but is never made immortal,
so it is freed and zeroed with its last referrer; the UTF-8 cache of a
secret string is secret even when made after do(). Each has a control."""

import os
import sys
import types

import pytest

import secret
from conftest import in_secret_heap, read_mem

T = pytest.importorskip("_testsecret")

IMMORTAL = 1 << 30          # an immortal object's refcount is above this


def _secret_name():
    return "k_" + os.urandom(24).hex()


def _compiled_name(src_name):
    # compile() interns co_names as immortal strings (codeobject.c)
    code = compile(src_name + " = 1", "<s>", "exec")
    name = code.co_names[0]
    return name, sys.getrefcount(name), sys._is_interned(name)


@pytest.mark.parametrize("protect", [False, True])
def test_compile_names_are_interned_but_not_immortal(protect):
    src = _secret_name()
    run = secret.do if protect else (lambda f, *a: f(*a))
    name, refs, interned = run(_compiled_name, src)
    assert interned
    if protect:
        assert in_secret_heap(id(name))
        assert refs < IMMORTAL
    else:
        assert refs >= IMMORTAL, "control: implicit interning immortalizes"


def _setattr_name(obj, hexpart):
    name = "a_" + hexpart          # made here
    setattr(obj, name, 1)          # interned (mortal) as an attribute name
    key = next(iter(vars(obj)))
    return T.buffer_address(key), sys._is_interned(key)


@pytest.mark.parametrize("protect", [False, True])
def test_secret_attribute_name_zeroed_with_its_object(protect):
    # A plain instance dict (class instances share their class's keys
    # object, which would keep the name alive with the class).
    hexpart = os.urandom(40).hex()
    needle = hexpart[:32].encode()
    buf = bytearray(82)
    o = types.SimpleNamespace()
    run = secret.do if protect else (lambda f, *a: f(*a))
    addr, interned = run(_setattr_name, o, hexpart)
    assert interned
    assert needle in read_mem(addr, buf)      # alive: readable
    # last referrer of the name (the type attribute cache does not keep a
    # secret name: patch 0013; it does keep the control's)
    del o
    left = read_mem(addr, buf).count(needle)
    if protect:
        assert left == 0
    else:
        assert left == 1, "control: the freed name keeps its bytes"


def test_utf8_cache_of_secret_string_is_secret():
    # non-ASCII: the UTF-8 form is a separate cache, filled on demand
    s = secret.do(lambda: "\u00e9" + os.urandom(16).hex())
    assert in_secret_heap(id(s))
    assert in_secret_heap(T.utf8_address(s))      # filled here, after do
    # control: an ordinary string's cache is ordinary memory
    t = "\u00e9" + os.urandom(16).hex()
    assert not in_secret_heap(T.utf8_address(t))
