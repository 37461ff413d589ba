"""The experiment build's health: CPython's own tests of the parts the
patches touch, and the ABI of 3.13 (upstream wheels keep working)."""

import os
import signal
import subprocess
import sys
import venv

import pytest

# The regression tests of the files and APIs the series changes: the thread
# state and threads, sys, the C API, sysconfig (PY_EXPERIMENTS), the frame
# stack (frames, generators), faulthandler and signals (alternate stack),
# the cyclic GC, and the free lists and pools the heap patches bypass
# (floats, dtoa, asyncio's FutureIter), and the caches patches 0018 and 0019
# change (functools, re, urllib.parse, ElementPath).
REGRTESTS = ["test_sys", "test_threading", "test_thread", "test_capi",
             "test_sysconfig", "test_faulthandler", "test_signal",
             "test_gc", "test_generators", "test_frame", "test_float",
             "test_strtod", "test_asyncio", "test_functools", "test_re",
             "test_urlparse", "test_xml_etree", "test_xml_etree_c"]


def default_sigint():
    # If pytest was started with SIGINT ignored (a background job of a
    # non-interactive shell), regrtest would inherit that and CPython's
    # KeyboardInterrupt tests would fail or hang on any interpreter.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_cpython_regrtests_pass():
    cmd = [sys.executable, "-m", "test", "-j2", "--timeout=900", *REGRTESTS]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       preexec_fn=default_sigint)
    tail = "\n".join((r.stdout + r.stderr).splitlines()[-40:])
    assert r.returncode == 0, tail
    assert "Result: SUCCESS" in r.stdout, tail


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A fresh venv of the experiment interpreter with upstream binary
    wheels from PyPI: cryptography (abi3) and msgpack (cp313)."""
    d = tmp_path_factory.mktemp("abi") / "venv"
    venv.create(d, with_pip=True)
    py = str(d / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--only-binary=:all:",
                    "cryptography", "msgpack"], check=True)
    return py


def run(py, code):
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_abi3_wheel_works(wheel_venv):
    out = run(wheel_venv, "\n".join([
        "import os, secret",
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM",
        "import cryptography.hazmat.bindings._rust as r",
        "key, nonce = AESGCM.generate_key(256), os.urandom(12)",
        "ct = AESGCM(key).encrypt(nonce, b'attack at dawn', None)",
        "pt = secret.do(lambda: AESGCM(key).decrypt(nonce, ct, None))",
        "assert pt == b'attack at dawn', pt",
        "print(os.path.basename(r.__file__))",
    ]))
    assert ".abi3." in out, out  # a stable-ABI binary from upstream


def test_cp313_wheel_works(wheel_venv):
    out = run(wheel_venv, "\n".join([
        "import msgpack, secret",
        "from msgpack import _cmsgpack",
        "data = {'k': [1, 2.5, b'x', 'y']}",
        "assert secret.do(lambda: msgpack.unpackb(msgpack.packb(data))) "
        "== data",
        "print(_cmsgpack.__file__)",
    ]))
    assert out.endswith(".cpython-313-x86_64-linux-gnu.so") or \
        out.endswith(".cpython-313-aarch64-linux-gnu.so"), out


def test_regrtest_compare_reads_the_final_verdict(tmp_path):
    """scripts/regrtest_compare.py judges by the lists regrtest prints after
    its re-run: a test that failed once and passed on re-run is "flaky",
    not "failed"; one that failed again is "failed"."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir,
                                    "scripts"))
    try:
        import regrtest_compare
    finally:
        del sys.path[0]
    d = tmp_path / "tests"
    d.mkdir()
    marker = tmp_path / "failed-once"
    (d / "test_rc_flaky.py").write_text(
        "import os, unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_once(self):\n"
        f"        if not os.path.exists({str(marker)!r}):\n"
        f"            open({str(marker)!r}, 'w').close()\n"
        "            self.fail('first run')\n")
    (d / "test_rc_fail.py").write_text(
        "import unittest\n"
        "class T(unittest.TestCase):\n"
        "    def test_always(self):\n"
        "        self.fail('every run')\n")
    (d / "test_rc_skip.py").write_text(
        "import unittest\nraise unittest.SkipTest('not here')\n")
    r = subprocess.run(
        [sys.executable, "-m", "test", "--testdir", str(d), "-j2",
         "--rerun", "test_rc_flaky", "test_rc_fail", "test_rc_skip"],
        capture_output=True, text=True, cwd=tmp_path,
        preexec_fn=default_sigint)
    lists = regrtest_compare.parse_output(r.stdout)
    # The control: the first run's lists alone count the flaky test failed.
    assert regrtest_compare.parse_lists(r.stdout)["failed"] == {
        "test_rc_fail", "test_rc_flaky"}, r.stdout
    assert lists["failed"] == {"test_rc_fail"}, r.stdout
    assert lists["flaky"] == {"test_rc_flaky"}, r.stdout
    assert lists["skipped"] == {"test_rc_skip"}, r.stdout
