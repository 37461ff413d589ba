"""Objects made before do() and fed the secret inside it
(tests/residue/made_before): a documented limitation (spec §3.5,
docs/limitations.md), measured with the residue scanner so that the
counts the docs give stay true.

- each control run (pristine, and the experiment without do()) finds
  copies;
- each protected run on the experiment finds the copies the docs list
  (LEFT: what an object made before do() keeps), and none where the
  object is made in do() (shelve_in_do).
"""

import os

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import residue, run, run_matrix, assert_control_finds

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residue",
                    "made_before")
SCENARIOS = residue.scenarios(HERE)
# Scenario: (fewest, most) copies a protected run finds (docs/limitations.md).
LEFT = {
    "bytesio_presized": (1, 1),     # its buffer, [heap]
    "compressor": (1, 1),           # zlib's window, [heap]
    "csv_reader": (1, 1),           # the field buffer (UCS-4), [heap]
    "csv_writer": (1, 2),           # the record buffer; the file's, secret
    "hash_object": (1, 1),          # OpenSSL's partial block, [heap]
    "logging_queue": (1, 8),        # the listener thread's record, message
    "scandir_before": (0, 1),       # glibc's buffer: none found (measured)
    "shelve_before": (1, 6),        # sqlite's page cache
    "shelve_in_do": (0, 0),         # made in do(): none
    "sslcontext_before": (1, 1),    # the key, alive in the kept context
}

@pytest.fixture(scope="module")
def matrix():
    return run_matrix([("pristine", interpreter("pristine")),
                       ("experiment", interpreter(EXPERIMENT))], SCENARIOS)


def test_there_are_scenarios():
    assert sorted(sc.name for sc in SCENARIOS) == sorted(LEFT)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
@pytest.mark.parametrize("label", ["pristine", "experiment"])
def test_control_finds_copies(matrix, sc, label):
    assert_control_finds(matrix, label, sc)


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_protected_leaves_what_the_docs_say(matrix, sc):
    r = run(matrix, "experiment", sc, "protected")
    lo, hi = LEFT[sc.name]
    assert lo <= r["copies"] <= hi, (
        "%s: %d copies (%s), docs/limitations.md says %d-%d"
        % (sc.name, r["copies"], r["by_label"], lo, hi))
