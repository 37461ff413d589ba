"""The experiment build's health: CPython's own tests of the parts the
patches touch, and the ABI of 3.13 (upstream wheels keep working)."""

import os
import subprocess
import sys
import venv

import pytest

# The regression tests of the files and APIs the series changes: the thread
# state and threads, sys, the C API, sysconfig (PY_EXPERIMENTS), the frame
# stack (frames, generators), faulthandler and signals (alternate stack),
# the cyclic GC, and the free lists and pools the heap patches bypass
# (floats, dtoa, asyncio's FutureIter).
REGRTESTS = ["test_sys", "test_threading", "test_thread", "test_capi",
             "test_sysconfig", "test_faulthandler", "test_signal",
             "test_gc", "test_generators", "test_frame", "test_float",
             "test_strtod", "test_asyncio"]


def test_cpython_regrtests_pass():
    cmd = [sys.executable, "-m", "test", "-j2", "--timeout=900", *REGRTESTS]
    r = subprocess.run(cmd, capture_output=True, text=True)
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
