"""pyperformance comparisons for spec §4, of four kinds:

  python3 scripts/bench.py pyperformance [--kind heap|heap-opt|layout|in-do]
      [--passes N] [--benchmarks LIST] [--out DIR] [--compare-only]

  heap   the experiment interpreter against pristine (outside `do`, the
         +0.5 % bound, which instruction counts judge), with a second
         copy of pristine run the same way as the A/A control (what this
         machine's noise alone gives)
  heap-opt the same for the PGO+LTO builds (`--enable-optimizations
         --with-lto`, as distributions build CPython; `ninja -C
         cpython-build/_meson optimized` makes them)
  layout pristine with its code placed elsewhere (the pristine-shifted
         build: the same instructions at other addresses,
         cpython-build/layout_pad.h; `ninja -C cpython-build/_meson
         pristine-shifted.stamp` makes it) and the experiment, both
         against pristine: how far code placement alone moves wall-clock
         time, next to what the experiment measures
  in-do  on the experiment interpreter, each benchmark's timed work called
         through secret.do() against the same work called plainly (the
         1.5x bound; scripts/pyperf_in_do/sitecustomize.py does the
         wrapping)

What it does, all under cpython-build/bench/ (git-ignored):
  1. copies the installed interpreters it needs (cpython-build/install/
     pristine, .../experiment, made by ./run build, or their -opt builds,
     made by `ninja -C cpython-build/_meson optimized`) so that a rebuild
     during the run cannot change the binaries being measured;
  2. makes a venv with pyperformance (scripts/requirements-pyperformance.txt)
     from the pristine copy (pyperformance filters benchmarks by the Python
     that runs it, so that must be a 3.13);
  3. runs `pyperformance run --fast` on the subset, N passes per side,
     interleaved (A, B, B, A, ...; with three sides A, B, C, B, C, A, ...),
     adding each pass to one file per side with --append, so slow phases
     of this noisy machine fall on all sides; every pass after the first
     runs each benchmark with the loops the first pass calibrated, so all
     sides time the same work per value;
  4. writes the run's raw report, OUT/pyperformance-KIND.md (OUT is
     docs/bench unless --out says otherwise): pyperf's own comparison
     (geometric mean of the means), a second geometric mean of
     per-benchmark minima, which is far steadier here (../shared notes:
     an A/A run differs by ~3 % on means, ~0.2 % on minima), and the
     per-benchmark ratios; and OUT/pyperformance-KIND.json, the same
     numbers for scripts.

Nothing is asserted: the report is for people to read. Its summary goes
into docs/performance.md (the bounds and the table of runs), by hand.
"""

import datetime
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys

from .common import (INSTALL, PYPERFORMANCE_VENV, ROOT, WORK, interpreter,
                     pyperformance_venv, run, write_report)
from .report import benchmarks, load_values

HOOK = os.path.join(ROOT, "scripts", "pyperf_in_do")

# Allocation-, free- and GC-heavy benchmarks, plus startup: the ones where a
# test on every malloc/free and free-list pop/push would show.
SUBSET = ("gc_collect,gc_traversal,deepcopy,deltablue,richards,raytrace,"
          "chaos,go,hexiom,nqueens,comprehensions,generators,coroutines,"
          "async_tree,float,nbody,json_dumps,json_loads,pickle,unpickle,"
          "pickle_pure_python,unpickle_pure_python,xml_etree,regex_compile,"
          "logging,crypto_pyaes,pidigits,sqlglot_v2_parse,mako,"
          "sqlalchemy_declarative,python_startup,python_startup_no_site")
# Start-up benchmarks time a new process: nothing to run inside do.
SUBSET_IN_DO = ",".join(b for b in SUBSET.split(",")
                        if not b.startswith("python_startup"))

