#!/usr/bin/env python3
"""What a protected coroutine step adds (spec §2.1, §4), measured paired.

  async_step_paired.py [--python PY] [--blocks B] [--steps N] [--cpu-time]
                       [--json OUT]

`scripts/bench.py async` runs each benchmark in its own worker processes,
one after the other: a change in the machine's load between the plain and
the protected runs lands in their difference (its A/A control shows how
much). This runs the pairs interleaved in one process instead: B blocks,
each timing N steps plain and N protected (which goes first alternates
block by block), and an A/A pair (plain against plain) the same way. A
block's difference divided by N is one sample; the table gives the median
and the quartiles of the samples, the median plain step, and the median
of each block's difference over its plain half (the added cost as a share
of the step). A burst of load hits both halves of a block alike, so the
median difference is steady where pyperf's --fast means are not. But
these VMs also change speed for seconds at a time (a plain step 2 us in
one minute, 4 us in the next), and the added time changes with it: read
an added time with the plain step measured beside it; the share is what
stays.

Works (a value is one step: one suspension and resume):
- sleep0: a coroutine awaiting `asyncio.sleep(0)` N times, through
  `secret.do_async` against directly;
- pingpong: two tasks bouncing an item through two `asyncio.Queue`s,
  N/2 round trips (two steps each), both through `do_async` against
  neither.

A protected half is one `do_async` call: its first step's set-up and its
last step's exit collection are in the block's time, as in `bench.py
async`; with N steps a block they add their cost over N to a step.

PY: an experiment interpreter (default: the installed one); the script
runs itself under it. With --cpu-time a half is timed by the process's CPU
time (time.process_time) instead of the wall clock. Prints a Markdown
table; asserts nothing.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PYTHON = os.path.join(ROOT, "cpython-build", "install", "experiment",
                              "bin", "python3")


def child(blocks, steps, cpu_time):
    import asyncio
    import statistics
    import time

    import secret

    clock = time.process_time_ns if cpu_time else time.perf_counter_ns

    async def sleep0(n):
        for _ in range(n):
            await asyncio.sleep(0)

    async def ping(n, a, b):
        for _ in range(n):
            await a.put(None)
            await b.get()

    async def pong(n, a, b):
        for _ in range(n):
            await a.get()
            await b.put(None)

    async def pingpong(n, protect):
        a, b = asyncio.Queue(), asyncio.Queue()
        if protect:
            t1 = asyncio.ensure_future(secret.do_async(ping, n, a, b))
            t2 = asyncio.ensure_future(secret.do_async(pong, n, a, b))
        else:
            t1 = asyncio.ensure_future(ping(n, a, b))
            t2 = asyncio.ensure_future(pong(n, a, b))
        await asyncio.gather(t1, t2)

    async def half(work, protect):
        t0 = clock()
        if work == "sleep0":
            if protect:
                await secret.do_async(sleep0, steps)
            else:
                await sleep0(steps)
        else:
            await pingpong(steps // 2, protect)
        return clock() - t0

    async def main():
        out = {}
        for work in ("sleep0", "pingpong"):
            for pair in ("protected", "A/A"):
                diffs, plain, shares = [], [], []
                await half(work, pair == "protected")     # warm up
                for i in range(blocks):
                    other = pair == "protected"
                    if i % 2:
                        b = await half(work, other)
                        a = await half(work, False)
                    else:
                        a = await half(work, False)
                        b = await half(work, other)
                    diffs.append((b - a) / steps)
                    plain.append(a / steps)
                    shares.append((b - a) / a)
                q = statistics.quantiles(diffs, n=4)
                out["%s %s" % (work, pair)] = {
                    "plain": statistics.median(plain), "median": q[1],
                    "q1": q[0], "q3": q[2],
                    "share": statistics.median(shares), "samples": diffs,
                    "plain_samples": plain}
        return out

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=DEFAULT_PYTHON)
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--cpu-time", action="store_true")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.blocks < 4 or a.steps < 2:
        ap.error("--blocks must be at least 4 and --steps at least 2")
    if a.child:
        json.dump(child(a.blocks, a.steps, a.cpu_time), sys.stdout)
        return
    if not os.path.exists(a.python):
        sys.exit("error: no interpreter at %s (build it: ./run build)"
                 % a.python)
    cmd = [a.python, "-I", os.path.abspath(__file__), "--child",
           "--blocks", str(a.blocks), "--steps", str(a.steps)]
    if a.cpu_time:
        cmd.append("--cpu-time")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    res = json.loads(r.stdout)
    print("%d blocks of %d steps, %s, %s" % (
        a.blocks, a.steps, "CPU time" if a.cpu_time else "wall clock",
        os.path.relpath(a.python, ROOT) if a.python.startswith(ROOT)
        else a.python))
    print()
    print("| work | pair | plain step | added: median | quartiles "
          "| added / plain |")
    print("|---|---|---|---|---|---|")
    for name, v in res.items():
        work, pair = name.split(" ", 1)
        print("| %s | %s | %.0f ns | **%+.0f ns** | %+.0f to %+.0f ns "
              "| %+.1f %% |"
              % (work, pair, v["plain"], v["median"], v["q1"], v["q3"],
                 100 * v["share"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": sys.argv, "blocks": a.blocks,
                       "steps": a.steps, "cpu_time": a.cpu_time,
                       "results": res}, f, indent=1)


if __name__ == "__main__":
    main()
