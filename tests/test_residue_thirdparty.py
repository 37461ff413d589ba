"""The residue scenarios of tests/residue/thirdparty: key operations of the
`cryptography` package (upstream abi3 wheels, Rust and OpenSSL inside) as a
service runs them, scanned through /proc/PID/mem on venvs of the installed
pristine and experiment interpreters.

- each control run on pristine finds copies of the forms and in the places
  the scenario declares (else the scenario proves nothing);
- each protected run on the experiment finds none: neither the Python
  objects nor what the library's native code left on the stack.
"""

import os
import subprocess

import pytest

from conftest import EXPERIMENT, interpreter
from residue_matrix import residue, run, run_matrix

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "residue",
                    "thirdparty")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
SCENARIOS = residue.scenarios(HERE)


def make_venv(base, dest):
    """A venv of the installed interpreter base with the scenarios'
    packages, binary wheels only (the ones users get from PyPI)."""
    subprocess.run([base, "-m", "venv", str(dest)], check=True)
    py = str(dest / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "--only-binary=:all:",
                    "-r", REQUIREMENTS], check=True)
    return py


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    d = tmp_path_factory.mktemp("thirdparty")
    pythons = [("pristine", make_venv(interpreter("pristine"),
                                      d / "pristine")),
               ("experiment", make_venv(interpreter(EXPERIMENT),
                                        d / "experiment"))]
    return run_matrix(pythons, SCENARIOS)


def test_there_are_scenarios():
    assert len(SCENARIOS) >= 4, [sc.name for sc in SCENARIOS]


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_control_on_pristine_finds_copies(matrix, sc):
    r = run(matrix, "pristine", sc, "control")
    missing = sc.control_missing(r)
    assert not missing, "%s proves nothing: no %s (found %s)" % (
        sc.name, ", ".join(missing), r["by_label"])


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_protected_on_experiment_leaves_no_copy(matrix, sc):
    control = run(matrix, "experiment", sc, "control")
    assert not sc.control_missing(control), \
        "the experiment's control run of %s proves nothing: %s" % (
            sc.name, control["by_label"])
    r = run(matrix, "experiment", sc, "protected")
    assert r["copies"] == 0, "%d copies left: %s (forms %s)" % (
        r["copies"], r["by_label"], r["by_form"])
