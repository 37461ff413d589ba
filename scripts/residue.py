#!/usr/bin/env python3
"""Residue scanner: look for a secret where an attacker would (spec §5).

  residue.py [-s NAME[,NAME...]] [--python LABEL=PATH ...] [--core]
             [--json FILE|-] [--plot FILE.png] [-j N]

The command; the scanner is the package scripts/residuelib (its docstring
says which module does what). docs/residue.md explains the output.
"""

import sys

from residuelib.cli import main

if __name__ == "__main__":
    sys.exit(main())
