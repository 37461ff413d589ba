#!/usr/bin/env python3
"""Install the pure-Python `secret` package into an installed interpreter.

Used for the pristine variant: its C code stays upstream's, but
`import secret` then fails with the ImportError that says how to get an
interpreter with the experiment, as in a build with the experiment off.

  add_package.py PREFIX PACKAGE_DIR --stamp F
"""

import argparse
import glob
import os
import shutil

ap = argparse.ArgumentParser()
ap.add_argument("prefix")
ap.add_argument("package")
ap.add_argument("--stamp")
a = ap.parse_args()

(stdlib,) = glob.glob(os.path.join(a.prefix, "lib", "python3.*", "os.py"))
dest = os.path.join(os.path.dirname(stdlib), os.path.basename(a.package))
shutil.rmtree(dest, ignore_errors=True)
shutil.copytree(a.package, dest,
                ignore=shutil.ignore_patterns("__pycache__"))
if a.stamp:
    with open(a.stamp, "w") as f:
        f.write(dest + "\n")
