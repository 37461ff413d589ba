#!/usr/bin/env python3
"""What secret.protections() and secret.heap_info() report under the limits
a deployment sets (docs/deploy.md): RLIMIT_MEMLOCK through prlimit, with
and without CAP_IPC_LOCK, core dumps on or off, the heap's size.

  scripts/deploy_matrix.py [PYTHON]     (default: the experiment install)

CAP_IPC_LOCK is taken away with setpriv (dropping needs no privilege);
RLIMIT_MEMLOCK is set with prlimit: lowering it needs no privilege,
raising it above the hard limit needs CAP_SYS_RESOURCE (root), so those
rows say "could not run" for an ordinary user. Prints a Markdown table.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = (sys.argv[1] if len(sys.argv) > 1 else
          os.path.join(ROOT, "cpython-build/install/experiment/bin/python3"))

PROBE = r"""
import json, os, secret, warnings
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    try:
        secret.do(lambda: bytes(os.urandom(64 * 1024)))
        err = None
    except Exception as e:
        err = "%s: %s" % (type(e).__name__, str(e).split(";")[0][:70])
    try:
        p = secret.protections()
    except Exception as e:
        p = {"no_swap": "raises", "no_core_dump": "raises", "heap": "raises"}
info = secret.heap_info()
print(json.dumps({"no_swap": p["no_swap"], "no_core_dump": p["no_core_dump"],
                  "heap": p["heap"], "err": err,
                  "warn": [str(x.message)[:60] for x in w],
                  "size": info["size"], "lockable": info["lockable"],
                  "locked": info["locked"],
                  "locked_bytes": info.get("locked_bytes"),
                  "committed": info.get("committed")}))
"""

NOCAP = ["setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"]


def mib(n):
    if n is None:
        return "-"
    if n < 0:
        return "no limit"
    return "%g MiB" % (n / (1 << 20))


def run(label, prefix, args=(), env=None):
    cmd = prefix + [PYTHON] + list(args) + ["-c", PROBE]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    if r.returncode != 0:
        return "| %s | %s | could not run: %s | | | | | |" % (
            label, " ".join(args) or "-",
            (r.stderr.strip().splitlines() or ["?"])[-1][:80])
    d = json.loads(r.stdout)
    do = "raises %s" % d["err"] if d["err"] else (
        "warns: " + d["warn"][0] if d["warn"] else "ok")
    return ("| %s | %s | %s | %s | %s | %s | %s / %s | %s |"
            % (label, " ".join(args) or "-", d["heap"], d["no_core_dump"],
               d["no_swap"], mib(d["lockable"]), mib(d["locked_bytes"]),
               mib(d["committed"]), do))


def main():
    print("| process | options | heap | no_core_dump | no_swap | "
          "lockable | locked_bytes / committed after a `do` | `do` |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [
        ("as run here (root: CAP_IPC_LOCK)", [], []),
        ("no CAP_IPC_LOCK, `ulimit -l` 8 MiB (Linux's default)",
         ["prlimit", "--memlock=%d" % (8 << 20)] + NOCAP, []),
        ("the same", ["prlimit", "--memlock=%d" % (8 << 20)] + NOCAP,
         ["-X", "secret_heap_size=6M"]),
        ("the same", ["prlimit", "--memlock=%d" % (8 << 20)] + NOCAP,
         ["-X", "secret_require_lock"]),
        ("no CAP_IPC_LOCK, `ulimit -l` 64 KiB (older container runtimes)",
         ["prlimit", "--memlock=65536"] + NOCAP, []),
        ("the same", ["prlimit", "--memlock=65536"] + NOCAP,
         ["-X", "secret_heap_size=6M"]),
        ("no CAP_IPC_LOCK, `ulimit -l` 0",
         ["prlimit", "--memlock=0"] + NOCAP, []),
        ("no CAP_IPC_LOCK, `ulimit -l` 1 GiB",
         ["prlimit", "--memlock=%d" % (1 << 30)] + NOCAP, []),
        ("no CAP_IPC_LOCK, `ulimit -l` 1 GiB + 64 MiB",
         ["prlimit", "--memlock=%d" % ((1 << 30) + (64 << 20))] + NOCAP, []),
        ("no CAP_IPC_LOCK, `ulimit -l unlimited`",
         ["prlimit", "--memlock=unlimited"] + NOCAP, []),
        ("no CAP_IPC_LOCK, 8 MiB, core dumps off (`ulimit -c 0`)",
         ["prlimit", "--memlock=%d" % (8 << 20), "--core=0"] + NOCAP,
         ["-X", "secret_heap_size=6M"]),
    ]
    for label, prefix, args in rows:
        print(run(label, prefix, args))


if __name__ == "__main__":
    main()
