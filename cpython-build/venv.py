#!/usr/bin/env python3
"""Make a venv from an installed interpreter and install requirements.

  venv.py PYTHON DEST REQUIREMENTS --stamp F

The venv is made anew each time, so it never mixes two builds' packages.
"""

import argparse
import os
import shutil
import sys

ap = argparse.ArgumentParser()
ap.add_argument("python")
ap.add_argument("dest")
ap.add_argument("requirements")
ap.add_argument("--stamp")
a = ap.parse_args()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from steplog import Step  # noqa: E402

shutil.rmtree(a.dest, ignore_errors=True)
# One progress line; pip's output in cpython-build/logs/venv-NAME-pip.log.
with Step("venv-" + os.path.basename(a.dest), "pip") as step:
    for cmd in ([a.python, "-m", "venv", a.dest],
                [os.path.join(a.dest, "bin", "python"), "-m", "pip",
                 "install", "-q", "-r", a.requirements]):
        step.run(cmd)
if a.stamp:
    with open(a.stamp, "w") as f:
        f.write(a.dest + "\n")
