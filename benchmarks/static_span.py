"""Partnner against the best static cut over the same stretch of each world, beside the selector
benchmark's figure over the same number of frames.

    .venv/bin/python benchmarks/static_span.py [--seeds 0,7,13] [--frames 1500] [--worlds 24] [--profiles DIR]

The selector benchmark runs every policy and every fixed cut for the same number of frames, each
at its own pace: a slower run sees more of the world (a trace's later outage, a load step
more frames long). Here the best static cut in hindsight and partnner are also compared over the
frames that start within the oracle's run (the fastest, so every run covers it): the same seconds of
every trace and schedule for all. The worlds are selector_bench.py's. Writes
benchmarks/results/static_span.md (static_span_<DIR's name>.md with ``--profiles``; other seeds
than 0,7,13 with ``_seeds<s1-s2-...>`` at the end).
"""

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from partnner_tf.sim import run_policy, run_static

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selector_bench  # noqa: E402  (the same worlds)

HERE = Path(__file__).resolve().parent


def _split(task):
    label, held, seed, worlds, frames, profile_dir = task
    rows = []
    for kind, w in selector_bench.make_worlds(worlds, seed + (1000 if held else 0), held, 0.0, profile_dir):
        oracle = run_policy(w, "oracle", frames, seed)
        span = float(oracle.start[-1] + oracle.total[-1])
        p = run_policy(w, "partnner", frames, seed)
        all_means, _ = run_static(w, frames, seed)
        span_means, _ = run_static(w, frames, seed, span_s=span)
        rows.append({"world": w.name, "frames": p.mean / all_means.min(), "cut": int(all_means.argmin()),
                     "span": p.total[p.start < span].mean() / span_means.min(), "span_cut": int(span_means.argmin()),
                     "span_s": span, "partnner_s": float(p.start[-1] + p.total[-1])})
    return label, seed, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--worlds", type=int, default=24, help="worlds per split")
    ap.add_argument("--seeds", default=selector_bench.SEEDS)
    ap.add_argument("--profiles", metavar="DIR", default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tasks = [(label, held, int(seed), args.worlds, args.frames, args.profiles)
             for label, held in (("tune", False), ("held-out", True)) for seed in args.seeds.split(",")]
    with ProcessPoolExecutor(max_workers=min(len(tasks), os.cpu_count() or 1)) as pool:
        results = list(pool.map(_split, tasks))
    command = (f"`.venv/bin/python benchmarks/static_span.py --seeds {args.seeds} --frames {args.frames} "
               f"--worlds {args.worlds}" + (f" --profiles {args.profiles}" if args.profiles else "") + "`")
    lines = ["# Partnner against the best static cut: same frames, same seconds", "",
             f"{command}; {time.perf_counter() - t0:.0f} s wall.", "",
             "Worst and geometric mean over each split's worlds of partnner's mean latency over the best fixed",
             "cut's in hindsight: over the same number of frames (as selector_bench.py), and over the frames",
             "that start within the oracle's run, the same seconds of the world for every run.", "",
             "| split | worlds | worst, same frames | worst, same seconds | geo mean, same frames | geo mean, same seconds |",
             "|---|---|---|---|---|---|"]
    moved = []
    for label, seed, rows in results:
        f = np.array([r["frames"] for r in rows])
        s = np.array([r["span"] for r in rows])
        lines.append(f"| {label} s{seed} | {len(rows)} | {f.max():.3f} | {s.max():.3f} | "
                     f"{np.exp(np.log(f).mean()):.3f} | {np.exp(np.log(s).mean()):.3f} |")
        moved += [(label, seed, r) for r in rows if abs(r["frames"] - r["span"]) >= 0.01]
    lines += ["", "Worlds where the two differ by 0.01 or more (runs' seconds: the oracle's, partnner's):", "",
              "| split | world | same frames (best cut) | same seconds (best cut) | oracle s | partnner s |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {label} s{seed} | {r['world']} | {r['frames']:.3f} ({r['cut']}) | {r['span']:.3f} ({r['span_cut']}) | "
              f"{r['span_s']:.1f} | {r['partnner_s']:.1f} |" for label, seed, r in moved]
    if not moved:
        lines.append("| (none) | | | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        name = ("static_span" + (f"_{Path(args.profiles).resolve().name}" if args.profiles else "")
                + ("" if args.seeds == selector_bench.SEEDS else "_seeds" + args.seeds.replace(",", "-")))
        out = HERE / "results" / f"{name}.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