# kind: (title, [(side, installed interpreter, extra environment)], subset).
# The first side is the reference: every other side's ratio is to it.
KINDS = {
    "heap": ("experiment vs pristine (spec §4, outside `do`), with a copy of "
             "pristine as the A/A control",
             [("pristine", "pristine", {}),
              ("pristine-copy", "pristine", {}),
              ("experiment", "experiment", {})], SUBSET),
    "heap-opt": ("experiment vs pristine, both built with "
                 "`--enable-optimizations --with-lto` (spec §4, outside "
                 "`do`), with a copy of pristine as the A/A control",
                 [("pristine-opt", "pristine-opt", {}),
                  ("pristine-opt-copy", "pristine-opt", {}),
                  ("experiment-opt", "experiment-opt", {})], SUBSET),
    "layout": ("pristine's code at other addresses (pristine-shifted: the "
               "same instructions, a never-run function in each object "
               "file) and the experiment, each against pristine (spec §4, "
               "outside `do`): code placement alone against the "
               "experiment",
               [("pristine", "pristine", {}),
                ("pristine-shifted", "pristine-shifted", {}),
                ("experiment", "experiment", {})], SUBSET),
    "in-do": ("work inside `secret.do` vs the same work outside (spec §4, "
              "experiment interpreter)",
              [("plain", "experiment", {"RUNTIMESECRET_BENCH_MODE": "plain"}),
               ("do", "experiment", {"RUNTIMESECRET_BENCH_MODE": "do"})],
              SUBSET_IN_DO),
}
# Kinds whose sides run every benchmark with the same number of loops.
# in-do must: it times each benchmark's whole timed function, its own set-up
# included, so a side calibrated to 1 loop and one calibrated to 2 would
# spread that set-up over different numbers of loops and compare different
# work (this made `generators` look 1.88x). heap: with loops calibrated
# per pass, 8 of 39 benchmarks ran with different loops on different sides
# or passes (create_gc_cycles 32 or 64); fixed, every side times the same
# work per value (it did not make this VM measurably steadier:
# docs/performance.md, run 2). The first pass calibrates; every
# later pass of every side runs with its loops
# (scripts/pyperf_in_do/sitecustomize.py, RUNTIMESECRET_BENCH_LOOPS).
FIXED_LOOPS = {"in-do", "heap", "heap-opt", "layout"}
INTERPRETERS = {"pristine": "pristine 3.13.5, unpatched",
                "experiment": "`--with-experiment=runtimesecret`",
                "pristine-opt": "pristine 3.13.5, unpatched, "
                "`--enable-optimizations --with-lto`",
                "experiment-opt": "`--with-experiment=runtimesecret "
                "--enable-optimizations --with-lto`",
                "pristine-shifted": "pristine 3.13.5, unpatched, "
                "`CFLAGS=-include cpython-build/layout_pad.h` (a "
                "never-run function in each object file)"}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def snapshot(name, installed):
    """Copy cpython-build/install/INSTALLED to WORK/NAME; its python3."""
    src = os.path.join(INSTALL, installed)
    dst = os.path.join(WORK, name)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)
    return os.path.join(dst, "bin", "python3")


