"""Where the scanner finds its harness, its scenarios and the interpreters
./run build installs."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RESIDUE_DIR = os.path.join(ROOT, "tests", "residue")
SCENARIO_DIR = os.path.join(RESIDUE_DIR, "scenarios")
HARNESS = os.path.join(RESIDUE_DIR, "harness.py")
INSTALL = os.path.join(ROOT, "cpython-build", "install")
DEFAULT_PYTHONS = (("pristine", os.path.join(INSTALL, "pristine", "bin",
                                             "python3")),
                   ("experiment", os.path.join(INSTALL, "experiment", "bin",
                                               "python3")))
