"""Residue scenarios of the second attack's leaks (tests/residue/issue26),
scanned through /proc/PID/mem like every residue scenario:

- pool_idle: a ThreadPoolExecutor made in do() signs with the key (HMAC)
  and stays alive, its worker idle on the pool's queue (patch 0028);
- load_cert_ed25519, load_cert_p256: SSLContext.load_cert_chain() with
  the secret as the private key (OpenSSL's memory, the C FILE buffer);
- syntax_error_file: a SyntaxError in a module on disk (its line read
  again through C stdio);
- listdir_names: a file named after the secret listed by os.listdir()
  and os.scandir() (the C library's directory buffer).

Each control run (pristine, and the experiment without do()) finds
copies; each protected run on the experiment finds none. pool_idle's
second control is pool_idle_unerased: the same in do() with the idle
points' erasure turned off (_testsecret) finds the worker's stack copy
that the erasure removes.
"""

import os

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import (residue, run_matrix, assert_control_finds,
                              assert_protected_clean)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residue",
                    "issue26")
NAMES = ["listdir_names", "load_cert_ed25519", "load_cert_p256",
         "pool_idle", "syntax_error_file"]
SCENARIOS = residue.scenarios(HERE, NAMES)


@pytest.fixture(scope="module")
def matrix():
    return run_matrix([("pristine", interpreter("pristine")),
                       ("experiment", interpreter(EXPERIMENT))], SCENARIOS)


def test_there_are_scenarios():
    assert sorted(sc.name for sc in residue.scenarios(HERE)) == sorted(
        NAMES + ["pool_idle_unerased"])


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
@pytest.mark.parametrize("label", ["pristine", "experiment"])
def test_control_finds_copies(matrix, sc, label):
    assert_control_finds(matrix, label, sc)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_protected_leaves_no_copy(matrix, sc):
    assert_protected_clean(matrix, sc)


def test_idle_worker_keeps_a_copy_without_the_erasure():
    """The control of pool_idle in do(): with the idle points' erasure off,
    the idle worker's stack holds the tag or the key."""
    sc = residue.scenarios(HERE, ["pool_idle_unerased"])
    report = residue.run_matrix([("experiment", interpreter(EXPERIMENT))],
                                sc, modes=("protected",), jobs=1)
    r = report["runs"][0]
    assert r["status"] == "ok", r.get("error")
    assert r["by_category"].get("stack:thread"), (
        "no copy on the worker's stack: %s" % r["by_label"])
