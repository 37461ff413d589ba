#!/usr/bin/env python3
"""Instructions a protected coroutine step adds (spec §4), under callgrind.

  python3 scripts/async_step_instructions.py [PYTHON]

PYTHON: an experiment interpreter (default: the installed one). Counts a
coroutine awaiting asyncio.sleep(0) N times, plain and through
secret.do_async, for two N (the difference removes start-up), and the
same for do(noop) against noop(): per step and per call. Under valgrind
the C-stack tracker runs its scan mode, so the secret side is an upper
bound of what runs natively. Prints a Markdown table; asserts nothing.
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEPS = """
import asyncio, sys, secret
n = int(sys.argv[2])
async def body(n):
    for _ in range(n):
        await asyncio.sleep(0)
async def main():
    if sys.argv[1] == "p":
        await secret.do_async(body, n)
    else:
        await body(n)
asyncio.run(main())
"""

CALLS = """
import sys, secret
def noop():
    return None
n = int(sys.argv[2])
if sys.argv[1] == "p":
    for _ in range(n):
        secret.do(noop)
else:
    for _ in range(n):
        noop()
"""


def instructions(python, script, mode, n):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "work.py")
        with open(path, "w") as f:
            f.write(script)
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             python, path, mode, str(n)],
            capture_output=True, text=True, check=True,
            env=dict(os.environ, PYTHONHASHSEED="0")).stderr
    line, = [x for x in out.splitlines() if "Collected" in x]
    return int(line.split()[-1])


def per_unit(python, script, lo, hi):
    out = {}
    for mode in ("u", "p"):
        a = instructions(python, script, mode, lo)
        b = instructions(python, script, mode, hi)
        out[mode] = (b - a) / (hi - lo)
    return out


def main():
    python = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "cpython-build", "install", "experiment", "bin", "python3")
    step = per_unit(python, STEPS, 1000, 3000)
    call = per_unit(python, CALLS, 2000, 6000)
    print("| | plain | protected | added |")
    print("|---|---|---|---|")
    print("| `await asyncio.sleep(0)`, per step (`do_async`) | %.0f | %.0f "
          "| %.0f |" % (step["u"], step["p"], step["p"] - step["u"]))
    print("| `noop()`, per call (`do`) | %.0f | %.0f | %.0f |"
          % (call["u"], call["p"], call["p"] - call["u"]))


if __name__ == "__main__":
    main()
