"""Calibrate board presets: find the CPU quota at which MobileNetV2 runs as fast as on the board.

    .venv/bin/python -m partnner_tf.testbed.calibrate OUT [--boards rpi4,rpi5] [--write FILE.md]

OUT is MobileNetV2 converted at 224x224 (``partnner convert keras.applications.MobileNetV2
--input-shape 224,224,3 -o OUT``). For each board, the edge-only prefix runs in a process capped
to ``cpus`` cores at ``quota`` of a core each; the quota is rescaled from the measured median
until it lands within 5% of the board's published figure (its registry ``reference``).
"""

import argparse
import json
import sys
import time

import numpy as np

from partnner_tf.errors import EmulationError, PartnnerError
from partnner_tf.testbed import board as boardmod

#: Published MobileNetV2 224x224 latencies (ms) when the boards registry has none.
REFERENCE_MS = {"rpi3b": 120, "rpi4": 30, "rpi5": 9, "jetson-nano": 55, "coral-dev-board": 122}


def measure_here(prefix_path, threads, frames, input_key):
    """Median seconds of one prefix run, in this process (run inside the capped child)."""
    from partnner_tf.runtime.interpreter import load_prefix

    prefix = load_prefix(prefix_path, threads=threads).warm()
    shape, dtype = next(iter(prefix.inputs.values()))["shape"], next(iter(prefix.inputs.values()))["dtype"]
    x = {input_key or next(iter(prefix.inputs)): np.random.default_rng(0).random(shape).astype(dtype)}
    for _ in range(3):
        prefix.run(x)
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        prefix.run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure_capped(out_dir, emulation, frames=15):
    """Median MobileNetV2 (edge-only prefix) seconds in a process capped as ``emulation``."""
    from partnner_tf.manifest import load_manifest

    m = load_manifest(out_dir)
    cut = m.cut(m.edge_only)
    key = m.raw.get("model", {}).get("input", {}).get("signature_key")
    cmd = [sys.executable, "-m", "partnner_tf.testbed.calibrate", "--measure", str(m.path(cut.prefix)),
           "--threads", str(emulation["cpus"]), "--frames", str(frames), "--input-key", key or ""]
    res = boardmod.run_capped(cmd, emulation, timeout_s=600)
    if res.returncode != 0:
        raise EmulationError(f"calibration child failed: {res.stderr.decode()[-2000:]}")
    return json.loads(res.stdout.decode().strip().splitlines()[-1])["median_s"]


def reference_ms(name):
    try:
        from partnner_tf.boards import get_board

        ref = get_board(name).reference.get("mobilenet_v2_224_ms")
        if ref:
            return float(ref)
    except (ImportError, PartnnerError, AttributeError):
        pass
    return float(REFERENCE_MS[name])


def calibrate(out_dir, name, rounds=4, frames=15, log=print):
    """Rescale the quota of board ``name`` until MobileNetV2 matches its reference; returns a row."""
    emu = dict(boardmod.emulation_for(name))
    target = reference_ms(name) / 1000.0
    history = []
    for _ in range(rounds):
        got = measure_capped(out_dir, emu, frames)
        history.append((emu["quota"], got))
        log(f"  {name}: quota {emu['quota']:.4f} x {emu['cpus']} cpus -> {got * 1e3:.1f} ms (target {target * 1e3:.0f})")
        if abs(got / target - 1) <= 0.05:
            break
        # Latency scales roughly as 1/quota; clamp steps so one noisy run cannot swing it far.
        emu["quota"] = float(np.clip(emu["quota"] * got / target, emu["quota"] / 3, min(emu["quota"] * 3, 1.0)))
    best_q, best = min(history, key=lambda h: abs(h[1] / target - 1))
    return {"board": name, "cpus": emu["cpus"], "quota": round(best_q, 4), "target_ms": target * 1e3,
            "measured_ms": best * 1e3, "error": best / target - 1, "history": history}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?")
    p.add_argument("--boards", default=",".join(REFERENCE_MS))
    p.add_argument("--frames", type=int, default=15)
    p.add_argument("--write", help="write a Markdown report here")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--input-key", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.measure:
        print(json.dumps({"median_s": measure_here(a.measure, a.threads, a.frames, a.input_key or None)}))
        return 0
    cap = boardmod.detect()
    if not cap.can_cap:
        raise SystemExit(f"cannot calibrate: {cap.reason}")
    base = measure_capped(a.out, {"cpus": 2, "quota": 1.0}, a.frames)
    print(f"uncapped, 2 threads: {base * 1e3:.2f} ms")
    rows = [calibrate(a.out, name.strip(), frames=a.frames) for name in a.boards.split(",") if name.strip()]
    lines = ["# Board emulation calibration (MobileNetV2 224x224, LiteRT float32, edge-only prefix)", "",
             "Command: `.venv/bin/python -m partnner_tf.testbed.calibrate OUT --write "
             "benchmarks/results/board_calibration.md` (OUT: `partnner convert keras.applications.MobileNetV2 "
             "--input-shape 224,224,3 -o OUT`)", "",
             f"This machine uncapped, 2 threads: {base * 1e3:.2f} ms. Cap: {cap.method} (period: the shortest giving a 1 ms quota, 2-50 ms), taskset.", "",
             "| board | cpus | quota (of a core, per cpu) | published ms | measured ms | error |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['board']} | {r['cpus']} | {r['quota']:.4f} | {r['target_ms']:.0f} | "
                     f"{r['measured_ms']:.1f} | {r['error']:+.1%} |")
    lines += ["", "Iterations (quota -> ms): " + "; ".join(
        f"{r['board']}: " + ", ".join(f"{q:.4f}->{s * 1e3:.1f}" for q, s in r["history"]) for r in rows)]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        from pathlib import Path

        Path(a.write).parent.mkdir(parents=True, exist_ok=True)
        Path(a.write).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
