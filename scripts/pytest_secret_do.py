"""pytest plugin: run each test's call inside secret.do().

    PYTHONPATH=scripts python -m pytest -p pytest_secret_do [options] ...

--secret-do=on (default): the test function's call (not its fixtures)
  runs as secret.do(test, **args); async tests run as upstream (do()
  refuses a coroutine). off: the call runs plainly, the rest of the
  plugin unchanged (the control of the residue check; also on an
  interpreter without the secret module).
--secret-subset=M/N: keep only the tests whose CRC-32 of the node id is
  below M modulo N (deterministic: the same tests on every interpreter).
--secret-scan=K: the residue check, on the first K tests (in the order
  they run) that decode a key from their vectors: a call
  binascii.unhexlify(...) on a source line that names a key, giving 16 to
  64 bytes (cryptography's tests read their vector files inside the test,
  so the key first exists inside the call). After the call and a
  collection, the process's memory is scanned from another process
  (scripts/residuelib) for up to 4 of those keys. The plugin keeps each
  key only as the hex of its two halves, never whole, so the check adds
  no copy of its own. After each scanned test, secret.survivors() (when
  on) says which secret objects the test left alive.
--secret-report=PATH: a JSON report (per scanned test: keys, copies
  found and where, new survivors with what holds them; totals).
"""

import binascii
import gc
import inspect
import json
import linecache
import os
import subprocess
import sys
import time
import zlib

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

SCANNER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from residuelib.needles import Needle
from residuelib.scan import scan_process
ns = []
for line in sys.stdin.read().splitlines():
    h1, h2 = line.split()
    ns.append(Needle("raw", bytes.fromhex(h1), bytes.fromhex(h2)))
    del h1, h2
s = scan_process(int(sys.argv[1]), ns)
print(s.copies, " ".join("%s=%d" % kv for kv in s.by_label().items()))
"""


def pytest_addoption(parser):
    g = parser.getgroup("secret-do")
    g.addoption("--secret-do", default="on", choices=("on", "off"))
    g.addoption("--secret-subset", default=None)
    g.addoption("--secret-scan", type=int, default=0)
    g.addoption("--secret-report", default=None)


class _State:
    def __init__(self, config):
        self.on = config.getoption("--secret-do") == "on"
        self.scan_left = config.getoption("--secret-scan")
        self.report_path = config.getoption("--secret-report")
        self.scanned = []
        self.calls = 0
        self.known = set()
        self.secret = None
        self.t0 = time.monotonic()
        self.rootdir = config.rootpath
        if self.on or self.scan_left:
            import secret
            self.secret = secret
            if self.on and not secret.supported():
                raise pytest.UsageError("--secret-do=on: this interpreter "
                                        "does not erase")


_state = None


def pytest_configure(config):
    global _state
    _state = _State(config)


def _wrap_runtest(item):
    # Items that are not test functions (PyYAML's data-file items) have
    # their own runtest(): that call is the test's.
    run = item.runtest

    def runtest():
        _state.calls += 1
        if _state.on:
            _state.secret.do(run)
        else:
            run()
    item.runtest = runtest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    for it in items:
        if not isinstance(it, pytest.Function):
            _wrap_runtest(it)
    spec = config.getoption("--secret-subset")
    if not spec:
        return
    m, n = (int(x) for x in spec.split("/"))
    keep, drop = [], []
    for it in items:
        (keep if zlib.crc32(it.nodeid.encode()) % n < m else drop).append(it)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _random(b):
    """Not a pattern that the binaries hold anyway (zeros, 00 01 02 ...):
    at least 3/4 distinct bytes, steps between them not all equal."""
    steps = {(b[i + 1] - b[i]) & 0xff for i in range(len(b) - 1)}
    return len(set(b)) * 4 >= len(b) * 3 and len(steps) > 2


def _prefill_linecache():
    # The tap reads the caller's source line inside do(): read the test
    # tree's files before, so that linecache is not filled in secret mode.
    root = str(_state.rootdir)
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f and f.startswith(root):
            linecache.getlines(f)


class _KeyTap:
    """Wraps binascii.unhexlify while a test runs: the keys it decodes,
    as the hex of their halves."""

    def __init__(self):
        self.keys = []
        self.orig = binascii.unhexlify

    def __enter__(self):
        orig, keys = self.orig, self.keys

        def unhexlify(data):
            out = orig(data)
            if 16 <= len(out) <= 64 and len(keys) < 4 and _random(out):
                f = sys._getframe(1)
                line = linecache.getline(f.f_code.co_filename, f.f_lineno)
                if "key" in line.lower():
                    half = len(out) // 2
                    keys.append(out[:half].hex() + " " + out[half:].hex())
            return out
        binascii.unhexlify = unhexlify
        return self

    def __exit__(self, *exc):
        binascii.unhexlify = self.orig


def _scan(keys):
    r = subprocess.run(
        [sys.executable, "-c", SCANNER, str(os.getpid()), HERE],
        input="\n".join(keys), capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise RuntimeError("scanner failed: " + r.stderr[-2000:])
    count, _, labels = r.stdout.strip().partition(" ")
    return int(count), labels


def _survivors_new(keep=()):
    if _state.secret is None or not _state.on:
        return []
    new = []
    for s in _state.secret.survivors(keep, referrers=1, depth=4):
        if s.address not in _state.known:
            _state.known.add(s.address)
            new.append((s.type, s.held_by[0]))
    return new


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    func = pyfuncitem.obj
    if inspect.iscoroutinefunction(func) or \
            inspect.isasyncgenfunction(func):
        return None
    args = {a: pyfuncitem.funcargs[a]
            for a in pyfuncitem._fixtureinfo.argnames}
    tap = None
    if _state.scan_left > 0:
        tap = _KeyTap()
        _prefill_linecache()
        _survivors_new()              # what earlier tests left: known
    _state.calls += 1
    try:
        if tap is not None:
            tap.__enter__()
        if _state.on:
            _state.secret.do(func, **args)
        else:
            func(**args)
    finally:
        if tap is not None:
            tap.__exit__()
            if tap.keys:
                _state.scan_left -= 1
                del args
                gc.collect()
                copies, where = _scan(tap.keys)
                _state.scanned.append({
                    "test": pyfuncitem.nodeid, "keys": len(tap.keys),
                    "copies": copies, "where": where,
                    "new_survivors": _survivors_new([tap.keys])})
                del tap.keys[:]
    return True


def pytest_sessionfinish(session, exitstatus):
    if not _state or not _state.report_path:
        return
    sc = _state.scanned
    rep = {
        "secret_do": _state.on,
        "calls": _state.calls,
        "seconds": round(time.monotonic() - _state.t0, 1),
        "scanned": len(sc),
        "keys": sum(s["keys"] for s in sc),
        "tests_with_copies": sum(1 for s in sc if s["copies"]),
        "copies": sum(s["copies"] for s in sc),
        "with_new_survivors": sum(1 for s in sc if s["new_survivors"]),
        "tests": sc,
    }
    with open(_state.report_path, "w") as f:
        json.dump(rep, f, indent=1)
