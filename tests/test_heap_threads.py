"""Threads and shutdown (spec §2, §3.4): a thread started in secret mode
allocates in the secret heap for its whole life; what it made is still
zeroed when freed later, on any thread, after it ended; the heap's capacity
follows bytes, not threads (one heap serves every thread); interpreter
shutdown zeroes secret blocks still live."""

import os
import subprocess
import sys
import threading

import pytest

import secret
from conftest import in_secret_heap, read_mem

T = pytest.importorskip("_testsecret")


def _thread_made(data, inherit):
    out = {}

    def body():
        out["obj"] = data + b"\x01"     # made on the thread
        out["addr"] = T.buffer_address(out["obj"])
        out["enabled"] = secret.enabled()

    def start():
        t = threading.Thread(target=body)
        t.start()
        t.join()

    if inherit:
        secret.do(start)
    else:
        start()
    return out


@pytest.mark.parametrize("inherit", [False, True])
def test_inherited_thread_allocates_secretly(inherit):
    data = os.urandom(300)
    secret.do(lambda: [data])   # the heap is reserved already
    out = _thread_made(data, inherit)
    assert out["enabled"] is inherit
    assert in_secret_heap(out["addr"]) is inherit
    # free, after the thread ended, on this thread
    addr = out["addr"]
    buf = bytearray(len(data))
    del out
    left = read_mem(addr, buf).count(data[16:48])
    if inherit:
        assert left == 0
    else:
        assert left == 1, "control: the freed block keeps the data"


def test_capacity_recovered_across_thread_churn():
    code = r"""
import os, threading, secret
keep = []
def body():
    junk = [os.urandom(1000) for _ in range(200)]   # freed on the thread
    keep.append(os.urandom(100))                    # outlives the thread
def start():
    t = threading.Thread(target=body); t.start(); t.join()
for i in range(40):          # 40 threads x 32 MiB segments > 64 MiB
    secret.do(start)
    keep.clear()             # freed on the main thread
info = secret.heap_info()
assert info["exhausted"] == 0, info
print(info["live_blocks"] < 1000, info["committed"] < (16 << 20))
"""
    r = subprocess.run([sys.executable, "-X", "secret_heap_size=64M", "-c",
                        code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


SHUTDOWN_CHILD = r"""
import os, sys, secret, _testsecret as T
protect = sys.argv[1] == "1"
path = sys.argv[2]
data = os.urandom(4000)
def make():
    return data + b"\x01"
# Register the probe before the first do(): Py_AtExit callbacks run
# last-registered first, so it runs after the secret heap's shutdown hook.
T.atexit_probe(1, 1, b"x", path)
obj = secret.do(make) if protect else make()
T.leak(obj)                  # never freed: only shutdown can zero it
T.atexit_probe(T.buffer_address(obj), len(data), data[100:132], path)
"""


@pytest.mark.parametrize("protect", [False, True])
def test_shutdown_zeroes_live_secret_blocks(protect, tmp_path):
    out = tmp_path / "count"
    r = subprocess.run([sys.executable, "-c", SHUTDOWN_CHILD,
                        "1" if protect else "0", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    count = int(out.read_text())
    if protect:
        assert count == 0
    else:
        assert count == 1, "control: a leaked block keeps the data"
