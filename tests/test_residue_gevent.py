"""The residue scenario gevent_server_do (tests/residue/scenarios) on the
experiment interpreter of the tests' venv, which has gevent
(tests/requirements.txt): a gevent StreamServer whose handler parks in the
hub inside secret.do. Scanned through /proc/PID/mem and in a core dump:

- the control (the same handler without do) leaves copies of the key, raw
  and as its HMAC, one of them on the C stack the greenlets run on;
- the protected run leaves none, in memory or in the core.

The installed interpreters have no gevent: there tests/
test_residue_scenarios.py reports the scenario n/a (skipped).
"""

import sys

import pytest

from residue_matrix import residue

from conftest import ASAN, GREENLET_UNDER_ASAN

if ASAN:
    pytest.skip(GREENLET_UNDER_ASAN, allow_module_level=True)
pytest.importorskip("gevent")

SC, = residue.scenarios(names=["gevent_server_do"])


@pytest.fixture(scope="module")
def runs():
    return {mode: residue.run_scenario(sys.executable, SC, mode, core=True)
            for mode in ("control", "protected")}


def test_control_finds_copies_on_the_stack_and_in_the_core(runs):
    r = runs["control"]
    assert r["status"] == "ok", (r.get("error"), r.get("output"))
    assert not SC.control_missing(r), r["by_label"]
    assert r["by_form"].get("raw") and r["by_form"].get("hmac"), r["by_form"]
    assert r["by_category"].get("stack:main"), r["by_label"]
    assert r["core"]["copies"], r["core"]


def test_protected_leaves_no_copy(runs):
    r = runs["protected"]
    assert r["status"] == "ok", (r.get("error"), r.get("output"))
    assert r["copies"] == 0, (r["by_label"], r["by_form"])
    assert r["core"]["copies"] == 0, r["core"]
    assert r["core"]["registers"] == [], r["core"]["registers"]
