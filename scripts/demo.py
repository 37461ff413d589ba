#!/usr/bin/env python3
"""Show the main job: the experiment interpreter has a working `secret`
module, the pristine one has none, and what a memory scrape finds after a
few scenarios on each. Run by `./run build` after each build.

  demo.py [--install-root cpython-build/install]
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = ["str_processing", "json_config", "bytearray_growth",
             "deep_stack", "signals", "live"]

PROBE = r"""
import platform, sysconfig
print("Python %s, PY_EXPERIMENTS=%r" % (platform.python_version(),
      sysconfig.get_config_var("PY_EXPERIMENTS")))
try:
    import secret
except ImportError as e:
    print("import secret -> %s: %s" % (type(e).__name__, e))
else:
    print("secret.do(lambda x: x + 1, 1) -> %r"
          % secret.do(lambda x: x + 1, 1))
    print("secret.enabled(): %s outside do, %s inside"
          % (secret.enabled(), secret.do(secret.enabled)))
    print("secret.supported() -> %s" % secret.supported())
    p = secret.protections()
    on = [k for k, v in p.items() if v]
    off = [k for k, v in p.items() if not v]
    print("erased at do() exit: %s; not yet: %s"
          % (", ".join(on) or "nothing", ", ".join(off) or "nothing"))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--install-root",
                    default=os.path.join(ROOT, "cpython-build", "install"))
    ap.add_argument("--stamp")
    a = ap.parse_args()
    ok = True
    for name in ("experiment", "pristine"):
        python = os.path.join(a.install_root, name, "bin", "python3")
        print("%s: %s" % (name, os.path.relpath(python, ROOT)))
        r = subprocess.run([python, "-c", PROBE], capture_output=True,
                           text=True)
        for line in (r.stdout + r.stderr).splitlines():
            print("    " + line)
        ok &= r.returncode == 0
    # The residue scanner on a handful of scenarios: where copies of a
    # random secret remain after the work, without and with secret.do.
    print("\nresidue (scripts/residue.py -s %s):" % ",".join(SCENARIOS))
    r = subprocess.run([sys.executable,
                        os.path.join(ROOT, "scripts", "residue.py"),
                        "-s", ",".join(SCENARIOS)],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True)
    sys.stdout.write(r.stdout)
    ok &= r.returncode == 0
    if a.stamp:
        open(a.stamp, "w").close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
