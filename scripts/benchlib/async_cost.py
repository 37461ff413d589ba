"""pyperf benchmarks of a protected coroutine step (spec §2.1, §4):
`scripts/bench.py async [OUT.json] [pyperf options]` runs this script in
the experiment's bench venv, as `python scripts/benchlib/async_cost.py -o
OUT.json [pyperf options]`.

Each pair is the same asyncio work with and without secret.do_async, in
one run; a value is the time of one step (one suspension and resume):
- sleep0: a coroutine looping on `await asyncio.sleep(0)`;
- pingpong: two tasks bouncing an item through two asyncio.Queue objects
  (protected: both run through do_async, so each round trip is two
  protected steps; a value is one step, half a round trip);
- task: a task that runs one step and returns, created and awaited from
  the protected (or not) coroutine, so its step is protected through its
  coroutine made in secret mode (genobject.c's step, patch 0029).
The event loop is made once per timed run, outside the measured part.

With --cpu-time a value is read from this process's CPU time
(time.process_time) instead of the wall clock: on a machine that other
work keeps busy, the wall clock counts the waits for a CPU too.
"""

import asyncio
import time

import pyperf

import secret


# The clock a value is read with: wall clock, or with --cpu-time this
# process's CPU time (a machine that other work keeps busy delays a run
# while it waits for a CPU; its CPU time changes little).
clock = time.perf_counter


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


async def pingpong(loops, protect):
    a, b = asyncio.Queue(), asyncio.Queue()
    if protect:
        t1 = asyncio.ensure_future(secret.do_async(ping, loops, a, b))
        t2 = asyncio.ensure_future(secret.do_async(pong, loops, a, b))
    else:
        t1 = asyncio.ensure_future(ping(loops, a, b))
        t2 = asyncio.ensure_future(pong(loops, a, b))
    await asyncio.gather(t1, t2)


async def one_step():
    await asyncio.sleep(0)


async def tasks(loops):
    for _ in range(loops):
        await asyncio.create_task(one_step())


def timed(make, protect, per_loop=1):
    def time_func(loops):
        loop = asyncio.new_event_loop()
        try:
            if protect:
                async def run():
                    await secret.do_async(make, loops)
            else:
                async def run():
                    await make(loops)
            t0 = clock()
            loop.run_until_complete(run())
            dt = clock() - t0
        finally:
            loop.close()
        return dt / per_loop
    return time_func


def timed_pingpong(protect):
    def time_func(loops):
        loop = asyncio.new_event_loop()
        try:
            t0 = clock()
            loop.run_until_complete(pingpong(loops, protect))
            dt = clock() - t0
        finally:
            loop.close()
        return dt / 2       # two steps a round trip (one per task)
    return time_func


def add_cmdline_args(cmd, args):
    if args.cpu_time:
        cmd.append("--cpu-time")


def main():
    global clock
    runner = pyperf.Runner(add_cmdline_args=add_cmdline_args)
    runner.argparser.add_argument(
        "--cpu-time", action="store_true",
        help="read CPU time (time.process_time), not the wall clock")
    if runner.parse_args().cpu_time:
        clock = time.process_time
    runner.metadata["description"] = "secret.do_async() step cost"
    runner.bench_time_func("sleep0", timed(sleep0, False))
    runner.bench_time_func("do(sleep0)", timed(sleep0, True))
    # A/A control: the same unprotected work again (the run's noise).
    runner.bench_time_func("sleep0 A/A", timed(sleep0, False))
    runner.bench_time_func("pingpong", timed_pingpong(False))
    runner.bench_time_func("do(pingpong)", timed_pingpong(True))
    runner.bench_time_func("task", timed(tasks, False))
    runner.bench_time_func("do(task)", timed(tasks, True))


if __name__ == "__main__":
    main()
