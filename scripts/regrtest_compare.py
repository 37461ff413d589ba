#!/usr/bin/env python3
"""Run CPython's whole test suite on the pristine and the experiment
interpreters and compare: the experiment must fail nothing that pristine
passes (tests that fail on both, e.g. for want of VSOCK here, are listed)
and skip exactly what pristine skips.

  python3 scripts/regrtest_compare.py [-j 2] [--only experiment] [-- ARGS]

Takes about 10 minutes per interpreter on 2 cores. Exit status 1 if a test
fails on the experiment only, or the two skip different tests.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_lists(out):
    # Result lists: "N tests failed:", "N tests skipped:", "N tests skipped
    # (resource denied):", ... (or "1 test ...") then indented names.
    lists = {}
    for m in re.finditer(r"^\d+ tests? (.*?):\n((?:    .*\n)+)", out,
                         re.M):
        lists.setdefault(m.group(1), set()).update(m.group(2).split())
    return lists


def parse_output(out):
    # With --rerun, regrtest prints its result lists twice: after the first
    # run, and after "Re-running N failed tests" (where "failed" are only
    # the tests that failed again). The final lists are the verdict; a test
    # that failed at first and passed on re-run is reported as "flaky".
    marks = list(re.finditer(r"Re-running \d+ failed tests?", out))
    if not marks:
        return parse_lists(out)
    first, final = out[:marks[-1].start()], out[marks[-1].start():]
    lists = parse_lists(final)
    failed = lists.get("failed", set())
    flaky = parse_lists(first).get("failed", set()) - failed
    if flaky:
        lists["flaky"] = flaky
    return lists


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
    lists = parse_output(out)
    summary = [line for line in out.splitlines()
               if line.startswith(("Total tests:", "Result:"))]
    if not summary:
        sys.exit("%s: no regrtest summary; its output ends:\n%s"
                 % (variant, out[-3000:]))
    return lists, summary, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--only", choices=("pristine", "experiment"))
    ap.add_argument("extra", nargs="*", help="more regrtest arguments")
    a = ap.parse_args()
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # A background job of a non-interactive shell starts with SIGINT
        # ignored, and exec passes that on: CPython's tests of
        # KeyboardInterrupt (test_signal, test_threading, asyncio's
        # runners...) then fail or spin forever. A handler is reset to the
        # default by exec.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    results = {}
    for variant in ("pristine", "experiment"):
        if a.only and a.only != variant:
            continue
        lists, summary, took = run_suite(variant, a.jobs, a.extra)
        results[variant] = lists
        print("%s: %s; %.0f s" % (variant, " / ".join(summary), took))
        for kind, names in sorted(lists.items()):
            print("  %s (%d): %s" % (kind, len(names),
                                     " ".join(sorted(names))))
        sys.stdout.flush()
    if len(results) == 2:
        p, e = results["pristine"], results["experiment"]
        only = e.get("failed", set()) - p.get("failed", set())
        print("fail on the experiment only: %s"
              % (" ".join(sorted(only)) or "none"))
        # Information, not a verdict: a first-run failure that passed on
        # re-run (alone, in a fresh process) is usually load or timing.
        flaky = e.get("flaky", set()) - p.get("flaky", set())
        print("failed at first, passed on re-run, on the experiment only: %s"
              % (" ".join(sorted(flaky)) or "none"))
        bad = bool(only)
        for kind in sorted(k for k in set(p) | set(e) if "skipped" in k):
            diff = p.get(kind, set()) ^ e.get(kind, set())
            print("%s on one only: %s" % (kind, " ".join(
                "%s (%s)" % (t, "pristine" if t in p.get(kind, ()) else
                             "experiment") for t in sorted(diff))
                or "none"))
            bad = bad or bool(diff)
        return 1 if bad else 0
    return 1 if results[a.only].get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
