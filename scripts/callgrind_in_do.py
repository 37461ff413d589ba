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
import json, sys, secret
DOC = json.dumps({"items": [{"id": i, "name": "n%05d" % i,
                             "tags": ["a", "b", "c"], "v": i * 0.5}
                            for i in range(750)]})
def j():
    return len(json.loads(DOC))
def d():
    return len({str(i) * 3: i for i in range(10000)})
def g256():
    ba = bytearray()
    chunk = b"x" * 256
    for _ in range((1 << 20) // 256):
        ba += chunk
    return len(ba)
def nb():
    x, y = 0.5, 1.5
    for i in range(100000):
        x = x * 1.0000001 + y * 0.5 - (x - y) * 0.25
    return x
work = {"json": j, "dict": d, "bytearray256": g256, "float": nb}[sys.argv[1]]
if not secret.supported():
    sys.exit("secret.do() would not erase here: nothing to measure")
for _ in range(int(sys.argv[3])):
    secret.do(work) if sys.argv[2] == "do" else work()
"""

WORKS = ("json", "dict", "bytearray256", "float")


def count(python, *args):
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         python, "-S", "-c", CHILD, *args],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        sys.exit("%s %s failed:\n%s" % (python, args, r.stderr[-2000:]))
    return int(m.group(1))


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
