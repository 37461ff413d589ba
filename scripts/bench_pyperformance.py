#!/usr/bin/env python3
"""pyperformance: the experiment interpreter against pristine (spec §4).

  python3 scripts/bench_pyperformance.py [--passes N] [--benchmarks LIST]
      [--out DIR] [--compare-only]

What it does, all under cpython-build/bench/ (git-ignored):
  1. copies the two installed interpreters (cpython-build/install/pristine
     and .../experiment, made by ./run build) so that a rebuild during the
     run cannot change the binaries being measured;
  2. makes a venv with pyperformance (scripts/requirements-pyperformance.txt)
     from the pristine copy (pyperformance filters benchmarks by the Python
     that runs it, so that must be a 3.13);
  3. runs `pyperformance run --fast` on the subset, alternating the two
     interpreters N times (P, E, E, P, P, E, ...) and adding each pass to
     one file per interpreter with --append, so slow phases of this noisy
     machine fall on both;
  4. writes OUT/pyperformance-heap.md: pyperf's own comparison (geometric
     mean of the means) and a second geometric mean of per-benchmark
     minima, which is far steadier here (../shared notes: an A/A run differs
     by ~3 % on means, ~0.2 % on minima).

Nothing is asserted: the report is for people to read.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "cpython-build", "bench")

# Allocation-, free- and GC-heavy benchmarks, plus startup: the ones where a
# test on every malloc/free and free-list pop/push would show.
SUBSET = ("gc_collect,gc_traversal,deepcopy,deltablue,richards,raytrace,"
          "chaos,go,hexiom,nqueens,comprehensions,generators,coroutines,"
          "async_tree,float,nbody,json_dumps,json_loads,pickle,unpickle,"
          "pickle_pure_python,unpickle_pure_python,xml_etree,regex_compile,"
          "logging,crypto_pyaes,pidigits,sqlglot_v2_parse,mako,"
          "sqlalchemy_declarative,python_startup,python_startup_no_site")


def run(cmd, **kw):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def snapshot(name):
    src = os.path.join(ROOT, "cpython-build", "install", name)
    dst = os.path.join(WORK, name)
    if not os.path.exists(os.path.join(src, "bin", "python3")):
        sys.exit("error: %s is not installed: run ./run build first" % src)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)
    return os.path.join(dst, "bin", "python3")


def tools_venv(pristine):
    venv = os.path.join(WORK, "pyperformance-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        run([pristine, "-m", "venv", venv])
        run([py, "-m", "pip", "install", "-q", "-r",
             os.path.join(ROOT, "scripts", "requirements-pyperformance.txt")])
    return py


def load_values(path):
    """{benchmark: [values...]} from a pyperf suite file."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data["benchmarks"]:
        name = b.get("metadata", {}).get("name")
        vals = [v for r in b["runs"] for v in r.get("values", [])]
        if name and vals:
            out.setdefault(name, []).extend(vals)
    return out


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def report(tools_py, files, out_dir, meta):
    pristine, experiment = files
    cmp = subprocess.run(
        [tools_py, "-m", "pyperf", "compare_to", pristine, experiment,
         "--table", "--group-by-speed"],
        check=True, capture_output=True, text=True).stdout
    a, b = load_values(pristine), load_values(experiment)
    rows = []
    for name in sorted(set(a) & set(b)):
        rows.append((name, min(a[name]), min(b[name]),
                     statistics.mean(a[name]), statistics.mean(b[name]),
                     len(a[name]), len(b[name])))
    gmin = geomean([r[2] / r[1] for r in rows])
    gmean = geomean([r[4] / r[3] for r in rows])
    lines = [
        "# pyperformance: experiment vs pristine (spec §4, outside `do`)",
        "",
        "Made by `%s` on %s, on this project's 2-core x86-64 VM." % (
            meta["command"], meta["date"]),
        "",
        "- commit: `%s`" % meta["commit"],
        "- pristine: CPython 3.13.5 unpatched (`python3` sha256 `%s`)" %
        meta["sha"]["pristine"][:16],
        "- experiment: `--with-experiment=runtimesecret` (`python3` sha256 "
        "`%s`)" % meta["sha"]["experiment"][:16],
        "- %d passes of `pyperformance run --fast` per interpreter, "
        "interleaved (%s), added with `--append`" % (
            meta["passes"], ", ".join(meta["order"])),
        "- %d benchmarks: `%s`" % (len(rows), meta["benchmarks"]),
        "",
        "## Summary",
        "",
        "| measure | experiment / pristine |",
        "|---|---|",
        "| geometric mean of per-benchmark **minimum** ratios | **%.4fx** |"
        % gmin,
        "| geometric mean of per-benchmark mean ratios | %.4fx |" % gmean,
        "",
        "Over 1 means the experiment is slower. The minimum is the "
        "steadier measure on this machine (see "
        "`../shared/notes/pyperformance-here.md`: an A/A pass differs by "
        "~3 % on means).",
        "",
        "## Per benchmark",
        "",
        "| benchmark | pristine min | experiment min | ratio (min) | "
        "ratio (mean) | values |",
        "|---|---|---|---|---|---|",
    ]
    for name, amin, bmin, amean, bmean, na, nb in rows:
        lines.append("| %s | %.4g ms | %.4g ms | %.3f | %.3f | %d/%d |" % (
            name, amin * 1e3, bmin * 1e3, bmin / amin, bmean / amean,
            na, nb))
    lines += ["", "## pyperf compare_to (means)", "", "```",
              cmp.rstrip(), "```", ""]
    os.makedirs(os.path.join(out_dir, "bench"), exist_ok=True)
    md = os.path.join(out_dir, "pyperformance-heap.md")
    with open(md, "w") as f:
        f.write("\n".join(lines))
    summary = {"geomean_min": gmin, "geomean_mean": gmean,
               "benchmarks": {r[0]: {"ratio_min": r[2] / r[1],
                                     "ratio_mean": r[4] / r[3]}
                              for r in rows}, **meta}
    with open(os.path.join(out_dir, "bench", "pyperformance-heap.json"),
              "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    print("\n".join(lines[:22]))
    print("wrote", md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passes", type=int, default=3,
                    help="passes per interpreter (default 3)")
    ap.add_argument("--benchmarks", default=SUBSET)
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--compare-only", action="store_true",
                    help="rewrite the report from the last run's files")
    a = ap.parse_args()
    if a.passes < 1:
        ap.error("--passes must be at least 1")
    os.makedirs(WORK, exist_ok=True)
    files = [os.path.join(WORK, n + ".json")
             for n in ("pristine", "experiment")]
    meta_path = os.path.join(WORK, "meta.json")
    if a.compare_only:
        with open(meta_path) as f:
            meta = json.load(f)
        tools_py = os.path.join(WORK, "pyperformance-venv", "bin", "python")
        report(tools_py, files, a.out, meta)
        return
    pys = {n: snapshot(n) for n in ("pristine", "experiment")}
    tools_py = tools_venv(pys["pristine"])
    for f in files:
        if os.path.exists(f):
            os.remove(f)
    order = []
    for i in range(a.passes):
        # P,E then E,P: neither interpreter always runs first.
        pair = ("pristine", "experiment")
        order += pair if i % 2 == 0 else pair[::-1]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                             "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    meta = {"command": "python3 scripts/bench_pyperformance.py --passes %d"
            % a.passes,
            "date": datetime.date.today().isoformat(), "commit": commit,
            "passes": a.passes, "order": [o[0].upper() for o in order],
            "benchmarks": a.benchmarks,
            "sha": {n: sha256(os.path.realpath(p)) for n, p in pys.items()}}
    if a.benchmarks != SUBSET:
        meta["command"] += " --benchmarks " + a.benchmarks
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    for n, name in enumerate(order):
        print("== pass %d/%d: %s" % (n + 1, len(order), name), flush=True)
        # pyperformance puts the benchmark venvs under ./venv.
        run([tools_py, "-m", "pyperformance", "run", "--fast",
             "--python", pys[name], "-b", a.benchmarks,
             "--append", os.path.join(WORK, name + ".json")], cwd=WORK)
    report(tools_py, files, a.out, meta)


if __name__ == "__main__":
    main()
