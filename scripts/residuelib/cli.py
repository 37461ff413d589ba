"""Residue scanner: look for a secret where an attacker would (spec §5).

The command line (scripts/residue.py is its entry point):

  residue.py [-s NAME[,NAME...]] [--python LABEL=PATH ...] [--core]
             [--json FILE|-] [--plot FILE.png] [-j N]

By default it runs every scenario in tests/residue/scenarios on the
pristine and the experiment interpreters of cpython-build/install:
control (no secret.do) on both, protected (inside secret.do) on those that
have the `secret` module. docs/residue.md explains the output.
"""

import argparse
import json
import os
import sys

from .matrix import run_matrix
from .paths import DEFAULT_PYTHONS, SCENARIO_DIR
from .report import _cell, plot, table
from .scenario import scenarios

def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--scenario", action="append", default=[],
                    help="scenario name(s), comma-separated (default: all)")
    ap.add_argument("--python", action="append", default=[],
                    metavar="LABEL=PATH",
                    help="interpreter to run (repeatable; default: the "
                         "installed pristine and experiment)")
    ap.add_argument("--mode", default="control,protected",
                    help="modes to run (default: control,protected)")
    ap.add_argument("--core", action="store_true",
                    help="also take a core with gcore and scan it "
                         "(memory and registers)")
    ap.add_argument("--json", metavar="FILE",
                    help="write the report as JSON (- for stdout)")
    ap.add_argument("--plot", metavar="FILE.png",
                    help="draw copies per scenario (needs matplotlib)")
    ap.add_argument("-j", "--jobs", type=int, default=2,
                    help="runs in parallel (default 2)")
    ap.add_argument("--secret-length", type=int, default=32)
    ap.add_argument("--scenario-dir", default=SCENARIO_DIR)
    ap.add_argument("--list", action="store_true",
                    help="list the scenarios and exit")
    a = ap.parse_args(argv)

    names = [n for s in a.scenario for n in s.split(",") if n]
    scs = scenarios(a.scenario_dir, names)
    if a.list:
        for sc in scs:
            print("%-20s %s" % (sc.name, sc.title))
        return 0
    pythons = []
    for spec in a.python:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.basename(os.path.dirname(
                os.path.dirname(spec))) or spec, spec
        pythons.append((label, os.path.abspath(path)))
    if not pythons:
        pythons = [(lab, p) for lab, p in DEFAULT_PYTHONS
                   if os.path.exists(p)]
    if not pythons:
        ap.error("no interpreter: build them (./run build) or use --python")
    if a.plot:
        try:
            import matplotlib  # noqa: F401  (fail before the long run)
        except ImportError:
            ap.error("--plot needs matplotlib: run with the tools venv, "
                     "cpython-build/venv/tools/bin/python")
    quiet = a.json == "-"

    def progress(rec):
        if not quiet:
            print("  %-11s %-9s %-20s %s" % (rec["label"], rec["mode"],
                                             rec["scenario"], _cell(rec)),
                  file=sys.stderr, flush=True)

    report = run_matrix(pythons, scs, modes=tuple(a.mode.split(",")),
                        jobs=a.jobs, core=a.core,
                        secret_len=a.secret_length, progress=progress)
    if a.json:
        text = json.dumps(report, indent=1, sort_keys=False)
        if a.json == "-":
            print(text)
        else:
            with open(a.json, "w") as f:
                f.write(text + "\n")
    if not quiet:
        print(table(report))
        print("(%d runs in %.1f s)"
              % (len(report["runs"]), report["seconds"]))
    if a.plot:
        plot(report, a.plot)
    bad = [r for r in report["runs"] if r.get("status") == "error"]
    for r in bad:
        print("error: %s %s %s:\n%s%s" % (r["label"], r["scenario"],
                                          r["mode"], r.get("error") or "",
                                          r.get("output") or ""),
              file=sys.stderr)
    return 1 if bad else 0
