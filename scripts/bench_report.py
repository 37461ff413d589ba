#!/usr/bin/env python3
"""Turn scripts/bench_do.py's pyperf JSON into a table of pairs: the work
alone, the same work in secret.do, the difference and the ratio.

  python scripts/bench_report.py out.json [--markdown]
"""

import argparse
import json
import statistics


def values(bench):
    out = []
    for run in bench["runs"]:
        out.extend(run.get("values", []))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    a = ap.parse_args()
    with open(a.json) as f:
        data = json.load(f)
    stats = {}
    for b in data["benchmarks"]:
        name = b.get("metadata", {}).get("name") or \
            data["metadata"].get("name")
        v = values(b)
        if v:
            stats[name] = (statistics.mean(v), statistics.stdev(v) if
                           len(v) > 1 else 0.0, min(v))
    print("| work | alone | in secret.do | added | ratio |")
    print("|---|---|---|---|---|")
    for name, (mean, sd, mn) in stats.items():
        if name.startswith("do("):
            continue
        if name.startswith("noop thread-") or name.startswith("stack-") \
                or name in ("noop", "hmac", "aesgcm"):
            if name.startswith("noop thread-"):
                other = "do(noop) thread-" + name.split("-", 1)[1]
            else:
                other = "do(%s)" % name
            if other not in stats:
                continue
            m2 = stats[other][0]
            print("| %s | %.0f ns | %.0f ns | %+.0f ns | %.2fx |"
                  % (name, mean * 1e9, m2 * 1e9, (m2 - mean) * 1e9,
                     m2 / mean))


if __name__ == "__main__":
    main()
