"""Robustness of the secret heap: every PYTHONMALLOC allocator, tracemalloc
running during do(), and 8 threads doing do() with cross-thread frees."""

import os
import subprocess
import sys
import sysconfig
import tracemalloc

import pytest

import secret
from test_heap import CASES, SIZES, check, run_probe

T = pytest.importorskip("_testsecret")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The debug hooks fill freed blocks with 0xDD themselves, so their control
# cannot find the data; the non-debug runs are the controls for those.
# An AddressSanitizer build has no pymalloc (CPython's configure leaves it
# out), so PYTHONMALLOC=pymalloc is refused there.
ALLOCATORS = [
    pytest.param("pymalloc", marks=pytest.mark.skipif(
        not sysconfig.get_config_var("WITH_PYMALLOC"),
        reason="this build has no pymalloc (an ASan build)")),
    "malloc", "mimalloc", "debug", "malloc_debug", "mimalloc_debug"]
_cache = {}


def probe(name):
    if name not in _cache:
        if name == "tracemalloc":
            _cache[name] = run_probe(None, "-X", "tracemalloc=5")
        else:
            _cache[name] = run_probe(name)
    return _cache[name]


@pytest.mark.parametrize("allocator", ALLOCATORS + ["tracemalloc"])
def test_every_allocator(allocator):
    results = probe(allocator)
    for size in SIZES:
        for domain, path in CASES:
            check(results, size, domain, path,
                  control="debug" not in allocator)


def test_tracemalloc_sees_secret_blocks():
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start(5)
    try:
        data = os.urandom(5000)

        def f():
            b = data + b"\x01"
            return b, tracemalloc.get_object_traceback(b)

        b, tb = secret.do(f)
        info = secret.heap_info()
        assert info["base"] <= id(b) < info["base"] + info["reserved"]
        assert tb is not None        # traced although secret
        snap = tracemalloc.take_snapshot()
        assert any(t.size >= 5000 for t in snap.traces)
        del b
    finally:
        if not started:
            tracemalloc.stop()


def test_threads_cross_thread_frees():
    # 8 threads, each doing do() and freeing what the others made, for a
    # few seconds; live secret blocks return to the baseline
    # (scripts/heap_soak.py 60 8 is the one-minute soak).
    r = subprocess.run([sys.executable,
                        os.path.join(ROOT, "scripts", "heap_soak.py"),
                        "4", "8"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exhausted=0" in r.stdout


@pytest.mark.parametrize("allocator", ALLOCATORS + ["tracemalloc"])
def test_realloc_of_pre_do_block_every_allocator(allocator):
    # The raw chain's debug header and tracemalloc's hooks sit between
    # pymalloc and the base allocator on this path.
    from test_heap import PRE_DO_REALLOC_CHILD
    env = dict(os.environ)
    env.pop("MALLOC_PERTURB_", None)
    args = [sys.executable]
    if allocator == "tracemalloc":
        args += ["-X", "tracemalloc=5"]
    else:
        env["PYTHONMALLOC"] = allocator
    r = subprocess.run(args + ["-c", PRE_DO_REALLOC_CHILD, "1"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    for item in r.stdout.split():
        assert item.split(":")[1:] == ["0", "1", "1", "1"], item
