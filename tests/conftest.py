"""Shared helpers. The suite runs on the experiment interpreter (from its
venv); other interpreters are run as child processes."""

import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "cpython-build")
INSTALL = os.path.join(BUILD, "install")
WORK = os.path.join(BUILD, "work")
UPSTREAM = os.path.join(WORK, "upstream")
# The experiment variant under test: "experiment" (./run test) or
# "experiment-opt", its PGO+LTO build (scripts/test_optimized.sh), or
# "experiment-sanitizer", built with ASan and UBSan
# (scripts/test_sanitizer.sh).
EXPERIMENT = os.environ.get("RUNTIMESECRET_EXPERIMENT", "experiment")
if EXPERIMENT not in ("experiment", "experiment-opt", "experiment-sanitizer"):
    raise SystemExit("RUNTIMESECRET_EXPERIMENT=%r: not an experiment variant"
                     " (experiment, experiment-opt, experiment-sanitizer)"
                     % EXPERIMENT)

# Built with AddressSanitizer (the experiment-sanitizer variant):
# - greenlet switches stacks by copying them without telling ASan, which
#   then reports greenlet's copies and stale red zones, without do() too
#   (docs/sanitizers.md): greenlet and gevent tests skip there;
# - ASan's malloc takes the C library's place: the native heap is off
#   (secret.protections()["native_heap"] is False), its tests skip.
ASAN = "--with-address-sanitizer" in (
    sysconfig.get_config_var("CONFIG_ARGS") or "")
GREENLET_UNDER_ASAN = ("greenlet switches stacks without telling "
                       "AddressSanitizer (docs/sanitizers.md)")


def interpreter(variant):
    return os.path.join(INSTALL, variant, "bin", "python3")


def run_python(variant, code, *args, check=True, **kw):
    """Run code on an installed variant; return the CompletedProcess."""
    r = subprocess.run([interpreter(variant), "-c", code, *args],
                       capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s"
                             % (variant, r.returncode, r.stdout, r.stderr))
    return r


# AddressSanitizer's frames are two to three times larger (red zones):
# a small thread stack that holds a test's deep call in the other builds
# overflows there, with or without do().
ASAN = "--with-address-sanitizer" in (
    sysconfig.get_config_var("CONFIG_ARGS") or "")


def in_thread(stack_size, fn):
    """fn() in a new thread whose stack is stack_size bytes (None: the
    default; doubled, up to 1 MiB, under AddressSanitizer); its result, or
    what it raised."""
    import threading
    if ASAN and stack_size and stack_size < (1 << 20):
        stack_size = min(stack_size * 2, 1 << 20)
    out = {}

    def body():
        try:
            out["r"] = fn()
        except BaseException as e:
            out["e"] = e
    old = threading.stack_size(stack_size or 0)
    try:
        t = threading.Thread(target=body)
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    if "e" in out:
        raise out["e"]
    return out["r"]


# /proc/self/mem fails (EIO) instead of faulting on an unmapped or
# decommitted page: tests read freed blocks through it. Opened once, so a
# read allocates nothing that could land on the block being read.
_MEM = open("/proc/self/mem", "rb", buffering=0)


def read_mem(addr, buf):
    """The len(buf) bytes at addr, or b"" if unreadable. buf is a bytearray
    made before the block at addr was freed (a new buffer could take its
    place); an int n reads into a fresh bytearray(n)."""
    if isinstance(buf, int):
        buf = bytearray(buf)
    try:
        _MEM.seek(addr)
        return bytes(buf) if _MEM.readinto(buf) == len(buf) else b""
    except OSError:
        return b""


def in_secret_heap(addr):
    """Whether addr is inside the secret heap's reserved range."""
    import secret
    info = secret.heap_info()
    return info["base"] <= addr < info["base"] + info["reserved"]


@pytest.fixture(scope="session", autouse=True)
def _on_experiment_interpreter():
    # The contract: tests run on the built experiment interpreter.
    # RUNTIMESECRET_PREFIX: an experiment installed elsewhere, e.g. from the
    # release tarball (scripts/test_release.sh).
    prefix = os.path.realpath(os.environ.get("RUNTIMESECRET_PREFIX")
                              or os.path.join(INSTALL, EXPERIMENT))
    assert os.path.realpath(sys.base_prefix) == prefix, sys.base_prefix
    assert sysconfig.get_config_var("PY_EXPERIMENTS") == "runtimesecret"
