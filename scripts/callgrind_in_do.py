#!/usr/bin/env python3
"""Instructions of work inside secret.do() over the same work outside it
(valgrind --tool=callgrind, PYTHONHASHSEED=0), for the works of issue 4's
inside-do bounds and a float loop:

  python3 scripts/callgrind_in_do.py [PYTHON ...]

PYTHON: experiment interpreters to compare (default: cpython-build/install/
experiment/bin/python3; a build tree's ./python works too). Each work runs
10 times, plainly and through do; a run of 0 times is subtracted, so start-up
and imports are left out. Prints one line per work and interpreter.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[4])
import secret
from heap_works import j, d, grow, float_loop
work = {"json": j, "dict": d, "bytearray256": grow(256),
        "float": float_loop}[sys.argv[1]]
if not secret.supported():
    sys.exit("secret.do() would not erase here: nothing to measure")
for _ in range(int(sys.argv[3])):
    secret.do(work) if sys.argv[2] == "do" else work()
"""

WORKS = ("json", "dict", "bytearray256", "float")


def instructions(python, child, *args):
    """Instructions callgrind counts for `python -S -c child args`
    (PYTHONHASHSEED=0, so the counts repeat); exits on a failure."""
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         python, "-S", "-c", child, *args],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        sys.exit("%s %s failed:\n%s" % (python, args, r.stderr[-2000:]))
    return int(m.group(1))


def count(python, *args):
    return instructions(python, CHILD, *args, os.path.join(ROOT, "scripts"))


def main():
    pythons = sys.argv[1:] or [
        os.path.join(ROOT, "cpython-build/install/experiment/bin/python3")]
    for py in pythons:
        for w in WORKS:
            n = {m: count(py, w, m, "10") - count(py, w, m, "0")
                 for m in ("plain", "do")}
            print("%s %s: plain %d, do %d, do/plain %.3f"
                  % (py, w, n["plain"], n["do"], n["do"] / n["plain"]))


if __name__ == "__main__":
    main()
