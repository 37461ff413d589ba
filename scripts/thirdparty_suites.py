#!/usr/bin/env python3
"""Other projects' own test suites, run on the experiment with every test
inside secret.do() (scripts/pytest_secret_do.py), against the same suites
on pristine: the same outcome for every test, no crash; and a residue
check on a sample of cryptography's keyed tests (copies of the key left by
the call: none inside do(), some in the control without it).

    python3 scripts/thirdparty_suites.py [--suites cryptography,pyyaml]
        [--subset M/N] [--scan K] [--work DIR] [--json PATH]

The suites are the ones of the wheels the residue scenarios install
(tests/residue/thirdparty/requirements.txt): cryptography's tests from its
source distribution at that version, its vectors from the
cryptography_vectors distribution; PyYAML's tests from its source
distribution, run against the binary wheel (libyaml's C loader inside).
Both interpreters get a venv under --work with the same packages. Times
are wall clock on this machine, for the record (not a cost measure).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
REQS = os.path.join(ROOT, "tests", "residue", "thirdparty",
                    "requirements.txt")
INSTALL = os.path.join(ROOT, "cpython-build", "install")
# `pip download` of an sdist prepares its metadata; cryptography's
# backend (maturin) would need cargo and the crates' index for that. The
# stand-in backend in this directory reads the sdist's PKG-INFO instead
# (download only: it never builds).
STANDIN = os.path.join(SCRIPTS, "thirdparty_backend")

SUITES = {
    "cryptography": {
        "dist": "cryptography",
        "extra": ["cryptography_vectors=={v}", "pytest==9.2.0", "pretend",
                  "certifi", "pytest-benchmark"],
        "copy": ["tests", "pyproject.toml"],
        "args": ["tests"],
        # The residue check's runs: the primitives' vector tests.
        "scan_args": ["tests/hazmat/primitives"],
        "standin": True,
    },
    "pyyaml": {
        "dist": "PyYAML",
        "extra": ["pytest==9.2.0"],
        "copy": ["tests", "pyproject.toml"],
        "args": ["tests"],
        "standin": False,
    },
}


def pinned():
    out = {}
    for line in open(REQS):
        line = line.split("#")[0].strip()
        if "==" in line:
            name, v = line.split("==")
            out[name.lower()] = v
    return out


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def sources(name, version, work, standin):
    """The suite's tree, from the source distribution."""
    dest = os.path.join(work, "src", "%s-%s" % (name, version))
    if os.path.isdir(dest):
        return dest
    dl = os.path.join(work, "dl")
    os.makedirs(dl, exist_ok=True)
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
           "--no-binary", name, "%s==%s" % (name, version), "-d", dl]
    if standin:
        env["PYTHONPATH"] = STANDIN
        cmd.insert(4, "--no-build-isolation")
    run(cmd, env=env)
    pat = re.compile(r"%s-%s\.tar\.gz$" % (re.escape(name.lower()),
                                           re.escape(version)), re.I)
    sdist = [f for f in os.listdir(dl) if pat.match(f)][0]
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(os.path.join(dl, sdist)) as t:
        t.extractall(tmp, filter="data")
    top = os.path.join(tmp, os.listdir(tmp)[0])
    os.rename(top, dest)
    shutil.rmtree(tmp)
    return dest


def venv(base, path, pkgs):
    if not os.path.exists(os.path.join(path, "ok")):
        shutil.rmtree(path, ignore_errors=True)
        run([base, "-m", "venv", path])
        run([os.path.join(path, "bin", "python"), "-m", "pip", "install",
             "-q", "--only-binary=:all:"] + pkgs)
        open(os.path.join(path, "ok"), "w").close()
    return os.path.join(path, "bin", "python")


def outcomes(junit):
    """{test id: outcome} from a JUnit XML report."""
    out = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        tid = "%s::%s" % (tc.get("classname"), tc.get("name"))
        kind = "passed"
        for child in tc:
            if child.tag in ("failure", "error"):
                kind = "failed" if child.tag == "failure" else "error"
                break
            if child.tag == "skipped":
                kind = "xfailed" if child.get("type") == \
                    "pytest.xfail" else "skipped"
        if tid in out and out[tid] != kind:
            kind = out[tid] + "+" + kind    # setup/teardown error too
        out[tid] = kind
    return out


