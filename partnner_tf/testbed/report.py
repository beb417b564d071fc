"""Bench results: a CSV, a Markdown table with speedups and goals, and PNG plots."""

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np

#: Issue 6's goals: partnner within these of the better baseline and of the best fixed cut.
GOAL_VS_BASELINE = 1.05
GOAL_VS_FIXED = 1.10
GOAL_SIM = 0.15

COLUMNS = ("edge", "cloud", "neurosurgeon", "best-fixed", "partnner")


def cell_metrics(cell):
    """Speedups and goal checks of one cell (NaN where a run is missing)."""
    runs = cell.get("runs", {})

    def mean(name):
        r = runs.get(name)
        return r.mean_s if r is not None and r.ok else math.nan

    p, e, c, f = mean("partnner"), mean("edge"), mean("cloud"), mean("best-fixed")
    better = min(e, c) if not (math.isnan(e) or math.isnan(c)) else math.nan
    return {
        "vs_edge": e / p, "vs_cloud": c / p,
        "goal_baseline": p <= GOAL_VS_BASELINE * better if not math.isnan(p + better) else None,
        "goal_fixed": p <= GOAL_VS_FIXED * f if not math.isnan(p + f) else None,
        "p_over_better": p / better, "p_over_fixed": p / f,
    }


def geomean(xs):
    xs = [x for x in xs if x and not math.isnan(x) and x > 0]
    return float(np.exp(np.mean(np.log(xs)))) if xs else math.nan


