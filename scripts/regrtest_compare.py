#!/usr/bin/env python3
"""Run CPython's whole test suite on the pristine and the experiment
interpreters and compare: the experiment must fail nothing that pristine
passes (tests that fail on both, e.g. for want of VSOCK here, are listed)
and skip exactly what pristine skips.

  python3 scripts/regrtest_compare.py [-j 2] [--only experiment] [--in-do]
                                     [-- ARGS]

--in-do runs every test of the experiment's side inside secret.do() (each
unittest test case and doctest, its setUp and tearDown included:
scripts/regrtest_in_do/sitecustomize.py), so that CPython's own tests
exercise the secret heap, the bypassed free lists and do's exit work, not
only the ordinary paths; with a 4 GiB secret heap unless
PYTHONSECRETHEAPSIZE is set (below). Tests listed in IN_DO_BY_DESIGN fail
there on purpose and are reported, not counted.

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

# Inside do(), tests that check what secret mode changes on purpose.
IN_DO_BY_DESIGN = {
    "test_genexps": "a doctest expects the tuples a generator makes and "
                    "drops to reuse one address (the tuple free list, "
                    "which secret mode never pops)",
}
# The secret heap --in-do reserves unless PYTHONSECRETHEAPSIZE says: two
# tests need more than the default 1 GiB of live secret memory
# (test_compile's 800 000-deep expression, test_shutil's xz archives:
# about a dozen LZMA compressors of 100 MB alive at once).
IN_DO_HEAP_SIZE = "4G"


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


def run_suite(variant, jobs, extra, in_do=False):
    python = os.path.join(ROOT, "cpython-build", "install", variant, "bin",
                          "python3")
    cmd = [python, "-m", "test", "-j%d" % jobs, "--timeout=900", "--rerun",
           *extra]
    env = dict(os.environ)
    if in_do:
        env["RUNTIMESECRET_REGRTEST_IN_DO"] = "1"
        env.setdefault("PYTHONSECRETHEAPSIZE", IN_DO_HEAP_SIZE)
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(ROOT, "scripts", "regrtest_in_do")]
            + [p for p in [env.get("PYTHONPATH")] if p])
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, cwd="/tmp", env=env)
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
    ap.add_argument("--in-do", action="store_true",
                    help="run the experiment's tests inside secret.do()")
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
        in_do = a.in_do and variant == "experiment"
        lists, summary, took = run_suite(variant, a.jobs, a.extra, in_do)
        results[variant] = lists
        print("%s%s: %s; %.0f s" % (variant, " (tests inside do)" if in_do
                                    else "", " / ".join(summary), took))
        for kind, names in sorted(lists.items()):
            print("  %s (%d): %s" % (kind, len(names),
                                     " ".join(sorted(names))))
        sys.stdout.flush()
    if len(results) == 2:
        p, e = results["pristine"], results["experiment"]
        only = e.get("failed", set()) - p.get("failed", set())
        if a.in_do:
            for name in sorted(only & set(IN_DO_BY_DESIGN)):
                print("fails inside do by design: %s: %s"
                      % (name, IN_DO_BY_DESIGN[name]))
            only -= set(IN_DO_BY_DESIGN)
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
    failed = results[a.only].get("failed", set())
    if a.in_do and a.only == "experiment":
        failed = failed - set(IN_DO_BY_DESIGN)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
