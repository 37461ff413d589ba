"""Run pyperformance benchmarks inside secret.do() (spec §4, third bound).

scripts/bench.py pyperformance puts this directory on PYTHONPATH (every
kind, every side, so that all pay the same import in the start-up
benchmarks) and, for --kind in-do, sets RUNTIMESECRET_BENCH_MODE for the
benchmark processes:

  plain  each benchmark's timed function, timed from outside, as is
  do     the same, called through secret.do()

Both modes time the same thing (the whole timed function, from outside, its
own setup included), so their ratio is "this work in do / the same work
outside", do's exit work (cyclic collection, stack erasure) included.
Only pyperf worker processes of a pyperformance benchmark are wrapped
(and its manager process given fixed loops, below): every other Python
process that sees PYTHONPATH (pip, pyperformance) imports this module and
does nothing.

  bench_time_func(name, f, *args)  -> time f(loops, *args)
  bench_func(name, f, *args)       -> time `for loops: f(*args)`, one call
  bench_async_func(name, f, *args) -> time a new event loop awaiting f
                                      loops times, one call
bench_command and timeit are refused: they cannot run inside do.

RUNTIMESECRET_BENCH_LOOPS, a JSON file {benchmark: loops}: the benchmark's
manager process runs those benchmarks with that many loops instead of
calibrating, with or without a mode (in-do: both modes must spread a timed
function's own set-up over the same number of loops, else they compare
different work; heap: pristine and experiment time the same work per
value, one source of noise less).
"""

import os
import sys

MODE = os.environ.get("RUNTIMESECRET_BENCH_MODE")


def _in_worker():
    return (len(sys.argv) > 1 and "--worker" in sys.argv
            and os.path.basename(sys.argv[0]) == "run_benchmark.py")


def _in_manager():
    return (os.path.basename(sys.argv[0]) == "run_benchmark.py"
            and "--worker" not in sys.argv)


def _fix_loops(path):
    import json

    import pyperf

    with open(path) as f:
        table = json.load(f)

    def fixed(orig):
        def method(self, name, *args, **kw):
            if name in table:
                # Read by pyperf's Manager: no calibration, workers get
                # --loops.
                self.parse_args().loops = table[name]
            return orig(self, name, *args, **kw)
        return method

    for meth in ("bench_time_func", "bench_func", "bench_async_func",
                 "bench_command", "timeit"):
        setattr(pyperf.Runner, meth, fixed(getattr(pyperf.Runner, meth)))


def _caller(mode):
    if mode == "plain":
        return lambda f, *a: f(*a)
    import secret
    if not secret.supported():
        # Measuring the fallback while calling it "in do" would lie.
        raise SystemExit("RUNTIMESECRET_BENCH_MODE=do: secret.supported() "
                         "is False on this interpreter")

    def call(f, *a):
        def checked(*a):
            if not secret.enabled():
                raise SystemExit("secret.do did not enter secret mode")
            return f(*a)
        return secret.do(checked, *a)
    return call


def _patch(mode):
    import time

    import pyperf

    call = _caller(mode)
    timer = time.perf_counter
    orig_time_func = pyperf.Runner.bench_time_func

    def bench_time_func(self, name, time_func, *args, **kw):
        def outer(loops, *a):
            t0 = timer()
            call(time_func, loops, *a)
            return timer() - t0
        self.metadata["runtimesecret_mode"] = mode
        return orig_time_func(self, name, outer, *args, **kw)

    def bench_func(self, name, func, *args, **kw):
        def loop(loops):
            for _ in range(loops):
                func(*args)
        return bench_time_func(self, name, loop, **kw)

    def bench_async_func(self, name, func, *args, **kw):
        loop_factory = kw.pop("loop_factory", None)

        def run(loops):
            import asyncio

            async def main():
                for _ in range(loops):
                    await func(*args)
            loop = (loop_factory or asyncio.new_event_loop)()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
        return bench_time_func(self, name, run, **kw)

    def refuse(self, name, *a, **kw):
        raise SystemExit("%s: bench_command/timeit cannot run inside do; "
                         "leave this benchmark out" % name)

    pyperf.Runner.bench_time_func = bench_time_func
    pyperf.Runner.bench_func = bench_func
    pyperf.Runner.bench_async_func = bench_async_func
    pyperf.Runner.bench_command = refuse
    pyperf.Runner.timeit = refuse


# Fixed loops serve every kind that sets the table (in-do, and heap, whose
# sides run without a mode), so they do not depend on MODE.
if _in_manager() and os.environ.get("RUNTIMESECRET_BENCH_LOOPS"):
    _fix_loops(os.environ["RUNTIMESECRET_BENCH_LOOPS"])

if MODE is not None and _in_worker():
    if MODE not in ("plain", "do"):
        raise SystemExit("RUNTIMESECRET_BENCH_MODE must be plain or do, "
                         "not %r" % MODE)
    _patch(MODE)
