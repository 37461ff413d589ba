#!/usr/bin/env python3
"""Run CPython's whole test suite on the pristine and the experiment
interpreters and compare: the experiment must fail nothing that pristine
passes (tests that fail on both, e.g. for want of VSOCK here, are listed).

  python3 scripts/regrtest_compare.py [-j 2] [--only experiment] [-- ARGS]

Takes about 7 minutes per interpreter on 2 cores. Exit status 1 if a test
fails on the experiment only.
"""

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_suite(variant, jobs, extra):
    python = os.path.join(ROOT, "cpython-build", "install", variant, "bin",
                          "python3")
    cmd = [python, "-m", "test", "-j%d" % jobs, "--timeout=900", "--rerun",
           *extra]
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, cwd="/tmp")
    took = time.monotonic() - t0
    out = r.stdout
    failed = set()
    # "N tests failed:" (or "N test failed:") then indented names.
    for m in re.finditer(r"^\d+ tests? failed.*:\n((?:    .*\n)+)", out, re.M):
        failed.update(m.group(1).split())
    summary = [l for l in out.splitlines()
               if l.startswith(("Total tests:", "Result:"))]
    return failed, summary, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", choices=("pristine", "experiment"))
    ap.add_argument("extra", nargs="*", help="more regrtest arguments")
    a = ap.parse_args()
    results = {}
    for variant in ("pristine", "experiment"):
        if a.only and a.only != variant:
            continue
        failed, summary, took = run_suite(variant, a.jobs, a.extra)
        results[variant] = failed
        print("%s: %s; %.0f s; failed: %s"
              % (variant, " / ".join(summary), took,
                 " ".join(sorted(failed)) or "none"), flush=True)
    if len(results) == 2:
        only = results["experiment"] - results["pristine"]
        print("fail on the experiment only: %s"
              % (" ".join(sorted(only)) or "none"))
        return 1 if only else 0
    return 1 if results.get(a.only) else 0


if __name__ == "__main__":
    sys.exit(main())
