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
    """One run of the matrix; a failed child fails the test."""
    r = matrix[(label, sc.name, mode)]
    if r["status"] != "ok":
        pytest.fail("%s %s run of %s failed: %s\n%s"
                    % (label, mode, sc.name, r.get("error"),
                       r.get("output", "")))
    return r
