"""Reports of a matrix run: the human table and the chart."""

from .maps import CATEGORIES

SHORT = {"heap": "heap", "stack:main": "stack", "stack:thread": "thread",
         "stack:exited": "exited", "altstack": "alt", "secret-heap": "sheap",
         "anon": "anon", "file": "file", "other": "other"}


def _cell(rec):
    if rec is None:
        return "-"
    if rec.get("status") == "n/a":
        return "n/a"
    if rec.get("copies") is None:
        return "ERROR"
    cats = rec.get("by_category") or {}
    parts = ["%s %d" % (SHORT[k], cats[k]) for k in CATEGORIES if k in cats]
    s = str(rec["copies"])
    if parts:
        s += " (" + ", ".join(parts) + ")"
    core = rec.get("core")
    if core is not None:
        s += " [core %d, regs %d]" % (core["copies"], len(core["registers"]))
    return s


def table(report):
    """The human table: one row per scenario, one column per interpreter
    and mode, then the verdict per interpreter that ran both modes."""
    pys = list(report["interpreters"])
    recs = {(r["label"], r["scenario"], r["mode"]): r for r in report["runs"]}
    cols = []
    for p in pys:
        cols.append((p, "control"))
        if report["interpreters"][p].get("has_secret"):
            cols.append((p, "protected"))
    heads = ["scenario"] + ["%s %s" % c for c in cols] + \
        ["verdict %s" % p for p in pys]
    rows = []
    for sc in report["scenarios"]:
        row = [sc]
        for p, m in cols:
            row.append(_cell(recs.get((p, sc, m))))
        for v in report["verdicts"]:
            if v["scenario"] == sc:
                row.append(v["verdict"])
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [heads])
              for i in range(len(heads))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [heads] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = []
    for p in pys:
        ctrl = [recs.get((p, sc, "control")) for sc in report["scenarios"]]
        ran = [r for r in ctrl if r and r.get("copies") is not None]
        found = [r for r in ran if r["copies"]]
        if ran:
            summary.append("%s: control finds copies in %d of %d scenarios"
                           % (p, len(found), len(ran)))
    legend = ("copies of the secret (all forms) after the result was dropped "
              "and gc.collect() ran; by mapping: " + ", ".join(
                  "%s=%s" % (SHORT[k], k) for k in CATEGORIES))
    return "\n".join(lines + [""] + summary + [legend])


STACK_CATEGORIES = ("stack:main", "stack:thread", "stack:exited", "altstack")


def plot(report, path):
    """Bar chart, log scale: copies per scenario for each interpreter's
    control and (where it has `secret`) protected run; all copies on top,
    the copies on stacks (main, threads, alternate signal stack) below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = {(r["label"], r["scenario"], r["mode"]): r for r in report["runs"]}
    series = []
    for p, info in report["interpreters"].items():
        series.append((p, "control"))
        if info.get("has_secret"):
            series.append((p, "protected"))
    scs = report["scenarios"]
    width = 0.8 / max(1, len(series))
    colors = ["#4c72b0", "#dd8452", "#c44e52", "#55a868", "#8172b3",
              "#937860"]
    floor = 0.5
    fig, axes = plt.subplots(2, 1, sharex=True,
                             figsize=(max(8, 0.55 * len(scs) + 2), 8))

    def count_all(r):
        return r["copies"]

    def count_stacks(r):
        return sum(r["by_category"].get(c, 0) for c in STACK_CATEGORIES)

    panels = ((axes[0], count_all, "all copies"),
              (axes[1], count_stacks, "copies on stacks\n(main, threads, "
               "alternate signal stack)"))
    for ax, count, what in panels:
        for k, (p, m) in enumerate(series):
            xs, ys = [], []
            for i, sc in enumerate(scs):
                r = recs.get((p, sc, m))
                x = i + (k - (len(series) - 1) / 2) * width
                if r is not None and r.get("status") == "error":
                    ax.text(x, floor * 1.05, "crash", ha="center",
                            va="bottom", fontsize=6, rotation=90,
                            color=colors[k % len(colors)])
                if r is None or r.get("copies") is None:
                    continue
                xs.append(x)
                ys.append(count(r))
            bars = ax.bar(xs, [max(y, floor) for y in ys], width,
                          label="%s %s" % (p, m),
                          color=colors[k % len(colors)],
                          hatch="//" if m == "protected" else None,
                          edgecolor="white", linewidth=0.3)
            for b, y in zip(bars, ys):
                if y == 0:
                    ax.text(b.get_x() + b.get_width() / 2, floor * 1.05,
                            "0", ha="center", va="bottom", fontsize=6)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_ylabel(what + " (log)")
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("Copies of the secret in /proc/PID/mem after the work, "
                      "result dropped, gc.collect()")
    axes[1].set_xticks(range(len(scs)))
    axes[1].set_xticklabels(scs, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
