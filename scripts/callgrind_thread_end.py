#!/usr/bin/env python3
"""What the secret heap adds to a thread's end (issue 21: at most 1 us):
instructions callgrind counts inside _PySecretHeap_ThreadDone (the heap's
part of the thread-end hook) per thread, for threads that each ran
secret.do() once and, for the inherited case, threads started in do():

  python3 scripts/callgrind_thread_end.py [PYTHON ...]

PYTHON: experiment interpreters (default: the installed experiment). Each
case starts 200 threads one after the other; the count is divided by 200.
Prints one line per case and interpreter.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 200

CHILD = r"""
import os, sys, threading, secret
inherit = sys.argv[1] == "inherit"
def body():
    if not inherit:
        secret.do(lambda: [os.urandom(100) for _ in range(20)])
    else:
        [os.urandom(100) for _ in range(20)]
def start():
    t = threading.Thread(target=body)
    t.start()
    t.join()
secret.do(int)
for _ in range(int(sys.argv[2])):
    secret.do(start) if inherit else start()
"""


def instructions(python, case):
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         "--toggle-collect=_PySecretHeap_ThreadDone",
         python, "-S", "-c", CHILD, case, str(N)],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"Collected : (\d+)", r.stderr)
    if r.returncode != 0 or m is None:
        sys.exit("%s %s failed:\n%s" % (python, case, r.stderr[-2000:]))
    return int(m.group(1))


def main():
    pythons = sys.argv[1:] or [
        os.path.join(ROOT, "cpython-build/install/experiment/bin/python3")]
    for py in pythons:
        for case in ("do", "inherit"):
            n = instructions(py, case)
            print("%-8s %8.1f instructions per thread end  %s"
                  % (case, n / N, py))


if __name__ == "__main__":
    main()
