"""Partnner's edge-only frames against the edge-only run's, cell by cell, from a paper table's logs.

    .venv/bin/python benchmarks/edge_only_frames.py [--work WORK]

``benchmarks/paper_table.py --work WORK`` keeps every run's per-frame log in
``WORK/bench/cells/<model>__<board>__<link>/``. In each cell where partnner ran the edge-only cut
plainly (not hedged) on 20 frames or more, this compares those frames with the edge-only
policy's, which ran the same interpreter on the same emulated board in turns with it: the median
interpreter time (``edge_s``) and the mean of what each frame adds around it (``total_s -
edge_s``: the selector's ``choose`` and ``observe``, and for partnner the wait for a hedge still
running). It tells whether a cell that ran edge-only yet missed the goal against the edge-only
run lost to its own frames or to the two processes' interpreters. Results go to
benchmarks/results/edge_only_frames.md.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MIN_FRAMES = 20


def frames(path):
    with open(path) as f:
        return [r for r in map(json.loads, f) if "cut" in r]


def cell_row(cell):
    """(cell, frames, edge run's median ms, partnner's, their ratio, the two mean overheads ms) or None."""
    try:
        edge, mine = frames(cell / "edge.jsonl"), frames(cell / "partnner.jsonl")
    except FileNotFoundError:
        return None
    if not edge or not mine:
        return None
    cut = edge[0]["cut"]
    plain = [r for r in mine if r["cut"] == cut and not r.get("hedged")]
    if len(plain) < MIN_FRAMES:
        return None
    e_med = float(np.median([r["edge_s"] for r in edge]))
    p_med = float(np.median([r["edge_s"] for r in plain]))
    e_over = float(np.mean([r["total_s"] - r["edge_s"] for r in edge]))
    p_over = float(np.mean([r["total_s"] - r["edge_s"] for r in plain]))
    return cell.name, len(plain), e_med * 1e3, p_med * 1e3, p_med / e_med, e_over * 1e3, p_over * 1e3


def report(rows, work):
    ratios = np.array([r[4] for r in rows])
    share = np.array([(r[6] - r[5]) / r[2] for r in rows])
    lines = [
        "# Partnner's edge-only frames against the edge-only run's",
        "",
        f"`.venv/bin/python benchmarks/edge_only_frames.py --work {work}`: the cells of a paper table run",
        f"where partnner ran the edge-only cut plainly on {MIN_FRAMES} frames or more ({len(rows)} cells). Interpreter:",
        "the median `edge_s` of those frames over the edge-only run's (same model, board and link,",
        "in turns). Around it: the mean `total_s - edge_s` per frame.",
        "",
        f"Interpreter time, partnner over the edge-only run: geometric mean {math.exp(np.log(ratios).mean()):.3f},",
        f"{ratios.min():.3f}-{ratios.max():.3f}, over 1.05 in {int((ratios > 1.05).sum())} cells. What partnner's frames add",
        f"around it beyond the edge-only run's: median {np.median(share) * 100:.1f}% of the edge-only frame, "
        f"{share.max() * 100:.1f}% at most.",
        "",
        "| cell | frames | edge-only run ms | partnner ms | ratio | around, edge-only run ms | around, partnner ms |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {c} | {n} | {e:.2f} | {p:.2f} | {r:.3f} | {eo:.3f} | {po:.3f} |" for c, n, e, p, r, eo, po in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/paper-table", help="the paper table's --work folder (its default)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    cells = Path(args.work) / "bench" / "cells"
    if not cells.is_dir():
        print(f"{cells}: no such folder; run benchmarks/paper_table.py --work {args.work} first", file=sys.stderr)
        return 2
    rows = [r for r in map(cell_row, sorted(p for p in cells.iterdir() if p.is_dir())) if r]
    if not rows:
        print(f"{cells}: no cell where partnner ran edge-only on {MIN_FRAMES} frames or more", file=sys.stderr)
        return 1
    text = report(rows, args.work)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "edge_only_frames.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
