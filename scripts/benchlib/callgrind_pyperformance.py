"""Instruction counts (valgrind --tool=callgrind) of pyperformance
benchmarks, pristine against the experiment: `scripts/bench.py callgrind
pyperformance [--sim] [--off|--installed|--opt|--shifted|--pair A=PY B=PY]
[BENCHMARKS...]`.

Without a side option it backs the wall-clock comparison of `bench.py
pyperformance`, which must have run first: it made the interpreter copies
and the benchmark venvs under cpython-build/bench/, and these are counted.
--installed compares the installed pristine and experiment interpreters
(cpython-build/install/*: what ./run build made last), each through a venv
of its own with the pyperf that pyperformance's benchmark venvs pin; it
needs no wall-clock run first. --off compares pristine with the
experiment-off build that way (the patch series configured without the
experiment; spec §4: within noise of pristine), --opt the PGO+LTO pair
(pristine-opt, experiment-opt), --shifted pristine with pristine-shifted
(pristine's code at other addresses: the same instructions, so what --sim
adds shows code placement alone). --pair LABEL=PYTHON LABEL=PYTHON
compares two interpreters named by path, the first the reference, each
through a venv of its own (cpython-build/bench/callgrind-venv/LABEL): two
builds of the experiment, say, one of them another worktree's. Counts
move a little with the length of the paths they run from: give labels
of one length, and interpreters whose paths have one length (a symlink
or copy of an install works: CPython finds its prefix from where it
runs).

One worker value per benchmark (--loops 1, no warm-up), PYTHONHASHSEED=0;
prints a Markdown table: instructions of each and the ratio. --sim also
simulates the caches and the branch predictor (--cache-sim=yes
--branch-sim=yes, about twice as slow) and adds callgrind's cycle
estimate, CEst = Ir + 10 (L1 misses + mispredicted branches) + 100 LL
misses (KCachegrind's formula): what the added code does to the
instruction cache, data cache and branch prediction, which instruction
counts alone do not show. Still exact and repeatable.

BENCHMARKS: name:directory[:arguments of run_benchmark.py,
comma-separated] (default: DEFAULT, 19 benchmarks).
"""

import glob
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from .common import (PYPERFORMANCE_VENV, ROOT, WORK, callgrind, interpreter,
                     pyperformance_venv, venv)

DEFAULT = """richards:bm_richards deltablue:bm_deltablue float:bm_float
nbody:bm_nbody chaos:bm_chaos go:bm_go hexiom:bm_hexiom nqueens:bm_nqueens
raytrace:bm_raytrace deepcopy:bm_deepcopy json_loads:bm_json_loads
json_dumps:bm_json_dumps gc_collect:bm_gc_collect gc_traversal:bm_gc_traversal
generators:bm_generators coroutines:bm_coroutines
comprehensions:bm_comprehensions
unpickle_pure_python:bm_pickle:--pure-python,unpickle
pickle_pure_python:bm_pickle:--pure-python,pickle""".split()

# The sides (reference, measured) of each comparison, and whether they run
# from the installed interpreters (else from the wall-clock run's copies).
SIDES = {None: ("pristine", "experiment", False),
         "installed": ("pristine", "experiment", True),
         "off": ("pristine", "off", True),
         "opt": ("pristine-opt", "experiment-opt", True),
         "shifted": ("pristine", "pristine-shifted", True)}

BENCHMARKS = os.path.join(PYPERFORMANCE_VENV, "lib", "python3.13",
                          "site-packages", "pyperformance", "data-files",
                          "benchmarks")


def benchmark_venv(copy):
    """The venv pyperformance made for the interpreter copy WORK/copy."""
    home = os.path.realpath(os.path.join(WORK, copy)) + "/bin"
    for cfg in glob.glob(os.path.join(WORK, "venv", "*", "pyvenv.cfg")):
        with open(cfg) as f:
            if re.search(r"^home = %s$" % re.escape(home), f.read(), re.M):
                return os.path.dirname(cfg)
    sys.exit("error: no benchmark venv for %s" % copy)


