"""One selector-benchmark world run with many seeds: how much its figure owes to the run's luck.

    .venv/bin/python benchmarks/run_seeds.py [--split held] [--seed 13] [--world 21] [--runs 8] [--stalls 0.02]

selector_bench.py runs each world once, with its split's seed: the noise, the stalls and so the
path partnner's explorations take are that seed's. Here one of its worlds (by split, benchmark
seed and index) is run with seeds 0..runs-1 for partnner, the per-frame oracle and the best
static cut, each against the oracle: the mean over the run, over the frames after the world's
last change, and over the last 300 frames, and the frames to recover from each change (within
10% of the oracle for 3 frames in a row; "never" if not before the run ends). The default
world is held-out seed 13's ResNet50 224x224 load-step world, where the cuts' measured costs
are not monotone in MACs (docs/selector.md, "Known gaps"). Writes
benchmarks/results/run_seeds_<split><seed>_<world>[_stalls].md.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from partnner_tf.sim import frames_to_within, run_policy, run_static

sys.path.insert(0, str(Path(__file__).resolve().parent))
import selector_bench  # noqa: E402  (the same worlds)

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("tune", "held"), default="held")
    ap.add_argument("--seed", type=int, default=13, help="the benchmark seed that drew the world")
    ap.add_argument("--world", type=int, default=21, help="the world's index among its split's 24")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--stalls", type=float, default=0.0)
    args = ap.parse_args(argv)
    held = args.split == "held"
    t0 = time.perf_counter()
    _, w = selector_bench.make_worlds(24, args.seed + (1000 if held else 0), held, args.stalls)[args.world]
    last = w.changes[-1] if len(w.changes) else 0.0
    rows = []
    for run in range(args.runs):
        oracle = run_policy(w, "oracle", args.frames, run)
        means, _ = run_static(w, args.frames, run)
        p = run_policy(w, "partnner", args.frames, run)
        after = int(np.searchsorted(p.start, last))
        rec = [frames_to_within(p.ratio, int(np.searchsorted(p.start, c))) for c in w.changes]
        rows.append((run, p.mean / oracle.mean, float(means.min()) / oracle.mean, p.ratio[after:].mean(),
                     p.ratio[-300:].mean(), ", ".join("never" if r is None else str(r) for r in rec)))
    name = f"run_seeds_{args.split}{args.seed}_{w.name}" + ("_stalls" if args.stalls else "")
    cmd = (f"`.venv/bin/python benchmarks/run_seeds.py --split {args.split} --seed {args.seed} --world {args.world} "
           f"--runs {args.runs} --frames {args.frames}" + (f" --stalls {args.stalls}" if args.stalls else "") + "`")
    out = [f"# {w.name} ({args.split} seed {args.seed}) run with {args.runs} seeds", "",
           f"{cmd}; {time.perf_counter() - t0:.0f} s wall. Changes at {', '.join(f'{c:.1f}' for c in w.changes)} s.",
           "Each figure is partnner's (or the best static cut's) mean latency over the oracle's.", "",
           "| run seed | partnner | best static cut | partnner after the last change | partnner, last 300 frames | recovery frames |",
           "|---|---|---|---|---|---|"]
    for run, vs, st, aft, tail, rec in rows:
        out.append(f"| {run} | {vs:.3f} | {st:.3f} | {aft:.3f} | {tail:.3f} | {rec} |")
    text = "\n".join(out) + "\n"
    (HERE / "results" / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
