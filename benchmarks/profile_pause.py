"""Profile pause: a prefix timed back to back against one timed after an idle pause, as in a stream.

    .venv/bin/python benchmarks/profile_pause.py [--pauses 0,1,5,10,20,60] [--runs 25] [--rounds 3]

``partnner profile`` times each prefix after ``--pause-ms`` idle (default 10): in a stream a
prefix runs after a wait on the link or the camera, and then runs slower than in a tight loop,
the more so the shorter the prefix. This measures that on MobileNetV2 96x96 (converted once into
a cache folder, one interpreter thread, as the testbed's emulated boards run it): per pause, the
median of ``--runs`` runs of each cut's prefix (timed as ``partnner profile`` times them), over
``--rounds`` rounds interleaving the pauses (so the host's drift falls on all alike); ratios
against back to back (pause 0) in the same round, median over rounds. Writes benchmarks/results/profile_pause.md.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = (96, 96, 3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pauses", default="0,1,5,10,20,60", help="idle pauses, ms (0: back to back)")
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default="/tmp/partnner-bench/mobilenetv2-96-pareto")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from partnner_tf.manifest import load_manifest
    from partnner_tf.runtime.interpreter import load_prefix
    from partnner_tf.runtime.profile import _median_time, _rand  # what `partnner profile` times with

    out = Path(args.cache)
    if not (out / "manifest.json").exists():
        from partnner_tf.converters import convert

        print(f"converting MobileNetV2 96x96 into {out} ...", file=sys.stderr)
        convert("keras.applications.MobileNetV2", out, input_shape=SHAPE)
    m = load_manifest(out)
    pauses = [float(p) for p in args.pauses.split(",")]
    if 0.0 not in pauses:
        pauses.insert(0, 0.0)
    rng = np.random.default_rng(0)
    prefixes = {}
    for c in m.cuts:
        if c.prefix is not None:
            p = load_prefix(m.path(c.prefix), threads=1)
            prefixes[c.id] = (p, {k: _rand(d["shape"], d["dtype"], rng) for k, d in p.inputs.items()})
    t0 = time.perf_counter()
    ms = {(c, p): [] for c in prefixes for p in pauses}
    ratio = {(c, p): [] for c in prefixes for p in pauses}
    for _ in range(args.rounds):
        for c, (prefix, inputs) in prefixes.items():
            base = None
            for p in pauses:
                t = _median_time(lambda: prefix.run(inputs), args.runs, p / 1e3)
                base = t if p == 0.0 else base
                ms[(c, p)].append(1e3 * t)
                ratio[(c, p)].append(t / base)
    wall = time.perf_counter() - t0
    edge_only = max(prefixes)
    lines = ["# profile_pause: prefix runs back to back against after an idle pause (MobileNetV2 96x96, one thread)", "",
             f"Command: `.venv/bin/python benchmarks/profile_pause.py --pauses {args.pauses} --runs {args.runs} "
             f"--rounds {args.rounds}`; {wall:.0f} s wall.", "",
             "Per cut: median ms back to back, then each pause's median time over back to back in the same round "
             "(median over rounds). `partnner profile` pauses 10 ms by default.", "",
             "| cut | prefix MMACs | back to back ms | " + " | ".join(f"{p:g} ms pause" for p in pauses if p) + " |",
             "|---|---|---|" + "---|" * (len(pauses) - 1)]
    for c in prefixes:
        cells = [f"{statistics.median(ratio[(c, p)]):.2f}" for p in pauses if p]
        label = f"{c} (edge-only)" if c == edge_only else str(c)
        lines.append(f"| {label} | {m.cuts[c].prefix_macs / 1e6:.1f} | {statistics.median(ms[(c, 0.0)]):.2f} | "
                     + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "profile_pause.md").write_text(text)


if __name__ == "__main__":
    main()