def installed_venv(variant, pyperf_version, python=None):
    """A venv of cpython-build/install/VARIANT (or of python, under the
    name VARIANT) with the pyperf that pyperformance's benchmark venvs pin.
    It links to the interpreter: a rebuild is seen."""
    path = os.path.join(WORK, "callgrind-venv", variant)
    python = python or interpreter(variant)
    cfg = os.path.join(path, "pyvenv.cfg")
    if os.path.exists(cfg):
        with open(cfg) as f:
            home = re.search(r"^home = (.*)$", f.read(), re.M).group(1)
        if home != os.path.dirname(os.path.abspath(python)):
            sys.exit("error: %s is a venv of %s, not of %s: remove it or "
                     "use another label" % (path, home, python))
    return venv(path, python, packages=["pyperf==" + pyperf_version])


def pinned_pyperf(tools_py):
    """The pyperf version pyperformance's requirements pin."""
    return subprocess.run([tools_py, "-c", r"""
import importlib.resources as r, re
t = (r.files("pyperformance") / "requirements" / "requirements.txt")
print(re.search(r"^pyperf==([0-9.]+)", t.read_text(), re.M).group(1))"""],
                          check=True, capture_output=True,
                          text=True).stdout.strip()


def count(python, script, args, sim):
    """The events of one worker value: Ir, or with sim all of them. Run
    from the top of the tree with paths relative to it, as every count
    in docs/ was made."""
    return callgrind(
        [os.path.relpath(python, ROOT), os.path.relpath(script, ROOT),
         "--worker", "--loops", "1", "--values", "1", "--warmups", "0",
         "-p", "1", *args],
        options=["--cache-sim=yes", "--branch-sim=yes"] if sim else [],
        quiet=True, cwd=ROOT)


# Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim
def cest(v):
    return (v[0] + 10 * (v[3] + v[4] + v[5] + v[10] + v[12])
            + 100 * (v[6] + v[7] + v[8]))


def gmean(r):
    return math.exp(sum(map(math.log, r)) / len(r))


def main(which=None, sim=False, benchmarks=(), pair=None):
    if pair:
        (a, a_py), (b, b_py) = pair
        installed = True
    else:
        a, b, installed = SIDES[which]
        a_py = b_py = None
    if not os.path.isdir(BENCHMARKS) and installed:
        # Only the benchmarks' files are needed: pyperformance in a venv
        # of the installed pristine.
        pyperformance_venv(interpreter("pristine"))
    if not os.path.isdir(BENCHMARKS):
        sys.exit("error: run scripts/bench.py pyperformance first")
    if not installed:
        p_py = os.path.join(benchmark_venv("pristine"), "bin", "python")
        e_py = os.path.join(benchmark_venv("experiment"), "bin", "python")
    else:
        # Both sides from their installed interpreters, the same way.
        version = pinned_pyperf(os.path.join(PYPERFORMANCE_VENV, "bin",
                                             "python"))
        p_py, e_py = (installed_venv(v, version, py)
                      for v, py in ((a, a_py), (b, b_py)))
    if sim:
        print("| benchmark | Ir ratio | I1 misses %s / %s | D1 misses %s / %s"
              " | mispredicted branches %s / %s | CEst %s | CEst %s "
              "| CEst ratio |" % (a, b, a, b, a, b, a, b))
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| benchmark | %s | %s | ratio |" % (a, b))
        print("|---|---|---|---|")
    rows = []
    for item in benchmarks or DEFAULT:
        name, _, rest = item.partition(":")
        directory, _, arg = rest.partition(":")
        script = os.path.join(BENCHMARKS, directory, "run_benchmark.py")
        args = arg.split(",") if arg else []
        # The two runs are independent and their counts do not depend on
        # load: run them side by side.
        with ThreadPoolExecutor(2) as ex:
            p, e = ex.map(lambda py: count(py, script, args, sim),
                          (p_py, e_py))
        rows.append((p, e))
        if not sim:
            print("| %s | %d | %d | %.4f |" % (name, p[0], e[0],
                                               e[0] / p[0]), flush=True)
            continue
        print("| %s | %.4f | %d / %d | %d / %d | %d / %d | %d | %d | %.4f |"
              % (name, e[0] / p[0], p[3], e[3], p[4] + p[5], e[4] + e[5],
                 p[10] + p[12], e[10] + e[12], cest(p), cest(e),
                 cest(e) / cest(p)), flush=True)
    ir = [e[0] / p[0] for p, e in rows]
    line = ("\ngeometric mean of the ratios (%d benchmarks): instructions "
            "%.4f" % (len(ir), gmean(ir)))
    if sim:
        line += ", CEst %.4f" % gmean([cest(e) / cest(p) for p, e in rows])
    print(line)
