"""The collection at the outermost do() exit costs in proportion to what
func made, not to the heap (spec §4): a process holds EXIT_GC_HOLD objects
(3 million lists), func makes EXIT_GC_MAKE (30,000 lists); plain against
through secret.do, with pyperf:

  scripts/bench.py exit-gc [OUT.json] [pyperf options]  # wall clock
  scripts/bench.py callgrind exit-gc [PYTHON]           # instructions

(the first runs this script in the experiment's bench venv).

The 30,000 allocations trigger generation-0 and generation-1 collections
inside func, which promote func's objects to the oldest generation; before
the exit collection learned to take back only that generation's tail, it
collected all of it (issue 20: 4.8 ms plain, 194 ms in do).
"""

import gc

import pyperf

import secret
from do_cost import timed       # same directory
from works import EXIT_GC_HOLD as HOLD, EXIT_GC_MAKE as MAKE


def main():
    hold = [[] for _ in range(HOLD)]
    gc.collect()

    def func():
        x = [[i] for i in range(MAKE)]
        return len(x)

    runner = pyperf.Runner()
    runner.metadata["description"] = (
        "exit collection: %d lists held, func makes %d" % (HOLD, MAKE))
    runner.bench_time_func("make-30k", timed(func))
    runner.bench_time_func("do(make-30k)",
                           timed(lambda: secret.do(func)))
    del hold


if __name__ == "__main__":
    main()
