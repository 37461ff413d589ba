"""Running scenarios: one scenario in one mode on one interpreter, and the
whole matrix (every scenario, mode and interpreter) as the report dict."""

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from .child import ChildError, run_child
from .needles import Secret
from .paths import HARNESS
from .scenario import verdict

def probe(python):
    """What an interpreter is: version and whether it has `secret`."""
    code = ("import json, platform\n"
            "try:\n import secret\n p = secret.protections()\n"
            "except ImportError:\n p = None\n"
            "print(json.dumps({'version': platform.python_version(),"
            " 'has_secret': p is not None, 'protections': p}))")
    r = subprocess.run([python, "-I", "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    if r.returncode:
        raise ChildError("%s does not run: %s" % (python, r.stderr))
    info = json.loads(r.stdout)
    info["path"] = python
    return info


def run_scenario(python, scenario, mode, *, secret_len=32, core=False,
                 timeout=120):
    """Run one scenario in one mode on one interpreter; return a dict (the
    --json record). mode: "control" or "protected"."""
    python = os.path.abspath(python)
    secret = Secret(secret_len)
    needles = secret.needles(scenario.forms, scenario.derived)

    def argv(path, ready, go):
        return [python, "-I", "-B", HARNESS, scenario.path, mode, path,
                str(ready), str(go)]

    t0 = time.monotonic()
    rec = {"scenario": scenario.name, "mode": mode, "python": python,
           "keep": scenario.keep, "seconds": None}
    try:
        info, mem, core_scan = run_child(argv, secret, needles, core=core,
                                         timeout=timeout)
    except (ChildError, subprocess.TimeoutExpired, RuntimeError) as e:
        info = {"ok": False, "error": str(e)}
    if not info.get("ok"):
        # n/a: the interpreter lacks `secret` (a protected run on
        # pristine) or a module the scenario REQUIRES.
        rec["status"] = ("n/a" if info.get("error") in (
            "no-secret-module", "missing-module") else "error")
        if info.get("missing"):
            rec["missing"] = info["missing"]
        rec["error"] = info.get("error")
        rec["output"] = info.get("output", "")
        rec["copies"] = None
    else:
        rec["status"] = "ok"
        rec.update(mem.as_dict())
        rec["threads"] = mem.threads
        rec["altstack"] = info.get("altstack")
        if core_scan is not None:
            rec["core"] = core_scan.as_dict()
    rec["seconds"] = round(time.monotonic() - t0, 3)
    return rec


def run_matrix(pythons, scs, *, modes=("control", "protected"), jobs=1,
               core=False, secret_len=32, progress=None):
    """Run every scenario in every mode on every interpreter. pythons:
    [(label, path)]. Returns the report dict (what --json writes)."""
    t0 = time.monotonic()
    interps = {}
    for label, path in pythons:
        interps[label] = probe(path)
    tasks = []
    for label, path in pythons:
        for sc in scs:
            for mode in modes:
                if mode == "protected" and not interps[label]["has_secret"]:
                    continue
                tasks.append((label, path, sc, mode))

    def one(task):
        label, path, sc, mode = task
        rec = run_scenario(path, sc, mode, core=core, secret_len=secret_len)
        rec["label"] = label
        if progress:
            progress(rec)
        return rec

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        runs = list(ex.map(one, tasks))
    recs = {(r["label"], r["scenario"], r["mode"]): r for r in runs}
    verdicts = []
    for label, _ in pythons:
        for sc in scs:
            v = verdict(sc, recs.get((label, sc.name, "control")),
                        recs.get((label, sc.name, "protected")))
            verdicts.append({"label": label, "scenario": sc.name,
                             "verdict": v})
    return {"version": 1, "secret_length": secret_len,
            "interpreters": interps,
            "scenarios": [sc.name for sc in scs],
            "titles": {sc.name: sc.title for sc in scs},
            "runs": runs, "verdicts": verdicts,
            "seconds": round(time.monotonic() - t0, 1)}
