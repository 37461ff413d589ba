"""Shared by the residue scenario tests: run a matrix of scenarios with
the residue scanner (scripts/residuelib) and read its runs."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import residuelib as residue  # noqa: E402


def run_matrix(pythons, scenarios):
    """Run scenarios on pythons ([("pristine", path), ("experiment",
    path)]); return the runs by (label, scenario, mode)."""
    report = residue.run_matrix(pythons, scenarios, jobs=2)
    assert report["interpreters"]["experiment"]["has_secret"]
    assert not report["interpreters"]["pristine"]["has_secret"]
    return {(r["label"], r["scenario"], r["mode"]): r
            for r in report["runs"]}


def run(matrix, label, sc, mode):
    """One run of the matrix; a failed child fails the test, a scenario
    whose REQUIRES the interpreter lacks (gevent) skips it."""
    r = matrix[(label, sc.name, mode)]
    if r["status"] == "n/a" and r.get("missing"):
        pytest.skip("%s needs %s on %s" % (sc.name, ", ".join(r["missing"]),
                                           label))
    if r["status"] != "ok":
        pytest.fail("%s %s run of %s failed: %s\n%s"
                    % (label, mode, sc.name, r.get("error"),
                       r.get("output", "")))
    return r


def assert_control_finds(matrix, label, sc):
    """The control run proves something: it finds what the scenario
    expects to find without protection."""
    r = run(matrix, label, sc, "control")
    missing = sc.control_missing(r)
    assert not missing, "%s proves nothing on %s: no %s (found %s)" % (
        sc.name, label, ", ".join(missing), r["by_label"])


def assert_protected_clean(matrix, sc):
    """The protected run on the experiment leaves no copy anywhere."""
    r = run(matrix, "experiment", sc, "protected")
    assert r["copies"] == 0, "%d copies left: %s (forms %s)" % (
        r["copies"], r["by_label"], r["by_form"])
