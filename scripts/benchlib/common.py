"""What every benchmark shares: where the interpreters are and how to build
a missing one, the venvs benchmarks run in, running a command, counting
instructions with callgrind, and writing a report."""

import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "scripts", "benchlib")
INSTALL = os.path.join(ROOT, "cpython-build", "install")
VENV = os.path.join(ROOT, "cpython-build", "venv")
# Interpreter copies, pyperformance's venvs and results (git-ignored).
WORK = os.path.join(ROOT, "cpython-build", "bench")


def how_to_build(variant):
    """The command that installs cpython-build/install/VARIANT."""
    if variant.endswith("-opt"):
        return "ninja -C cpython-build/_meson optimized"
    if variant in ("pristine-shifted", "experiment-tier2"):
        return "ninja -C cpython-build/_meson %s.stamp" % variant
    return "./run build"


def interpreter(variant, required=True):
    """cpython-build/install/VARIANT/bin/python3. Missing: an error that
    says how to build it, or None when not required."""
    py = os.path.join(INSTALL, variant, "bin", "python3")
    if os.path.exists(py):
        return py
    if not required:
        return None
    sys.exit("error: %s is not installed: run %s first"
             % (os.path.relpath(os.path.dirname(os.path.dirname(py)), ROOT),
                how_to_build(variant)))


def run(cmd, **kw):
    """Run cmd, shown first; a failure ends the benchmark."""
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def venv(path, python, requirements=None, packages=()):
    """The python of the venv at path, made from python with the given
    requirements file and packages the first time (later, used as it is).
    A venv whose installation failed is removed, never left half made."""
    py = os.path.join(path, "bin", "python")
    if os.path.exists(py):
        return py
    try:
        run([python, "-m", "venv", path])
        run([py, "-m", "pip", "install", "-q",
             *(["-r", requirements] if requirements else []), *packages])
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return py


def bench_venv():
    """cpython-build/venv/bench: the experiment with pyperf and
    cryptography (scripts/requirements-bench.txt), for the pyperf
    benchmarks of secret.do."""
    return venv(os.path.join(VENV, "bench"), interpreter("experiment"),
                os.path.join(ROOT, "scripts", "requirements-bench.txt"))


PYPERFORMANCE_VENV = os.path.join(WORK, "pyperformance-venv")


def pyperformance_venv(python):
    """WORK/pyperformance-venv: pyperformance
    (scripts/requirements-pyperformance.txt) in a venv of python, a
    pristine 3.13 (pyperformance filters benchmarks by the Python that runs
    it); its python."""
    return venv(PYPERFORMANCE_VENV, python, os.path.join(
        ROOT, "scripts", "requirements-pyperformance.txt"))


def callgrind(argv, *, out="/dev/null", options=(), quiet=False, cwd=None):
    """Run argv under valgrind --tool=callgrind with PYTHONHASHSEED=0, so
    the counts repeat. Returns the events it collected, as ints (Ir alone,
    or with --cache-sim/--branch-sim all of them in callgrind's order).
    A failure ends the benchmark with the end of the run's output.
    Counts are exact for one way of running: the paths in argv and the
    size of the environment move them a little (where the stack starts;
    up to 0.2 % on one pyperformance benchmark), so compare counts made
    the same way, from the same place."""
    r = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
         *options, *argv],
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=cwd,
        env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"^==\d+== Collected : ([\d ]+)$", r.stderr, re.M)
    if r.returncode != 0 or m is None:
        sys.exit("%s failed:\n%s" % (" ".join(argv), r.stderr[-2000:]))
    return [int(x) for x in m.group(1).split()]


def instructions(python, child, *args, options=()):
    """Instructions callgrind counts for `python -S -c child args`."""
    return callgrind([python, "-S", "-c", child, *args],
                     options=options)[0]


def write_report(path, text):
    """Write a report (Markdown, JSON) to path, making its directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
