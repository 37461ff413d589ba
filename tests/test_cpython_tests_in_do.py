"""CPython's own tests of the types and modules secret code uses most, run
inside secret.do() (spec §3.4 robustness: the secret heap, bypassed free
lists, realloc into the heap and do's exit work must not change what
Python code computes).

Each unittest test case and doctest of the modules below runs as
secret.do(TestCase.run, test, result), through
scripts/regrtest_in_do/sitecustomize.py, in regrtest's worker processes.
The whole suite runs the same way with `python3 scripts/regrtest_compare.py
--in-do` (not here: about 8 minutes).

Control: a probe test that asserts it runs in secret mode and allocates in
the secret heap fails without the wrapper and passes with it, so a suite
that passes has run inside do.
"""

import os
import re
import subprocess
import textwrap

import pytest

from conftest import EXPERIMENT, ROOT, interpreter

SITE = os.path.join(ROOT, "scripts", "regrtest_in_do")

# Built-in types and the modules that decode, hash, derive and serialize:
# what code wrapped in do() spends its allocations on.
# Threads started inside do inherit secret mode (test_thread,
# test_threading). File objects made in do keep their buffers in the secret
# heap and zero what they consumed (test_io, test_bufio, test_fileio,
# test_file, test_univnewlines: patch 0014).
MODULES = [
    "test_base64", "test_binascii", "test_bufio", "test_bytes", "test_bz2",
    "test_codecs",
    "test_collections", "test_contextlib", "test_copy", "test_dataclasses",
    "test_decimal", "test_dict", "test_enum", "test_exceptions",
    "test_file", "test_fileio",
    "test_float", "test_fractions", "test_functools", "test_gc",
    "test_generators", "test_hashlib", "test_hmac", "test_int", "test_io",
    "test_itertools", "test_json", "test_list", "test_long", "test_lzma",
    "test_marshal", "test_memoryview", "test_pickle", "test_re",
    "test_secrets", "test_set", "test_ssl", "test_str", "test_string",
    "test_struct", "test_thread", "test_threading", "test_tuple",
    "test_unicodedata", "test_univnewlines", "test_unittest", "test_weakref",
    "test_zlib",
]

# The same inside do under the other allocators (spec §3.4: "whichever
# allocator PYTHONMALLOC selects"; the default is pymalloc).
ALLOCATOR_MODULES = [
    "test_bytes", "test_dict", "test_exceptions", "test_float", "test_gc",
    "test_hashlib", "test_json", "test_list", "test_pickle", "test_set",
    "test_str", "test_tuple",
]

PROBE = textwrap.dedent("""\
    import unittest

    import secret


    class Probe(unittest.TestCase):
        def test_runs_in_do(self):
            self.assertTrue(secret.enabled())
            info = secret.heap_info()
            fresh = id(bytearray(64))
            self.assertLess(fresh - info["base"], info["reserved"])
""")


def _regrtest(args, in_do, cwd, allocator=None):
    env = dict(os.environ)
    if allocator:
        env["PYTHONMALLOC"] = allocator
    env["PYTHONPATH"] = SITE
    if in_do:
        env["RUNTIMESECRET_REGRTEST_IN_DO"] = "1"
    else:
        env.pop("RUNTIMESECRET_REGRTEST_IN_DO", None)
    # --rerun: a test that fails is run again alone (load on 2 cores);
    # regrtest's exit status is 0 only if it then passes.
    cmd = [interpreter(EXPERIMENT), "-m", "test", "-j2",
           "--timeout=600", "--rerun", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.mark.parametrize("in_do", [False, True])
def test_probe_runs_inside_do(tmp_path, in_do):
    (tmp_path / "test_probe.py").write_text(PROBE)
    r = _regrtest(["--testdir", str(tmp_path), "test_probe"], in_do,
                  tmp_path)
    if in_do:
        assert r.returncode == 0, r.stdout[-3000:]
        assert "Result: SUCCESS" in r.stdout
    else:
        assert "Result: FAILURE" in r.stdout, \
            "control: outside do the probe must fail\n" + r.stdout[-3000:]


def ran_all(stdout, n):
    """Every one of the n test files ran: "run=N/n", where N counts a
    re-run too (test_io is re-run for its "env changed": objects its tests
    leave in cycles are collected at do's exit, and their finalizers'
    ignored errors land outside the test's own check)."""
    m = re.search(r"Total test files: run=(\d+)/(\d+)", stdout)
    return m is not None and int(m.group(2)) == n and int(m.group(1)) >= n


# Tests that check what a cache stored, run in secret mode, where a cache is
# read but not filled (spec §3.4, patch 0018): test_functools' lru_cache
# tests (their cache_info() counts entries; test_lru_recursion memoizes a
# recursion, exponential without its cache).
BY_DESIGN = ["test.test_functools.TestLRU*",
             "test.test_functools.TestCacheC.*",
             "test.test_functools.TestCachePy.*"]


def test_cpython_tests_pass_inside_do(tmp_path):
    ignore = [a for pat in BY_DESIGN for a in ("--ignore", pat)]
    r = _regrtest(ignore + MODULES, True, tmp_path)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert ran_all(r.stdout, len(MODULES)), r.stdout[-3000:]


@pytest.mark.parametrize("allocator", ["malloc", "mimalloc", "debug"])
def test_cpython_tests_pass_inside_do_with_allocator(tmp_path, allocator):
    r = _regrtest(ALLOCATOR_MODULES, True, tmp_path, allocator)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert ran_all(r.stdout, len(ALLOCATOR_MODULES)), r.stdout[-3000:]