def run_suite(py, tree, spec, label, work, extra_args, paths=None):
    saved = os.path.join(work, "run-%s.json" % label)
    if REUSE and os.path.exists(saved):
        return json.load(open(saved))
    if ONLY and not label.endswith(tuple(ONLY)) and \
            not any(o in label for o in ONLY):
        return {"label": label, "returncode": None, "seconds": None,
                "counts": {}, "outcomes": None, "tail": ["not run"]}
    junit = os.path.join(work, "junit-%s.xml" % label)
    if os.path.exists(junit):
        os.unlink(junit)
    env = dict(os.environ, PYTHONPATH=SCRIPTS, MALLOC_PERTURB_="0",
               PYTHONDONTWRITEBYTECODE="1")
    if HEAP_SIZE and "pristine" not in label:
        # cryptography's test_update_auto_chunking holds 1.6 GB at once:
        # more than the default secret heap (1 GiB).
        env["PYTHONSECRETHEAPSIZE"] = HEAP_SIZE
    cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-p", "pytest_secret_do", "-o", "console_output_style=classic",
           "--junitxml", junit] + extra_args + (paths or spec["args"])
    print("+ (%s) %s" % (tree, " ".join(cmd)), flush=True)
    t0 = time.monotonic()
    with open(os.path.join(work, "log-%s.txt" % label), "w") as log:
        r = subprocess.run(cmd, cwd=tree, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    secs = time.monotonic() - t0
    tail = open(os.path.join(work, "log-%s.txt" % label)).read()[-600:]
    res = outcomes(junit) if os.path.exists(junit) else None
    counts = {}
    for k in (res or {}).values():
        counts[k] = counts.get(k, 0) + 1
    out = {"label": label, "returncode": r.returncode,
           "seconds": round(secs, 1), "counts": counts,
           "outcomes": res, "tail": tail.strip().splitlines()[-1:],
           "args": extra_args + (paths or spec["args"]),
           "heap_size": env.get("PYTHONSECRETHEAPSIZE")}
    with open(saved, "w") as f:
        json.dump(out, f)
    return out


REUSE = False
ONLY = ()
HEAP_SIZE = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suites", default="cryptography,pyyaml")
    ap.add_argument("--subset", default=None,
                    help="M/N: tests whose crc32(node id) %% N < M")
    ap.add_argument("--scan", type=int, default=20,
                    help="residue check on up to this many keyed tests")
    ap.add_argument("--work", default=os.path.join(ROOT, "cpython-build",
                                                   "thirdparty"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--heap-size", default="4G",
                    help="PYTHONSECRETHEAPSIZE for the experiment's runs "
                         "('' for the default)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the runs already recorded in --work")
    ap.add_argument("--only", default="",
                    help="comma-separated parts of run labels to run "
                         "(pristine, experiment-do, scan); the rest not")
    ap.add_argument("--pristine", default=os.path.join(
        INSTALL, "pristine", "bin", "python3"))
    ap.add_argument("--experiment", default=os.path.join(
        INSTALL, "experiment", "bin", "python3"))
    a = ap.parse_args()
    global REUSE, ONLY, HEAP_SIZE
    REUSE = a.reuse
    HEAP_SIZE = a.heap_size
    ONLY = tuple(x for x in a.only.split(",") if x)
    os.makedirs(a.work, exist_ok=True)
    pins = pinned()
    report = {"subset": a.subset, "suites": {}}
    ok = True
    sel = ["--secret-subset", a.subset] if a.subset else []
    for name in a.suites.split(","):
        spec = SUITES[name]
        v = pins[spec["dist"].lower()]
        tree = sources(spec["dist"], v, a.work, spec["standin"])
        pkgs = ["%s==%s" % (spec["dist"], v)] + \
            [p.format(v=v) for p in spec["extra"]]
        pys = {k: venv(p, os.path.join(a.work, "venv-%s-%s" % (k, name)),
                       pkgs) if os.path.exists(p) else p
               for k, p in (("pristine", a.pristine),
                            ("experiment", a.experiment))}
        runs = {
            "pristine": run_suite(pys["pristine"], tree, spec,
                                  name + "-pristine", a.work,
                                  sel + ["--secret-do=off"]),
            "experiment_do": run_suite(pys["experiment"], tree, spec,
                                       name + "-experiment-do", a.work,
                                       sel + ["--secret-do=on"]),
        }
        if a.scan and name == "cryptography":
            for mode in ("on", "off"):
                rep = os.path.join(a.work, "scan-%s-%s.json" % (name, mode))
                r = run_suite(pys["experiment"], tree, spec,
                              "%s-scan-%s" % (name, mode), a.work,
                              sel + ["--secret-do=" + mode,
                                     "--secret-scan", str(a.scan),
                                     "--secret-report", rep],
                              spec["scan_args"])
                r["scan"] = json.load(open(rep)) if os.path.exists(rep) \
                    else None
                runs["scan_" + mode] = r
        p, e = runs["pristine"]["outcomes"], runs["experiment_do"]["outcomes"]
        diff = None
        if p is not None and e is not None:
            diff = {t: (p.get(t), e.get(t)) for t in set(p) | set(e)
                    if p.get(t) != e.get(t)}
        same = (diff == {} and runs["pristine"]["returncode"]
                == runs["experiment_do"]["returncode"]
                and runs["experiment_do"]["returncode"] >= 0)
        ok = ok and same
        summary = {"version": v, "same_results": same,
                   "differences": dict(list((diff or {}).items())[:50]),
                   "runs": {k: {kk: vv for kk, vv in r.items()
                                if kk != "outcomes"}
                            for k, r in runs.items()}}
        report["suites"][name] = summary
        print(json.dumps({name: {k: (r["returncode"], r["seconds"],
                                     r["counts"])
                                 for k, r in runs.items()},
                          "same_results": same}, indent=1), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
