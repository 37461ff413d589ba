#!/usr/bin/env python3
"""The collection at the outermost do() exit costs in proportion to what
func made, not to the heap (spec §4): a process holds HOLD objects (3
million lists), func makes 30,000 lists; plain against through secret.do.

  scripts/bench.sh exit-gc [OUT.json] [pyperf options]   # wall clock, pyperf
  python3 scripts/bench_exit_gc.py --callgrind [PYTHON]  # instructions

The 30,000 allocations trigger generation-0 and generation-1 collections
inside func, which promote func's objects to the oldest generation; before
the exit collection learned to take back only that generation's tail, it
collected all of it (issue 20: 4.8 ms plain, 194 ms in do).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = 3_000_000
MAKE = 30_000

CHILD = r"""
import gc, sys, secret
hold = [[] for _ in range(%d)]
gc.collect()
def func():
    x = [[i] for i in range(%d)]
    return len(x)
do = sys.argv[1] == "do"
for _ in range(int(sys.argv[2])):
    secret.do(func) if do else func()
""" % (HOLD, MAKE)


def instructions(python, mode, n):
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         python, "-S", "-c", CHILD, mode, str(n)],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        sys.exit("%s %s %d failed:\n%s" % (python, mode, n, r.stderr[-2000:]))
    return int(m.group(1))


def callgrind(python):
    per = {}
    for mode in ("plain", "do"):
        per[mode] = (instructions(python, mode, 5)
                     - instructions(python, mode, 0)) / 5
    print("holding %d lists, func makes %d: plain %.0f, do %.0f "
          "instructions per call (%.2fx)"
          % (HOLD, MAKE, per["plain"], per["do"], per["do"] / per["plain"]))


def pyperf_main():
    import gc
    import time

    import pyperf

    import secret

    hold = [[] for _ in range(HOLD)]
    gc.collect()

    def func():
        x = [[i] for i in range(MAKE)]
        return len(x)

    def timed(f):
        def time_func(loops):
            t0 = time.perf_counter()
            for _ in range(loops):
                f()
            return time.perf_counter() - t0
        return time_func

    runner = pyperf.Runner()
    runner.metadata["description"] = (
        "exit collection: %d lists held, func makes %d" % (HOLD, MAKE))
    runner.bench_time_func("make-30k", timed(func))
    runner.bench_time_func("do(make-30k)",
                           timed(lambda: secret.do(func)))
    del hold


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--callgrind":
        callgrind(sys.argv[2] if len(sys.argv) > 2 else os.path.join(
            ROOT, "cpython-build/install/experiment/bin/python3"))
    else:
        pyperf_main()
