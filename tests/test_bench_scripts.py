"""The measuring scripts users run still run (spec §4): each on a tiny
work, its output read back. They assert nothing about time (no timed
assertion here either): a result is a number of the right shape."""

import json
import os
import subprocess
import sys

from conftest import EXPERIMENT, ROOT, interpreter


def test_async_step_paired_runs_and_reports_each_pair(tmp_path):
    out = tmp_path / "paired.json"
    r = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts",
                                      "async_step_paired.py"),
         "--python", interpreter(EXPERIMENT), "--blocks", "4",
         "--steps", "20", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())["results"]
    assert sorted(res) == ["pingpong A/A", "pingpong protected",
                           "sleep0 A/A", "sleep0 protected"]
    for name, v in res.items():
        assert len(v["samples"]) == len(v["plain_samples"]) == 4, name
        assert isinstance(v["share"], float), name
        assert v["plain"] > 0 and v["q1"] <= v["median"] <= v["q3"], name
        assert "| %s | %s |" % tuple(name.split(" ", 1)) in r.stdout


def test_async_step_paired_refuses_bad_arguments():
    script = os.path.join(ROOT, "scripts", "async_step_paired.py")
    r = subprocess.run([sys.executable, script, "--blocks", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--blocks must be at least 4" in r.stderr
    r = subprocess.run([sys.executable, script, "--python", "/nonexistent"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no interpreter at" in r.stderr
