"""Hot swap: frame latency while the cut changes every few frames, against a fixed cut.

    .venv/bin/python benchmarks/edge_bench.py [--out OUT] [--frames 300] [--every 5]

Without ``--out`` it converts MobileNetV2 (weights=None, 224x224, every 5th of its 74
single-tensor cuts: 15 cuts plus cloud-only and edge-only) once into a cache folder. A real cloud daemon serves it on loopback. Three streams of the same length run through
:class:`EdgeRuntime` against that daemon:

- ``fixed``: the middle cut K for every frame (the baseline);
- ``walk``: the cut moves by 1 or 2 around K every ``--every`` frames, starting cold (only the
  edge-only fallback loaded): the neighbours prefetched in the background are what keeps swaps
  free;
- ``jump``: the cut jumps to any partitioned cut every ``--every`` frames, cold as well and with
  neighbour prefetching off: each cut is first loaded when asked for, in the background, while
  the loaded cut runs a frame or two more (a deferred swap).

Each swapping stream also runs a second time with every prefix loaded before it starts (its
"preloaded twin"): the cuts differ in cost, so the twin isolates what swapping itself costs.
Reported: p50/p99 of each, the ratios to ``fixed``, the loads a frame waited for, the swaps
deferred, and the latency of the first frame after each swap to a never-loaded cut against the
median. Results go to benchmarks/results/edge_bench.json and .md.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from partnner_tf.manifest import load_manifest
from partnner_tf.runtime.edge import EdgeRuntime
from partnner_tf.selector import Selector

RESULTS = Path(__file__).resolve().parent / "results"
#: Room for every prefix at once, so that the preloaded twins hold them all (no eviction).
BUDGET_BYTES = 4 << 30


class Schedule(Selector):
    """Plays a fixed list of cuts, one per frame, and learns nothing."""

    name = "schedule"

    def __init__(self, manifest, cuts):
        super().__init__(manifest)
        self.cuts = list(cuts)
        self.i = 0

    def choose(self):
        cut = self.cuts[min(self.i, len(self.cuts) - 1)]
        self.i += 1
        return cut


def schedules(m, frames, every, seed=0):
    """The cut of every frame for the three streams."""
    rng = np.random.default_rng(seed)
    partitioned = [c.id for c in m.cuts if not c.is_edge_only and c.prefix is not None]
    mid = partitioned[len(partitioned) // 2]
    walk, jump, cut_w, cut_j = [], [], mid, mid
    for i in range(frames):
        if i and i % every == 0:
            step = int(rng.choice([-2, -1, 1, 2]))
            cut_w = int(np.clip(cut_w + step, partitioned[0], partitioned[-1]))
            cut_j = int(rng.choice([c for c in partitioned if c != cut_j]))
        walk.append(cut_w)
        jump.append(cut_j)
    return {"fixed": [mid] * frames, "walk": walk, "jump": jump}


def run_stream(out, endpoint, cuts, x, threads, preload=False, radius=2):
    m = load_manifest(out)
    with EdgeRuntime(out, cloud=endpoint, selector=Schedule(m, cuts), threads=threads,
                     prefetch_radius=radius, budget_bytes=BUDGET_BYTES) as rt:
        if preload:  # the reference: every prefix of the schedule loaded and warmed beforehand
            rt.cache.prefetch(sorted(set(cuts)))
            deadline = time.monotonic() + 300
            while not all(rt.cache.is_ready(c) for c in set(cuts)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prefixes {sorted(set(cuts))} never all loaded: over the budget?")
                time.sleep(0.01)
        rt.infer(x[0])  # first frame of the stream: the cold load of its first cut
        rt.selector.i = 0
        seen, firsts, lat, ran = {cuts[0]}, [], [], []
        for i, frame in enumerate(x):
            r = rt.infer(frame)
            assert not r.fallback, r.error
            lat.append(r.total_s)
            ran.append(r.cut)
            if cuts[i] not in seen:
                seen.add(cuts[i])
                firsts.append(r.total_s)
        return {
            "latency_s": lat, "ran": ran, "first_after_new_cut_s": firsts,
            "loads_in_frame": rt.cache.stats["misses"] - (1 if preload else 2), "waits": rt.cache.stats["waits"],
            "deferred": rt.stats["deferred"], "swaps": rt.stats["swaps"],
            "prefetched": rt.cache.stats["prefetched"],
        }


def convert_spread(out):
    """MobileNetV2 224 with every 5th of its 74 single-tensor cuts: prefixes of every size."""
    import keras

    from partnner_tf.converters import convert
    from partnner_tf.converters import cuts as cuts_mod

    print(f"converting MobileNetV2 224 into {out} ...", file=sys.stderr)
    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    names = [p.layer for p in cuts_mod.cut_points(cuts_mod.Graph(model)) if p.layer][2::5]
    convert("keras.applications.MobileNetV2", out, input_shape=(224, 224, 3), cuts=names)


def load_times(m, cuts, threads):
    from partnner_tf.runtime.interpreter import load_prefix

    ms = []
    for c in cuts:
        t = time.perf_counter()
        load_prefix(m.path(m.cuts[c].prefix), threads=threads).warm()
        ms.append((time.perf_counter() - t) * 1e3)
    return {"median": float(np.median(ms)), "max": float(np.max(ms)), "by_cut": dict(zip(map(str, cuts), ms))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="a converted model folder (default: MobileNetV2 224, converted once)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="each stream runs this many times, interleaved")
    ap.add_argument("--cache", default="/tmp/partnner-bench/mobilenetv2-224-spread")
    args = ap.parse_args(argv)
    from partnner_tf.testbed.procs import install_handlers

    install_handlers()  # SIGTERM, like Ctrl-C, ends the processes this benchmark started
    out = Path(args.out or args.cache)
    if not (out / "manifest.json").exists():
        convert_spread(out)
    m = load_manifest(out)
    x = np.random.default_rng(0).uniform(-1, 1, (args.frames, *m.input.shape[1:])).astype(np.float32)
    from partnner_tf.runtime.cloud.spawn import start_daemon

    plans = schedules(m, args.frames, args.every)
    rows = {}
    streams = (("fixed", "fixed", False, 2), ("walk", "walk", False, 2), ("walk_preloaded", "walk", True, 2),
               ("jump", "jump", False, 0), ("jump_preloaded", "jump", True, 0), ("fixed_again", "fixed", False, 2))
    with start_daemon([out], timeout_s=600) as d:
        # Rounds interleave the streams so that a busy moment of the machine hits them all alike.
        for _ in range(args.rounds):
            for key, name, preload, radius in streams:
                res = run_stream(out, d.endpoint, plans[name], x, args.threads, preload, radius)
                if key not in rows:
                    rows[key] = res
                else:
                    for k, v in res.items():
                        rows[key][k] = rows[key][k] + v
                print(f"{key}: p50 {np.percentile(res['latency_s'], 50) * 1e3:.2f} ms "
                      f"p99 {np.percentile(res['latency_s'], 99) * 1e3:.2f} ms", file=sys.stderr)
    report(m, args, plans, rows)


def report(m, args, plans, rows):
    base = rows["fixed"]["latency_s"] + rows["fixed_again"]["latency_s"]
    b50, b99 = np.percentile(base, [50, 99])
    summary = {"model": m.name, "input": list(m.input.shape), "frames": args.frames, "rounds": args.rounds,
               "every": args.every,
               "threads": args.threads, "cuts": sorted(set(plans["jump"] + plans["walk"])),
               "fixed_cut": plans["fixed"][0], "fixed": {"p50_ms": b50 * 1e3, "p99_ms": b99 * 1e3}}
    lines = [f"# edge_bench: hot swap ({m.name}, input {m.input.shape}, {args.rounds} x {args.frames} frames, "
             f"cut changed every {args.every} frames, {args.threads} thread(s))", "",
             f"Fixed cut {plans['fixed'][0]} ({2 * args.rounds} runs pooled): p50 {b50 * 1e3:.2f} ms, p99 {b99 * 1e3:.2f} ms.", "",
             "| stream | p50 ms | p99 ms | p50 / fixed | p99 / fixed | p99 / preloaded twin | loads in a frame |"
             " deferred swaps | prefetched | first frame on a new cut, median ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("walk", "walk_preloaded", "jump", "jump_preloaded"):
        r = rows[name]
        p50, p99 = np.percentile(r["latency_s"], [50, 99])
        first = float(np.median(r["first_after_new_cut_s"])) if r["first_after_new_cut_s"] else float("nan")
        twin = rows.get(name + "_preloaded")
        twin99 = p99 / np.percentile(twin["latency_s"], 99) if twin else float("nan")
        summary[name] = {"p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "p50_ratio": p50 / b50, "p99_ratio": p99 / b99,
                         "loads_in_frame": r["loads_in_frame"], "waits": r["waits"], "deferred": r["deferred"],
                         "swaps": r["swaps"], "prefetched": r["prefetched"],
                         "first_after_new_cut_ms": first * 1e3, "new_cuts": len(r["first_after_new_cut_s"]),
                         "p99_ratio_preloaded": twin99}
        lines.append(f"| {name} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | {p50 / b50:.2f} | {p99 / b99:.2f} | {twin99:.2f} | "
                     f"{r['loads_in_frame']} | {r['deferred']} | {r['prefetched']} | {first * 1e3:.2f} |")
    summary["prefix_load_ms"] = load_times(m, summary["cuts"], args.threads)
    lines += ["", f"Loading and warming one prefix of these cuts takes {summary['prefix_load_ms']['median']:.1f} ms "
              f"median ({summary['prefix_load_ms']['max']:.1f} ms max): what a frame would pay on a miss.",
              "*_preloaded: the same schedule with every prefix loaded before the stream (swap cost removed); "
              "the fixed cut differs in cost from the others, so compare each stream with its preloaded twin too.",
              f"Machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, shared "
              "with other jobs: the figures move from run to run; the rounds interleave the streams for that.",
              "", "Goal: p99 during swaps within 1.2x of the fixed cut's; the first frame on a never-loaded "
              "cut not paying its load (loads in a frame = 0).", "",
              f"Command: `.venv/bin/python benchmarks/edge_bench.py --frames {args.frames} --every {args.every} --rounds {args.rounds}`"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "edge_bench.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "edge_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(took {time.time() - t0:.0f} s)", file=sys.stderr)
