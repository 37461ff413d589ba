"""scripts/pytest_secret_do.py, the plugin that runs other projects' suites
with every test inside secret.do(): each test's call runs in secret mode,
outcomes are kept, and its residue check finds a key a test decoded when
the test ran plainly (the control) and none inside do()."""

import json
import os
import subprocess
import sys

from conftest import ROOT

SUITE = r'''
import binascii, os, secret, pytest

KEYFILE = os.path.join(os.path.dirname(__file__), "key.hex")

def test_in_secret_mode():
    assert secret.enabled() is ON

@pytest.mark.parametrize("n", range(3))
def test_decodes_a_key(n):
    with open(KEYFILE) as f:
        key = binascii.unhexlify(f.read().strip())
    assert len(bytes(reversed(key))) == 32

def test_fails():
    assert False

def test_skips():
    pytest.skip("skipped")

@pytest.mark.xfail
def test_xfails():
    raise ValueError

'''


def run(tmp_path, mode, *args):
    d = tmp_path / mode
    d.mkdir()
    (d / "key.hex").write_text(os.urandom(32).hex())
    (d / "test_suite.py").write_text(
        SUITE.replace("ON", "True" if mode == "on" else "False"))
    rep = d / "report.json"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "scripts"),
               MALLOC_PERTURB_="0")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "pytest_secret_do", "--secret-do=" + mode,
         "--secret-scan=3", "--secret-report", str(rep), str(d), *args],
        capture_output=True, text=True, cwd=str(d), env=env, timeout=600)
    return r, json.loads(rep.read_text())


def test_each_call_in_do_outcomes_kept_and_no_key_left(tmp_path):
    r, rep = run(tmp_path, "on")
    assert "1 failed, 4 passed, 1 skipped, 1 xfailed" in r.stdout, r.stdout
    assert rep["secret_do"] is True
    assert rep["scanned"] == 3 and rep["keys"] == 3, rep
    assert rep["copies"] == 0, rep
    assert rep["with_new_survivors"] == 0, rep


def test_control_without_do_finds_the_key(tmp_path):
    r, rep = run(tmp_path, "off")
    assert "1 failed, 4 passed, 1 skipped, 1 xfailed" in r.stdout, r.stdout
    assert rep["secret_do"] is False
    assert rep["scanned"] == 3 and rep["keys"] == 3, rep
    assert rep["copies"] > 0, rep


def test_subset_is_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    r1, _ = run(tmp_path / "a", "on", "--secret-subset=1/2", "--co")
    r2, _ = run(tmp_path / "a", "off", "--secret-subset=1/2", "--co")
    sel = [line for line in r1.stdout.splitlines() if "::" in line]
    assert sel and sel == [line for line in r2.stdout.splitlines()
                           if "::" in line]
    assert "deselected" in r1.stdout, r1.stdout
