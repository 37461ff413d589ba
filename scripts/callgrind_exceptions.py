#!/usr/bin/env python3
"""What the secret heap's exhaustion hooks add to exceptions outside do()
(patches 0017 and 0023: a thread-local test per traceback entry, and
take_ownership keeping a reference to the exception being raised while it
makes a frame object): instructions callgrind counts per iteration of a
loop that raises and catches two exceptions (a ValueError through two
Python frames, a KeyError from a dict), outside do():

  python3 scripts/callgrind_exceptions.py [PYTHON ...]

PYTHON: interpreters to compare (default: the installed pristine and
experiment). Each runs the loop N and 2N times; the difference divided by
N is the cost of one iteration, start-up excluded. Prints one line per
interpreter.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 20000

CHILD = r"""
import sys
def f(n):
    raise ValueError(n)
def g(n):
    return f(n)
def main(n):
    c = 0
    for i in range(n):
        try:
            g(i)
        except ValueError:
            c += 1
        try:
            {}[i]
        except KeyError:
            c += 1
    return c
main(int(sys.argv[1]))
"""


def instructions(python, n):
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         python, "-I", "-S", "-c", CHILD, str(n)],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        sys.exit("%s failed:\n%s" % (python, r.stderr[-2000:]))
    return int(m.group(1))


def main():
    pythons = sys.argv[1:] or [
        os.path.join(ROOT, "cpython-build/install", v, "bin/python3")
        for v in ("pristine", "experiment")]
    for py in pythons:
        per = (instructions(py, 2 * N) - instructions(py, N)) / N
        print("%8.1f instructions per iteration (2 exceptions)  %s"
              % (per, py))


if __name__ == "__main__":
    main()
