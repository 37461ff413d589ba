"""Residue scenarios that attack the file-object hooks (patches 0014 and
0027; tests/residue/io): a pending text list made before do(), a file open
for update written and read back across pending writes, lines read in do()
while another thread flushes the same file object, raw streams that write
short, would block, or fail in the middle of a line. Scanned through
/proc/PID/mem like every residue scenario (the secret heap included: a
protected run must leave no copy anywhere):

- each control run (pristine, and the experiment without do()) finds
  copies of the secret;
- each protected run on the experiment finds none.

tests/test_io_attack.py looks into the buffers themselves.
"""

import os

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import (residue, run_matrix, assert_control_finds,
                              assert_protected_clean)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residue",
                    "io")
SCENARIOS = residue.scenarios(HERE)


@pytest.fixture(scope="module")
def matrix():
    return run_matrix([("pristine", interpreter("pristine")),
                       ("experiment", interpreter(EXPERIMENT))], SCENARIOS)


def test_there_are_scenarios():
    assert sorted(sc.name for sc in SCENARIOS) == [
        "random_rw", "reader_error", "text_list_before", "threads_flush",
        "writer_blocked", "writer_short"]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
@pytest.mark.parametrize("label", ["pristine", "experiment"])
def test_control_finds_copies(matrix, sc, label):
    assert_control_finds(matrix, label, sc)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_protected_leaves_no_copy(matrix, sc):
    assert_protected_clean(matrix, sc)
