"""pyperf's JSON results: reading them, and the table of a run of
`bench.py do` (or `exit-gc`): pairs of the work alone and the same work in
secret.do, the difference and the ratio (means).

  scripts/bench.py report OUT.json
"""

import json
import statistics


def benchmarks(path):
    """(metadata, benchmark) for each benchmark of a pyperf JSON file. pyperf
    stores what all benchmarks share (all of it, with one benchmark: its
    name too) once, in the file's metadata: merged in here."""
    with open(path) as f:
        data = json.load(f)
    shared = data.get("metadata", {})
    for b in data["benchmarks"]:
        yield {**shared, **b.get("metadata", {})}, b


def load_values(path):
    """{benchmark: [values...]} from a pyperf file."""
    out = {}
    for md, b in benchmarks(path):
        vals = [v for r in b["runs"] for v in r.get("values", [])]
        if md.get("name") and vals:
            out.setdefault(md["name"], []).extend(vals)
    return out


def do_table(path):
    """The Markdown table of the pairs X, do(X) in the pyperf file at path
    (and "noop thread-N", "do(noop) thread-N")."""
    means = {name: statistics.mean(v)
             for name, v in load_values(path).items()}
    lines = ["| work | alone | in secret.do | added | ratio |",
             "|---|---|---|---|---|"]
    for name, mean in means.items():
        if name.startswith("do("):
            continue
        if name.startswith("noop thread-"):
            other = "do(noop) thread-" + name.split("-", 1)[1]
        else:
            other = "do(%s)" % name
        if other not in means:
            continue
        m2 = means[other]
        lines.append("| %s | %.0f ns | %.0f ns | %+.0f ns | %.2fx |"
                     % (name, mean * 1e9, m2 * 1e9, (m2 - mean) * 1e9,
                        m2 / mean))
    return "\n".join(lines)
