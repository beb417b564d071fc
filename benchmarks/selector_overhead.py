"""What the selector itself costs per frame, against the edge-only policy's selector and the
model's own edge-only frame (as its profile measured it), on the real profiles' manifests (4-86
cuts) and synthetic ones.

    .venv/bin/python benchmarks/selector_overhead.py [--frames 3000]

Per frame the edge runtime calls ``choose``, ``hedge``, ``observe`` and ``likely_cuts`` (the
preload hint); this loop does the same, on observations drawn from the profile's costs at the
chosen cut (5% noise), so the selector follows its usual path, in two worlds (``WORLDS``): one
where the best cut is partitioned and one where partnner runs edge-only. The figures are
microseconds of this machine's CPU in a tight loop, and in the edge-only world also "cold": with
the caches flushed before each frame, as each frame's interpreter run leaves them in the runtime.
A board's CPU runs Python several times slower. To compare two versions of the selector, run
this script from one tree with ``PYTHONPATH`` set to the other. Results go to
benchmarks/results/selector_overhead.md.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from partnner_tf.selector import Observation, make_selector
from partnner_tf.sim_world import load_profile, profile_manifest, synthetic_manifest, synthetic_profile

HERE = Path(__file__).resolve().parent
POLICIES = ("edge", "neurosurgeon", "partnner")


def manifests():
    """(name, manifest, profile) for each real profile and two synthetic manifests."""
    out = []
    for p in sorted((HERE / "profiles").glob("*.json")):
        prof = load_profile(p)
        out.append((p.stem, profile_manifest(prof), prof))
    for n in (6, 110):
        m = synthetic_manifest(n, seed=n)
        out.append((f"synthetic{n}", m, synthetic_profile(m, seed=n)))
    return out


#: The worlds each selector runs in: (board's slowdown vs the profile, or None to scale the board
#: so that the model's edge-only frame takes the given seconds; those seconds or None; link
#: Mbit/s, link fixed s). Partitioned: a board 10x slower on a 20 Mbit/s link; edge-only: the
#: profiled edge on a 1 Mbit/s link, where partnner runs edge-only (and probes the link now and
#: then); 4 ms: the same with a board as fast as the model's edge-only frame takes 4 ms
#: (yolo_tiny on the Raspberry Pi 5), where partnner keeps its plan over quiet frames (``PLAN_S``).
WORLDS = {"partitioned": (10.0, None, 20.0, 0.01), "edge-only": (1.0, None, 1.0, 0.05),
          "4 ms": (None, 0.004, 1.0, 0.05)}
#: Bytes read between frames (untimed) for the cold figure: an interpreter run leaves the caches
#: full of its own tensors, not the selector's state.
COLD_BYTES = 16 * 2**20


def per_frame_us(manifest, prof, policy, frames, world="partitioned", cold=False, seed=0):
    """Mean wall microseconds of one frame's selector calls, after a warm-up of 100 frames;
    ``cold``: with the caches flushed before each frame."""
    slow, frame_s, mbps, fixed_s = WORLDS[world]
    edge_s = np.asarray(prof["edge"]["cut_s"], dtype=np.float64)
    edge_s = edge_s * (slow if frame_s is None else frame_s / edge_s[manifest.edge_only])
    cloud_s = np.asarray(prof["cloud"]["cut_s"], dtype=np.float64)
    nbytes = np.array([c.boundary_bytes for c in manifest.cuts], dtype=np.float64)
    options = {"profile": prof} if policy == "neurosurgeon" else {}
    sel = make_selector(policy, manifest, **options)
    offer = getattr(sel, "offer_hedge", None)
    if offer is not None:
        offer()
    noise = np.exp(np.random.default_rng(seed).normal(0.0, 0.05, (frames + 100, 2)))
    E = manifest.edge_only

    def frame(i):
        c = sel.choose()
        getattr(sel, "hedge", lambda cut: False)(c)
        if c == E:
            obs = Observation(cut=c, edge_s=edge_s[c] * noise[i, 0])
        else:
            obs = Observation(cut=c, edge_s=edge_s[c] * noise[i, 0], transfer_s=fixed_s + nbytes[c] * 8 / (mbps * 1e6) * noise[i, 1],
                              cloud_s=cloud_s[c], bytes_sent=int(nbytes[c]))
        sel.observe(obs)
        getattr(sel, "likely_cuts", list)()

    for i in range(100):
        frame(i)
    scratch = np.ones(COLD_BYTES // 8) if cold else None
    total = 0.0
    for i in range(100, frames + 100):
        if scratch is not None:
            scratch.sum()
        t0 = time.perf_counter()
        frame(i)
        total += time.perf_counter() - t0
    return total / frames * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name, m, prof in manifests():
        us = {p: per_frame_us(m, prof, p, args.frames) for p in POLICIES}
        us["partnner edge-only"] = per_frame_us(m, prof, "partnner", args.frames, world="edge-only")
        us["cold"] = per_frame_us(m, prof, "partnner", args.frames, world="edge-only", cold=True)
        us["4 ms"] = per_frame_us(m, prof, "partnner", args.frames, world="4 ms")
        us["4 ms cold"] = per_frame_us(m, prof, "partnner", args.frames, world="4 ms", cold=True)
        frame_ms = prof["edge"]["cut_s"][m.edge_only] * 1e3
        rows.append((name, len(m.cuts), us, frame_ms))
        print(f"{name:>24} {len(m.cuts):>4} cuts  " + "  ".join(f"{p} {v:6.1f} us" for p, v in us.items())
              + f"  partnner/edge {us['partnner'] / us['edge']:5.1f}x  cold / the profile's edge-only "
              f"frame {us['cold'] / (frame_ms * 1e3):.2%}  4 ms cold / 4 ms {us['4 ms cold'] / 4e3:.2%}", flush=True)
    lines = ["# Selector cost per frame", "",
             f"`.venv/bin/python benchmarks/selector_overhead.py --frames {args.frames}`: microseconds of this "
             "machine's CPU per frame for `choose` + `hedge` + `observe` + `likely_cuts`, in a tight loop. Partitioned "
             "world: a board 10x slower than the profile on a 20 Mbit/s link; edge-only world: the profiled "
             "edge on a 1 Mbit/s link, where partnner runs edge-only and probes the link now and then; cold: the "
             f"same with {COLD_BYTES >> 20} MiB read (untimed) before each frame, as an interpreter run "
             "leaves the caches; 4 ms: the edge-only world on a board where the model's edge-only frame takes "
             "4 ms (yolo_tiny on the Raspberry Pi 5), where partnner keeps its plan over quiet frames for "
             "20 ms of them.", "",
             "| manifest | cuts | edge-only selector us | neurosurgeon us | partnner us, partitioned | partnner / edge "
             "selector | partnner us, edge-only world | the same, cold | cold / the model's edge-only frame in its "
             "profile | partnner us, 4 ms frames | the same, cold | cold / 4 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, n, us, frame_ms in rows:
        lines.append(f"| {name} | {n} | {us['edge']:.1f} | {us['neurosurgeon']:.1f} | {us['partnner']:.1f} | "
                     f"{us['partnner'] / us['edge']:.0f}x | {us['partnner edge-only']:.1f} | {us['cold']:.1f} | "
                     f"{us['cold'] / (frame_ms * 1e3):.2%} of {frame_ms:.1f} ms | {us['4 ms']:.1f} | "
                     f"{us['4 ms cold']:.1f} | {us['4 ms cold'] / 4e3:.2%} |")
    if not args.no_write:
        out = HERE / "results" / "selector_overhead.md"
        out.write_text("\n".join(lines) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
