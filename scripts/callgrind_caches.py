#!/usr/bin/env python3
"""Instructions of cache-heavy loops outside secret.do(): pristine against
the experiment (patches 0020 and 0021: functools.lru_cache, re and
urllib.parse test secret mode on their miss paths), callgrind,
PYTHONHASHSEED=0:

  python3 scripts/callgrind_caches.py [LABEL=PYTHON ...]

Default: the installed pristine, experiment and off interpreters. Each work
runs N times; a run of 0 times is subtracted (start-up, imports, setup).
Prints instructions per call and each interpreter's ratio to the first.
"""

import os
import sys

from callgrind_in_do import instructions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import functools, re, sys, urllib.parse
work, n = sys.argv[1], int(sys.argv[2])

@functools.lru_cache(maxsize=128)
def bounded(x):
    return x

@functools.cache
def unbounded(x):
    return x

patterns = ["p%d[a-z]+" % i for i in range(300)]
for p in patterns:          # compiled once: later calls miss _cache2 only
    re.compile(p)
# The same setup whatever n is, so that the run of 0 subtracts it.
urls = ["https://u%d.example/x?y=1" % i for i in range(20000)][:n]
keys = range(n)
if work == "lru_hit":
    for i in range(100):
        bounded(i)
    for i in keys:
        bounded(i % 100)
elif work == "lru_miss_bounded":
    for i in keys:
        bounded(-i - 1)
elif work == "lru_miss_unbounded":
    for i in keys:
        unbounded(-i - 1)
elif work == "re_compile_cache2_miss":
    for i in keys:
        re.compile(patterns[i % 300])
elif work == "re_sub_template":
    for i in keys:
        re.sub(r"(a)", r"\1b", "xa")
elif work == "urlsplit_miss":
    for u in urls:
        urllib.parse.urlsplit(u)
elif work == "quote":
    for i in keys:
        urllib.parse.quote("a b/\u00e9")
"""

WORKS = ("lru_hit", "lru_miss_bounded", "lru_miss_unbounded",
         "re_compile_cache2_miss", "re_sub_template", "urlsplit_miss",
         "quote")
N = 20000


def main():
    pythons = [a.split("=", 1) for a in sys.argv[1:]] or [
        (v, os.path.join(ROOT, "cpython-build/install", v, "bin/python3"))
        for v in ("pristine", "experiment", "off")]
    print("| work | " + " | ".join(l for l, _ in pythons) + " |")
    print("|---" * (len(pythons) + 1) + "|")
    for w in WORKS:
        per = [(instructions(py, CHILD, w, str(N))
                - instructions(py, CHILD, w, "0")) / N for _, py in pythons]
        cells = ["%.1f" % per[0]] + ["%.1f (%+.2f %%)" % (
            p, 100 * (p / per[0] - 1)) for p in per[1:]]
        print("| %s | %s |" % (w, " | ".join(cells)))


if __name__ == "__main__":
    main()