def load_loops(path):
    """{benchmark: sorted list of the loops its values ran with}."""
    out = {}
    for md, b in benchmarks(path):
        for r in b["runs"]:
            if r.get("values"):
                loops = r.get("metadata", {}).get("loops", md.get("loops"))
                out.setdefault(md.get("name"), set()).add(loops)
    return {name: sorted(v) for name, v in out.items()}


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def report(kind, tools_py, files, out_dir, meta):
    title, sides, _ = KINDS[kind]
    names = [side for side, _, _ in sides]
    for (side, _, env), path in zip(sides, files):
        # A report on the wrong thing must not be written: the hook
        # records the mode it ran in; without it both sides would be plain.
        want = env.get("RUNTIMESECRET_BENCH_MODE")
        with open(path) as f:
            got = json.load(f)["metadata"].get("runtimesecret_mode")
        if got != want:
            sys.exit("error: %s ran with runtimesecret_mode=%r, not %r"
                     % (path, got, want))
    # pyperf groups by speed only for two files.
    cmp = subprocess.run(
        [tools_py, "-m", "pyperf", "compare_to", *files, "--table",
         *(["--group-by-speed"] if len(files) == 2 else [])],
        check=True, capture_output=True, text=True).stdout
    values = [load_values(f) for f in files]
    common = sorted(set.intersection(*(set(v) for v in values)))
    missing = sorted(set.union(*(set(v) for v in values)) - set(common))

    def ratios_of(num, den):
        """{benchmark: (ratio of minima, ratio of means)}"""
        return {bm: (min(num[bm]) / min(den[bm]),
                     statistics.mean(num[bm]) / statistics.mean(den[bm]))
                for bm in common}

    ref = values[0]
    ratios = {side: ratios_of(vals, ref)
              for side, vals in zip(names[1:], values[1:])}
    # "side / reference" for every side; with an A/A control in the middle,
    # the last side against that control as well.
    pairs = {"%s / %s" % (side, names[0]): rs for side, rs in ratios.items()}
    for other, vals in zip(names[1:-1], values[1:-1]):
        pairs["%s / %s" % (names[-1], other)] = ratios_of(values[-1], vals)
    gmeans = {pair: (geomean([r[0] for r in rs.values()]),
                     geomean([r[1] for r in rs.values()]))
              for pair, rs in pairs.items()}
    lines = [
        "# pyperformance: " + title,
        "",
        "Made by `%s` on %s, on this project's 2-core x86-64 VM. "
        "The raw report of one run: docs/performance.md has the summary "
        "and the history of runs." % (meta["command"], meta["date"]),
        "",
        "- commit: `%s`" % meta["commit"],
    ]
    for side, inst, env in sides:
        lines.append("- %s: %s (`python3` sha256 `%s`)%s" % (
            side, INTERPRETERS[inst], meta["sha"][side][:16],
            "".join(", `%s=%s`" % kv for kv in env.items())))
    lines += [
        "- %d passes of `pyperformance run --fast` per side, "
        "interleaved (%s), added with `--append`" % (
            meta["passes"], ", ".join(meta["order"])),
        "- %d benchmarks: `%s`" % (len(common), meta["benchmarks"]),
    ]
    if missing:
        lines.append("- results on some sides only (left out): "
                     + ", ".join(missing))
    if kind in FIXED_LOOPS:
        loops = [load_loops(f) for f in files]
        differ = [bm for bm in common
                  if len({tuple(lp.get(bm, ())) for lp in loops}) > 1
                  or len(loops[0].get(bm, ())) > 1]
        lines.append("- loops: every benchmark ran with the loops its first "
                     "pass calibrated, on every side%s%s" % (
                         " (the timed function includes its own set-up)"
                         if kind == "in-do" else "",
                         "; **differing**: " + ", ".join(differ)
                         if differ else ""))
    lines += [
        "",
        "## Summary",
        "",
        "Geometric means over the benchmarks of each side's ratio to %s "
        "(over 1: slower than %s). The minimum is the steadier measure on "
        "this machine (`../shared/notes/pyperformance-here.md`: an A/A pass "
        "differs by ~3 %% on means)." % (names[0], names[0]),
        "",
        "| side | ratio of **minima** | ratio of means |",
        "|---|---|---|",
    ]
    for pair, g in gmeans.items():
        lines.append("| %s | **%.4fx** | %.4fx |" % (pair, g[0], g[1]))
    lines += [
        "",
        "## Per benchmark",
        "",
        "| benchmark | %s min | %s |" % (names[0], " | ".join(
            "%s / %s (min) | (mean)" % (side, names[0])
            for side in names[1:])),
        "|---|---|" + "---|---|" * (len(names) - 1),
    ]
    for bm in common:
        lines.append("| %s | %.4g ms | %s |" % (
            bm, min(ref[bm]) * 1e3, " | ".join(
                "%.3f | %.3f" % ratios[side][bm] for side in names[1:])))
    lines += ["", "## pyperf compare_to (means)", "", "```",
              cmp.rstrip(), "```", ""]
    md = os.path.join(out_dir, "pyperformance-%s.md" % kind)
    write_report(md, "\n".join(lines))
    summary = {"reference": names[0],
               "geomean": {pair: {"min": g[0], "mean": g[1]}
                           for pair, g in gmeans.items()},
               # Not "benchmarks": meta's list of them has that key.
               "ratios": {side: {bm: {"ratio_min": r[0],
                                      "ratio_mean": r[1]}
                                 for bm, r in rs.items()}
                          for side, rs in ratios.items()},
               "missing": missing, **meta}
    write_report(os.path.join(out_dir, "pyperformance-%s.json" % kind),
                 json.dumps(summary, indent=1, sort_keys=True))
    print("\n".join(lines[:lines.index("## Per benchmark")]))
    print("wrote", md)


