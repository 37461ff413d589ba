#!/usr/bin/env python3
"""Where a secret.do() call's own time goes, natively (spec §4).

  do_cost_perf.py [--python PY] [--work do|sleep0|pingpong] [-n N]
                  [--freq HZ]

Runs the work N times protected and N times plain under `perf record`
(software clock sampling: this VM has no hardware counters), each in its
own process, and prints, per part of do()'s entry and exit, the time per
call (or per coroutine step) that the protected run spent there beyond
the plain one: samples of the part's functions in the protected run minus
those in the plain run, times the sampling period, over N. The samples
are CPU time, so another process on the machine slows them little; a
part's figure still includes what perf's own interrupts cost it.

Works (a value is one call or one step):
- do: `secret.do(noop)` against `noop()` in a function's loop;
- sleep0: a coroutine awaiting `asyncio.sleep(0)`, through
  `secret.do_async` against directly;
- pingpong: two tasks bouncing an item through two `asyncio.Queue`s
  (two steps a round trip), both through `do_async` against neither.

Valgrind's callgrind does not see this path: under valgrind the C-stack
tracker runs its scan mode. Needs perf (linux-perf) and
kernel.perf_event_paranoid <= 2.
"""

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORK = r'''
import asyncio, sys, secret
n, work, protect = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"

def noop():
    return None

def calls():
    d = secret.do
    if protect:
        for _ in range(n):
            d(noop)
    else:
        for _ in range(n):
            noop()

async def sleep0(loops):
    for _ in range(loops):
        await asyncio.sleep(0)

async def ping(loops, a, b):
    for _ in range(loops):
        await a.put(None)
        await b.get()

async def pong(loops, a, b):
    for _ in range(loops):
        await a.get()
        await b.put(None)

async def main():
    if work == "sleep0":
        if protect:
            await secret.do_async(sleep0, n)
        else:
            await sleep0(n)
        return
    a, b = asyncio.Queue(), asyncio.Queue()
    wrap = secret.do_async if protect else (lambda f, *args: f(*args))
    await asyncio.gather(asyncio.ensure_future(wrap(ping, n // 2, a, b)),
                         asyncio.ensure_future(wrap(pong, n // 2, a, b)))

if work == "do":
    calls()
else:
    asyncio.run(main())
'''

# The parts, first match wins: (label, test on perf's symbol column).
PARTS = [
    ("registers, and zeroing the window's used part "
     "(`_PySecret_EraseStack`)",
     lambda s: "_PySecret_EraseStack" in s),
    ("scanning the window's zero part (`_PySecret_FirstNonzero`)",
     lambda s: "_PySecret_FirstNonzero" in s),
    ("the kernel: the growth check's system call (and any other kernel "
     "time the protected run spends more)",
     lambda s: s.startswith("[k]") or s.endswith("] mincore")
     or s.endswith("] msync")),
    ("`memset`: the frame-stack window, freed secret blocks",
     lambda s: "memset" in s),
    ("the exception walk's epoch (`epoch_start`/`epoch_end`, "
     "`malloc`/`free`)",
     lambda s: any(x in s for x in ("epoch_", "] malloc", "_int_free",
                                    "cfree", "] free", "_int_malloc",
                                    "last_tracked"))),
    ("the exit collection's bookkeeping",
     lambda s: "exit_gc" in s or "collect_exit" in s),
    ("entry and exit glue (`_PySecret_Enter`/`Leave`, the stack "
     "tracker's enter/leave, `pthread_once`)",
     lambda s: any(x in s for x in ("_PySecret_Enter", "_PySecret_Leave",
                                    "_PySecretStack_", "pthread_once",
                                    "ForgetFailure", "EnsureReserved"))),
    ("the secret heap (allocations made in secret mode, their zeroing "
     "on free excluded)",
     lambda s: "SecretHeap" in s or "mi_" in s),
    ("`secret.do` / the `do_async` step object",
     lambda s: any(x in s for x in ("secret_do", "async_call", "do_impl"))),
]


def record(python, work, n, protect, freq, tmp):
    data = os.path.join(tmp, "%s-%d.data" % (work, protect))
    script = os.path.join(tmp, "work.py")
    with open(script, "w") as f:
        f.write(WORK)
    subprocess.run(["perf", "record", "-q", "-F", str(freq), "-e",
                    "cpu-clock", "-o", data, python, script, str(n), work,
                    "1" if protect else "0"],
                   check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["perf", "report", "-i", data, "--no-children",
                          "--sort", "sym", "--stdio", "-n"],
                         check=True, capture_output=True, text=True).stdout
    counts = {}
    for line in out.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[1].isdigit():
            counts[fields[2].strip()] = int(fields[1])
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=os.path.join(
        ROOT, "cpython-build", "install", "experiment", "bin", "python3"))
    ap.add_argument("--work", choices=("do", "sleep0", "pingpong"),
                    default="do")
    ap.add_argument("-n", type=int, default=None,
                    help="calls or steps (default 1,000,000 for do, "
                    "200,000 for the others)")
    ap.add_argument("--freq", type=int, default=20000,
                    help="samples a second (default 20000)")
    a = ap.parse_args()
    n = a.n or (1000000 if a.work == "do" else 200000)
    with tempfile.TemporaryDirectory(prefix="do-cost-perf-") as tmp:
        prot = record(a.python, a.work, n, True, a.freq, tmp)
        plain = record(a.python, a.work, n, False, a.freq, tmp)
    ns = 1e9 / a.freq / n
    left = set(prot) | set(plain)
    print("%s, %s, %d %s: ns a %s beyond the plain run\n" % (
        a.python, a.work, n, "calls" if a.work == "do" else "steps",
        "call" if a.work == "do" else "step"))
    print("| part | ns |\n|---|---|")
    for label, test in PARTS:
        mine = {s for s in left if test(s)}
        left -= mine
        v = sum(prot.get(s, 0) - plain.get(s, 0) for s in mine) * ns
        print("| %s | %.0f |" % (label, v))
    rest = sum(prot.get(s, 0) - plain.get(s, 0) for s in left) * ns
    print("| the rest (the interpreter, calls, cache misses) | %.0f |" % rest)
    total = (sum(prot.values()) - sum(plain.values())) * ns
    print("| **total** | **%.0f** |" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
