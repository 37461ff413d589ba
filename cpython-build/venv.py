#!/usr/bin/env python3
"""Make a venv from an installed interpreter and install requirements.

  venv.py PYTHON DEST REQUIREMENTS --stamp F

The venv is made anew each time, so it never mixes two builds' packages.
"""

import argparse
import os
import shutil
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("python")
ap.add_argument("dest")
ap.add_argument("requirements")
ap.add_argument("--stamp")
a = ap.parse_args()

shutil.rmtree(a.dest, ignore_errors=True)
for cmd in ([a.python, "-m", "venv", a.dest],
            [os.path.join(a.dest, "bin", "python"), "-m", "pip", "install",
             "-q", "-r", a.requirements]):
    print("+ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit("error: `%s` failed" % " ".join(cmd))
if a.stamp:
    with open(a.stamp, "w") as f:
        f.write(a.dest + "\n")
