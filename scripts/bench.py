#!/usr/bin/env python3
"""What secret.do and the experiment cost (spec §4): one command, a
subcommand a measurement. Wall clock, with pyperf, on the experiment
interpreter's bench venv (cpython-build/venv/bench, made the first time):

  bench.py do [OUT.json] [pyperf options]       secret.do()'s own cost
  bench.py inside [OUT.json] [pyperf options]   work in do vs outside
  bench.py exit-gc [OUT.json] [pyperf options]  the exit collection
  bench.py async [OUT.json] [pyperf options]    a do_async() step
  bench.py report OUT.json                      the table of a run

pyperformance, interpreter copies under cpython-build/bench:

  bench.py pyperformance [--kind heap|heap-opt|layout|in-do] [--passes N]
                         [--benchmarks LIST] [--out DIR] [--compare-only]

Instruction counts, valgrind's callgrind (exact and repeatable):

  bench.py callgrind alloc [OUTDIR]
  bench.py callgrind in-do [PYTHON ...] [--works LIST]
  bench.py callgrind caches [LABEL=PYTHON ...] [--works LIST]
  bench.py callgrind native [LABEL=PYTHON ...] [--works LIST]
  bench.py callgrind adaptive [LABEL=PYTHON ...] [--works LIST]
  bench.py callgrind io [LABEL=PYTHON ...] [--no-do] [--works LIST]
  bench.py callgrind thread-end [PYTHON ...]
  bench.py callgrind locks [PYTHON ...]
  bench.py callgrind greenlet [PYTHON ...]
  bench.py callgrind exceptions [PYTHON ...]
  bench.py callgrind do-exit [PYTHON ...]
  bench.py callgrind exit-gc [PYTHON]
  bench.py callgrind pyperformance [--sim] [--off|--installed|--opt|
                                   --shifted] [BENCHMARKS ...]

Interpreters are the installed ones (cpython-build/install/VARIANT); a
missing one is an error that says how to build it. `bench.py SUBCOMMAND
-h` says more; the code is in scripts/benchlib. Runs with Python 3.11+.
Nothing is asserted: the numbers are for people to read, and go into
docs with the command that made them.
"""

import argparse
import ast
import os
import subprocess
import sys

from benchlib import callgrind, callgrind_pyperformance, common, report
from benchlib import pyperformance_run

# Subcommands that run a pyperf script: (script, default OUT, then the
# table of `report`). Their arguments after OUT are pyperf's.
PYPERF = {"do": ("do_cost.py", "bench-do.json", True),
          "inside": ("inside.py", "bench-heap-inside.json", False),
          "exit-gc": ("exit_gc.py", "bench-exit-gc.json", True),
          "async": ("async_cost.py", "bench-async.json", True)}


def first_line(module):
    return module.__doc__.strip().split("\n\n")[0]


def script_doc(script):
    """The docstring of a pyperf script, read, not imported: it imports
    pyperf and secret, which only the bench venv has."""
    with open(os.path.join(common.HERE, script)) as f:
        return ast.get_docstring(ast.parse(f.read()))