def write_csv(cells, path):
    rows = []
    for cell in cells:
        for name, r in cell.get("runs", {}).items():
            cuts = Counter(f["cut"] for f in r.frames)
            rows.append({
                "model": cell["model"], "board": cell["board"], "link": cell["link"], "policy": name,
                "run": r.policy, "frames": len(r.frames), "mean_ms": round(r.mean_s * 1e3, 3),
                "p95_ms": round(r.p95_s * 1e3, 3), "fallbacks": sum(bool(f.get("fallback")) for f in r.frames),
                "main_cut": cuts.most_common(1)[0][0] if cuts else "", "error": r.error or "",
            })
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["model"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _fmt(r):
    if r is None:
        return "-"
    if not r.ok:
        return "failed"
    return f"{r.mean_s * 1e3:.1f} / {r.p95_s * 1e3:.1f}"


def markdown(cells, title="partnner bench"):
    """The results table: mean / p95 ms per policy, speedups, goals, sim agreement."""
    lines = [f"# {title}", "", "Mean / p95 end-to-end latency per frame, ms. Speedup = edge-only (or cloud-only) "
             "mean / partnner mean. Goals: partnner <= 1.05 x min(edge, cloud) and <= 1.10 x best fixed cut.", "",
             "| model | board | link | " + " | ".join(COLUMNS) + " | x edge | x cloud | goals |",
             "|" + "---|" * (len(COLUMNS) + 6)]
    xs_e, xs_c, ok_b, ok_f, n = [], [], 0, 0, 0
    for cell in cells:
        if "error" in cell and "runs" not in cell:
            lines.append(f"| {cell['model']} | {cell['board']} | {cell['link']} | cell failed: {cell['error'][:80]} |")
            continue
        runs = cell["runs"]
        m = cell_metrics(cell)
        bf = runs.get("best-fixed")
        cols = [_fmt(runs.get(c)) for c in COLUMNS]
        if bf is not None and bf.ok:
            cols[3] += f" ({bf.policy.split('(')[-1].rstrip(')')})"
        goals = []
        if m["goal_baseline"] is not None:
            goals.append(f"base {'ok' if m['goal_baseline'] else 'MISSED'} ({m['p_over_better']:.2f})")
            n += 1
            ok_b += bool(m["goal_baseline"])
        if m["goal_fixed"] is not None:
            goals.append(f"fixed {'ok' if m['goal_fixed'] else 'MISSED'} ({m['p_over_fixed']:.2f})")
            ok_f += bool(m["goal_fixed"])
        xs_e.append(m["vs_edge"])
        xs_c.append(m["vs_cloud"])
        lines.append(f"| {cell['model']} | {cell['board']} | {cell['link']} | " + " | ".join(cols)
                     + f" | {m['vs_edge']:.2f} | {m['vs_cloud']:.2f} | {', '.join(goals) or '-'} |")
    lines += ["", f"**Geometric mean speedup of partnner: {geomean(xs_e):.2f}x over edge-only, "
              f"{geomean(xs_c):.2f}x over cloud-only** (max {max([x for x in xs_e if not math.isnan(x)] or [math.nan]):.2f}x / "
              f"{max([x for x in xs_c if not math.isnan(x)] or [math.nan]):.2f}x). Goals met: vs the better baseline "
              f"{ok_b}/{n} cells, vs the best fixed cut {ok_f}/{n} cells."]
    lines += _sim_lines(cells)
    return "\n".join(lines) + "\n"


def _sim_lines(cells):
    rows = [(c, c.get("sim")) for c in cells if c.get("sim")]
    if not rows:
        return []
    out = ["", "## Real run vs `partnner sim` (mean latency, sim / real)", "",
           "| model | board | link | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 3)]
    ratios = []
    for cell, sim in rows:
        if "error" in sim:
            out.append(f"| {cell['model']} | {cell['board']} | {cell['link']} | sim failed: {sim['error'][:80]} |")
            continue
        cols = []
        for c in COLUMNS:
            s = sim.get(c)
            cols.append(f"{s['ratio']:.2f}" if s else "-")
            if s:
                ratios.append(s["ratio"])
        out.append(f"| {cell['model']} | {cell['board']} | {cell['link']} | " + " | ".join(cols) + " |")
    within = sum(abs(r - 1) <= GOAL_SIM for r in ratios)
    out += ["", f"Within 15%: {within}/{len(ratios)} policy runs; median |sim/real - 1| = "
            f"{np.median([abs(r - 1) for r in ratios]) if ratios else math.nan:.1%}."]
    return out


def plot_cell(cell, path):
    """Latency over time per policy, partnner's cut, and the link's bandwidth: one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = cell.get("runs", {})
    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for name in ("edge", "cloud", "best-fixed", "partnner"):
        r = runs.get(name)
        if r is None or not r.ok:
            continue
        t = [f.get("wall", i) for i, f in enumerate(r.frames)]
        axes[0].plot(t, [f["total_s"] * 1e3 for f in r.frames], label=r.policy, lw=1)
    axes[0].set_ylabel("latency ms")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    p = runs.get("partnner")
    if p is not None and p.ok:
        axes[1].step([f.get("wall", i) for i, f in enumerate(p.frames)], [f["cut"] for f in p.frames], where="post")
        st = p.link_stats
        if st:
            axes[2].plot([s["t"] for s in st], [s["up_bps"] / 1e6 for s in st], label="uplink capacity")
    axes[1].set_ylabel("partnner cut")
    axes[2].set_ylabel("Mbit/s")
    axes[2].set_xlabel("seconds")
    fig.suptitle(f"{cell['model']} on {cell['board']} over {cell['link']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_speedups(cells, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, e, c = [], [], []
    for cell in cells:
        if "runs" not in cell:
            continue
        m = cell_metrics(cell)
        labels.append(f"{cell['model'][:12]}\n{cell['board']}\n{cell['link']}")
        e.append(m["vs_edge"])
        c.append(m["vs_cloud"])
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels)), 4))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, e, 0.4, label="x over edge-only")
    ax.bar(x + 0.2, c, 0.4, label="x over cloud-only")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=6)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_all(cells, out_dir, title="partnner bench"):
    """CSV, table.md and plots in ``out_dir``; returns the table's text."""
    out_dir = Path(out_dir)
    write_csv(cells, out_dir / "results.csv")
    text = markdown(cells, title)
    (out_dir / "table.md").write_text(text)
    try:
        for cell in cells:
            if "runs" in cell:
                plot_cell(cell, Path(cell["workdir"]) / "timeline.png")
        plot_speedups(cells, out_dir / "speedups.png")
    except ImportError as exc:
        (out_dir / "plots-skipped.txt").write_text(f"matplotlib unavailable: {exc}\n")
    return text
