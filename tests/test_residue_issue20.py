"""Residue scenarios of issue 20 (tests/residue/issue20): caches made before
do() (urlsplit, re, a user's lru_cache), an exception kept by the caller,
and frames of an exception kept elsewhere (a logging record; the key in a
closure, a default argument or a plain local; a sampling profiler's
thread: the attack review's F1 and F1b), scanned through /proc/PID/mem
like every residue scenario:

- each control run (pristine, and the experiment without do()) finds
  copies of the secret;
- each protected run on the experiment finds none.
"""

import os

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import (residue, run_matrix, assert_control_finds,
                              assert_protected_clean)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residue",
                    "issue20")
SCENARIOS = residue.scenarios(HERE)


@pytest.fixture(scope="module")
def matrix():
    return run_matrix([("pristine", interpreter("pristine")),
                       ("experiment", interpreter(EXPERIMENT))], SCENARIOS)


def test_there_are_scenarios():
    assert sorted(sc.name for sc in SCENARIOS) == [
        "exc_closure_kept", "exc_default_kept", "exc_kept",
        "exc_plain_kept", "exc_profiler_kept", "lru_user", "re_pattern",
        "urlsplit_dsn"]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
@pytest.mark.parametrize("label", ["pristine", "experiment"])
def test_control_finds_copies(matrix, sc, label):
    assert_control_finds(matrix, label, sc)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_protected_leaves_no_copy(matrix, sc):
    assert_protected_clean(matrix, sc)