def parser():
    ap = argparse.ArgumentParser(
        prog="bench.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True,
                            metavar="SUBCOMMAND")
    for name, (script, out, _) in PYPERF.items():
        sub.add_parser(
            name, allow_abbrev=False,
            usage="bench.py %s [OUT.json] [pyperf options]" % name,
            help=script_doc(script).split("\n")[0].rstrip(":"),
            description="%s\n\nOUT.json (default %s) is written anew;\n"
            "every other argument goes to pyperf (e.g. --fast, --rigorous,\n"
            "-p N, --values N, --loops N)." % (script_doc(script), out),
            formatter_class=argparse.RawDescriptionHelpFormatter)
    p = sub.add_parser("report", help="the table of a do, exit-gc or async run",
                       description=first_line(report))
    p.add_argument("json", metavar="OUT.json")
    p = sub.add_parser("pyperformance", help="pyperformance comparisons",
                       description=pyperformance_run.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(pyperformance_run.KINDS),
                   default="heap")
    p.add_argument("--passes", type=int, default=3,
                   help="passes per side (default 3)")
    p.add_argument("--benchmarks",
                   help="comma-separated (default: the kind's subset)")
    p.add_argument("--out", default=os.path.join(common.ROOT, "docs", "bench"),
                   help="where the run's report (pyperformance-KIND.md, "
                   ".json) goes (default docs/bench)")
    p.add_argument("--compare-only", action="store_true",
                   help="rewrite the report from the last run's files")
    p = sub.add_parser("callgrind", help="instruction counts",
                       description=callgrind.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    works = p.add_subparsers(dest="work", required=True, metavar="WORK")
    w = works.add_parser("alloc", help="allocation loop, in and out of do",
                         description=callgrind.alloc.__doc__)
    w.add_argument("outdir", nargs="?", default="/tmp/callgrind-alloc",
                   metavar="OUTDIR",
                   help="callgrind files and counts (default %(default)s)")
    w = works.add_parser("in-do", help="issue 4's works, in do / outside",
                         description=callgrind.in_do.__doc__)
    w.add_argument("pythons", nargs="*", metavar="PYTHON",
                   help="experiment interpreters (default: the installed)")
    add_works(w, callgrind.IN_DO_WORKS)
    w = works.add_parser("caches", help="cache-heavy loops outside do",
                         description=callgrind.caches.__doc__)
    w.add_argument("pythons", nargs="*", metavar="LABEL=PYTHON")
    add_works(w, callgrind.CACHES_WORKS)
    w = works.add_parser("adaptive",
                         help="adaptive interpreter paths (patch 0023)",
                         description=callgrind.adaptive.__doc__)
    w.add_argument("pythons", nargs="*", metavar="LABEL=PYTHON")
    add_works(w, callgrind.ADAPTIVE_WORKS)
    w = works.add_parser("io", help="buffered and text I/O",
                         description=callgrind.io.__doc__)
    w.add_argument("pythons", nargs="*", metavar="LABEL=PYTHON")
    w.add_argument("--no-do", action="store_true",
                   help="outside do() only")
    add_works(w, callgrind.IO_WORKS)
    w = works.add_parser("thread-end", help="the heap's part of a thread end",
                         description=callgrind.thread_end.__doc__)
    w.add_argument("pythons", nargs="*", metavar="PYTHON",
                   help="experiment interpreters (default: the installed)")
    w = works.add_parser("locks", help="lock waits outside do (patch 0028)",
                         description=callgrind.locks.__doc__)
    w.add_argument("pythons", nargs="*", metavar="PYTHON",
                   help="interpreters (default: the installed pristine and "
                   "experiment)")
    w = works.add_parser("greenlet",
                         help="do() and greenlet switches, greenlet loaded",
                         description=callgrind.greenlet.__doc__)
    w.add_argument("pythons", nargs="*", metavar="PYTHON",
                   help="experiment interpreters with greenlet (default: "
                   "the test venv's)")
    w = works.add_parser("exceptions",
                         help="raising and catching outside do",
                         description=callgrind.exceptions.__doc__)
    w.add_argument("pythons", nargs="*", metavar="PYTHON",
                   help="interpreters (default: the installed pristine and "
                   "experiment)")
    w = works.add_parser("native", help="malloc-heavy works (issue 23)",
                         description=callgrind.native.__doc__)
    w.add_argument("pythons", nargs="*", metavar="LABEL=PYTHON")
    add_works(w, callgrind.NATIVE_DEFAULT)
    w = works.add_parser("do-exit",
                         help="secret.do() returning and raising",
                         description=callgrind.do_exit.__doc__)
    w.add_argument("pythons", nargs="*", metavar="PYTHON",
                   help="experiment interpreters (default: the installed)")
    w = works.add_parser("exit-gc", help="the exit collection",
                         description=callgrind.exit_gc.__doc__)
    w.add_argument("python", nargs="?", metavar="PYTHON",
                   help="an experiment interpreter (default: the installed)")
    w = works.add_parser(
        "pyperformance", help="pyperformance, pristine vs experiment",
        description=callgrind_pyperformance.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--sim", action="store_true",
                   help="simulate caches and branch prediction too")
    sides = w.add_mutually_exclusive_group()
    for side in ("off", "installed", "opt", "shifted"):
        sides.add_argument("--" + side, dest="sides", action="store_const",
                           const=side)
    sides.add_argument("--pair", nargs=2, metavar="LABEL=PYTHON",
                       help="two interpreters by path (e.g. two worktrees' "
                       "experiment builds), the first the reference")
    w.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                   help="name:directory[:arguments,comma-separated]")
    return ap