def main(a):
    """Run (or with a.compare_only, report again) the comparison a.kind:
    a.passes, a.benchmarks, a.out as `bench.py pyperformance` parses
    them."""
    _, sides, subset = KINDS[a.kind]
    benchmarks = a.benchmarks or subset
    results = os.path.join(WORK, "results", a.kind)
    os.makedirs(results, exist_ok=True)
    # File names are compare_to's column titles.
    files = [os.path.join(results, side + ".json") for side, _, _ in sides]
    meta_path = os.path.join(results, "meta.json")
    tools_py = os.path.join(PYPERFORMANCE_VENV, "bin", "python")
    if a.compare_only:
        with open(meta_path) as f:
            meta = json.load(f)
        report(a.kind, tools_py, files, a.out, meta)
        return
    # Every interpreter installed (pristine runs pyperformance), before
    # copying any: else an error that says how to build it.
    for inst in [inst for _, inst, _ in sides] + ["pristine"]:
        interpreter(inst)
    # One snapshot per distinct side name that is an interpreter copy:
    # in-do runs one experiment copy with two environments.
    pys = {}
    for side, inst, env in sides:
        copy = inst if env else side
        if copy not in pys:
            pys[copy] = snapshot(copy, inst)
    if "pristine" not in pys:
        pys["pristine"] = snapshot("pristine", "pristine")
    tools_py = pyperformance_venv(pys["pristine"])
    side_py = {side: pys[inst if env else side] for side, inst, env in sides}
    for f in files:
        if os.path.exists(f):
            os.remove(f)
    # Rotate the sides each pass (A,B then B,A; A,B,C then B,C,A...): no
    # side always runs first.
    order = [(i + j) % len(sides) for i in range(a.passes)
             for j in range(len(sides))]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                             "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    command = "python3 scripts/bench.py pyperformance --kind %s --passes %d" \
        % (a.kind, a.passes)
    if a.benchmarks:
        command += " --benchmarks " + a.benchmarks
    meta = {"command": command,
            "date": datetime.date.today().isoformat(), "commit": commit,
            "passes": a.passes, "order": [sides[i][0] for i in order],
            "benchmarks": benchmarks,
            "sha": {side: sha256(os.path.realpath(side_py[side]))
                    for side, _, _ in sides}}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    loops_path = os.path.join(results, "loops.json")
    if os.path.exists(loops_path):
        os.remove(loops_path)
    for n, i in enumerate(order):
        side, _, env = sides[i]
        print("== pass %d/%d: %s" % (n + 1, len(order), side), flush=True)
        cmd = [tools_py, "-m", "pyperformance", "run", "--fast",
               "--python", side_py[side], "-b", benchmarks,
               "--append", files[i]]
        penv = dict(os.environ)
        env = dict(env)
        if a.kind in FIXED_LOOPS and n > 0:
            if not os.path.exists(loops_path):
                first = load_loops(files[order[0]])
                with open(loops_path, "w") as f:
                    json.dump({bm: lp[-1] for bm, lp in first.items()}, f,
                              indent=1, sort_keys=True)
            env["RUNTIMESECRET_BENCH_LOOPS"] = loops_path
        # The hook reaches the benchmark processes through PYTHONPATH, on
        # every pass of every side: the start-up benchmarks' interpreters
        # import it too, and must all pay the same for it. pyperf passes
        # only the variables named here to its processes.
        penv.update(env, PYTHONPATH=HOOK)
        cmd += ["--inherit-environ", ",".join(sorted(env) + ["PYTHONPATH"])]
        # pyperformance puts the benchmark venvs under ./venv.
        run(cmd, cwd=WORK, env=penv)
    report(a.kind, tools_py, files, a.out, meta)
