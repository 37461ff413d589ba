"""Waits of a thread started in do() that the review of the idle points
found outside the first hooks (tests/residue/idle_waits): a blocking
PyThread lock of C code (_io's buffered lock), now erased; and
multiprocessing's SemLock, not erased yet (a strict expected failure that
turns into a pass when it is). Each control (pristine, and the experiment
without do()) finds the tag on the waiting thread's stack."""

import os

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import (residue, run, run_matrix, assert_control_finds,
                            assert_protected_clean)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residue",
                    "idle_waits")
SCENARIOS = residue.scenarios(HERE)
BY_NAME = {sc.name: sc for sc in SCENARIOS}


@pytest.fixture(scope="module")
def matrix():
    return run_matrix([("pristine", interpreter("pristine")),
                       ("experiment", interpreter(EXPERIMENT))], SCENARIOS)


def test_there_are_scenarios():
    assert sorted(BY_NAME) == ["buffered_lock", "mp_lock"]


@pytest.mark.parametrize("name", ["buffered_lock", "mp_lock"])
@pytest.mark.parametrize("label", ["pristine", "experiment"])
def test_control_finds_copies(matrix, name, label):
    assert_control_finds(matrix, label, BY_NAME[name])


def test_buffered_lock_wait_erased(matrix):
    assert_protected_clean(matrix, BY_NAME["buffered_lock"])


@pytest.mark.xfail(strict=True, reason="multiprocessing's SemLock waits in "
                   "its own sem_wait, which no idle point hooks yet")
def test_multiprocessing_lock_wait_erased(matrix):
    r = run(matrix, "experiment", BY_NAME["mp_lock"], "protected")
    assert r["copies"] == 0, r["by_label"]
