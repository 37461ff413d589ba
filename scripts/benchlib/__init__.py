"""The code of scripts/bench.py, the benchmark command (its docstring lists
the subcommands).

  common                   interpreters, venvs, running, callgrind, reports
  do_cost, inside, exit_gc pyperf scripts: `do`, `inside`, `exit-gc`; run
                           in the experiment's bench venv as scripts (this
                           directory is their sys.path[0])
  works, alloc_loop        the works measured, shared by the wall-clock
                           and the callgrind subcommands
  report                   the table of a `do` run
  pyperformance_run        `pyperformance`: wall-clock comparisons
  callgrind                `callgrind alloc|in-do|caches|io|thread-end|
                           exit-gc`
  callgrind_pyperformance  `callgrind pyperformance`

No module is named after a package a benchmark's interpreter may import
(pyperf, pyperformance, ...): the pyperf scripts' directory comes first on
their sys.path.
"""
