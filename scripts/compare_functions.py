#!/usr/bin/env python3
"""Which functions' machine code differs between two interpreter binaries?

  scripts/compare_functions.py BINARY_A BINARY_B [--show NAME ...]

Disassembles both (objdump -d), function by function, with addresses,
constants and symbol references left out (they move whenever anything
before them changes size), and prints how many functions have the same
instructions, which differ, and which exist in one binary only. --show
prints the differing instructions of the named functions.

For two builds of one change, e.g. issue 22's move (docs/performance.md):
every function outside the names listed runs the same instructions, so a
change in instruction counts elsewhere comes from addresses (hashes of
pointers, alignment), not from code.
"""

import argparse
import difflib
import re
import subprocess
import sys

NORM = re.compile(r"0x[0-9a-f]+|\b[0-9a-f]{5,16}\b|<[^>]*>")


def functions(binary):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         check=True, capture_output=True, text=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        if cur is not None and line.strip():
            cur.append(NORM.sub("", re.sub(r"^\s*[0-9a-f]+:\s*", "", line)))
    return funcs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--show", nargs="*", default=[])
    args = ap.parse_args()
    a, b = functions(args.a), functions(args.b)
    common = set(a) & set(b)
    differ = sorted(f for f in common if a[f] != b[f])
    print("functions: %d in the first, %d in the second; %d the same, "
          "%d differ" % (len(a), len(b), len(common) - len(differ),
                         len(differ)))
    print("differ: %s" % ", ".join(differ))
    print("only in the first: %s" % ", ".join(sorted(set(a) - set(b))))
    print("only in the second: %s" % ", ".join(sorted(set(b) - set(a))))
    for name in args.show:
        print("\n== %s" % name)
        for line in difflib.unified_diff(a.get(name, []), b.get(name, []),
                                         lineterm="", n=1):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