def add_works(p, names):
    p.add_argument("-w", "--works", default=",".join(names),
                   help="comma-separated, of: %(default)s")


def works(p, a, names):
    chosen = a.works.split(",")
    unknown = [w for w in chosen if w not in names]
    if unknown:
        p.error("no such work: %s (have: %s)" % (", ".join(unknown),
                                                  ", ".join(names)))
    return chosen


def run_pyperf(command, args):
    """A pyperf script in the bench venv, OUT written anew; then, for do
    and exit-gc, the table."""
    script, out, table = PYPERF[command]
    if args and not args[0].startswith("-"):
        out, args = args[0], args[1:]
    py = common.bench_venv()
    if os.path.exists(out):
        os.remove(out)
    r = subprocess.run([py, os.path.join(common.HERE, script), "-o", out,
                        *args])
    if r.returncode:
        return r.returncode
    if table:
        print(report.do_table(out))
    return 0


def main(argv=None):
    ap = parser()
    a, rest = ap.parse_known_args(argv)
    if a.command in PYPERF:
        return run_pyperf(a.command, rest)
    if rest:
        ap.error("unrecognized arguments: " + " ".join(rest))
    if a.command == "report":
        print(report.do_table(a.json))
    elif a.command == "pyperformance":
        if a.passes < 1:
            ap.error("--passes must be at least 1")
        pyperformance_run.main(a)
    elif a.work == "alloc":
        callgrind.alloc(a.outdir)
    elif a.work == "in-do":
        callgrind.in_do(a.pythons, works(ap, a, callgrind.IN_DO_WORKS))
    elif a.work == "caches":
        pythons = [p.split("=", 1) for p in a.pythons]
        if any(len(p) != 2 for p in pythons):
            ap.error("caches takes LABEL=PYTHON")
        callgrind.caches(pythons, works(ap, a, callgrind.CACHES_WORKS))
    elif a.work == "adaptive":
        pythons = [p.split("=", 1) for p in a.pythons]
        if any(len(p) != 2 for p in pythons):
            ap.error("adaptive takes LABEL=PYTHON")
        callgrind.adaptive(pythons, works(ap, a, callgrind.ADAPTIVE_WORKS))
    elif a.work == "io":
        pythons = [p.split("=", 1) for p in a.pythons]
        if any(len(p) != 2 for p in pythons):
            ap.error("io takes LABEL=PYTHON")
        callgrind.io(pythons, works(ap, a, callgrind.IO_WORKS),
                     in_do=not a.no_do)
    elif a.work == "thread-end":
        callgrind.thread_end(a.pythons)
    elif a.work == "locks":
        callgrind.locks(a.pythons)
    elif a.work == "greenlet":
        callgrind.greenlet(a.pythons)
    elif a.work == "exceptions":
        callgrind.exceptions(a.pythons)
    elif a.work == "native":
        pythons = [p.split("=", 1) for p in a.pythons]
        if any(len(p) != 2 for p in pythons):
            ap.error("native takes LABEL=PYTHON")
        callgrind.native(pythons,
                         works(ap, a, tuple(callgrind.NATIVE_WORKS)))
    elif a.work == "do-exit":
        callgrind.do_exit(a.pythons)
    elif a.work == "exit-gc":
        callgrind.exit_gc(a.python)
    elif a.work == "pyperformance":
        pair = None
        if a.pair:
            pair = [p.split("=", 1) for p in a.pair]
            if any(len(p) != 2 for p in pair):
                ap.error("--pair takes LABEL=PYTHON LABEL=PYTHON")
        callgrind_pyperformance.main(a.sides, a.sim, a.benchmarks, pair)
    return 0


if __name__ == "__main__":
    sys.exit(main())
