"""Wall time of `partnner convert` (cold, cached, --jobs 2) on MobileNetV2 and ResNet50 at 224x224.

Run:  .venv/bin/python benchmarks/convert_bench.py            (about 20-30 min on 2 cores)
      .venv/bin/python benchmarks/convert_bench.py --quick    (96x96, MobileNetV2 pareto only)

Each conversion is a fresh `partnner convert` process (TensorFlow import included, as a user sees
it). Baselines measured in the same run: the cold single-process conversion for cached and
--jobs 2 runs, and `model.export()` + `from_saved_model` for the prefix conversion method.
Writes benchmarks/results/convert_bench.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "convert_bench.md"
PARTNNER = [sys.executable, "-m", "partnner_tf.cli"]


def convert(model, shape, cuts, out, cache, jobs=1):
    """One `partnner convert` process; returns (wall seconds, manifest dict)."""
    cmd = [*PARTNNER, "convert", f"keras.applications.{model}", "-o", str(out), "--input-shape", shape,
           "--cuts", cuts, "--jobs", str(jobs), "--cache-dir", str(cache), "--no-progress"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"convert failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, json.loads((Path(out) / "manifest.json").read_text())


def method_ratio(shape):
    """Seconds to convert the full MobileNetV2 by our concrete-function path and by export()."""
    code = f"""
import os, time, tempfile, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras, tensorflow as tf
from partnner_tf.converters.tflite import convert_prefix
keras.utils.set_random_seed(0)
m = keras.applications.MobileNetV2(weights=None, input_shape=({shape}))
convert_prefix(m, "block_1_project")  # warm up tracing machinery
t = time.perf_counter(); convert_prefix(m, None); ours = time.perf_counter() - t
d = tempfile.mkdtemp()
t = time.perf_counter(); m.export(d, verbose=False)
tf.lite.TFLiteConverter.from_saved_model(d).convert(); export = time.perf_counter() - t
print(json.dumps({{"ours": ours, "export": export}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="96x96, MobileNetV2 pareto only")
    args = ap.parse_args()
    shape = "96,96,3" if args.quick else "224,224,3"
    cases = [("MobileNetV2", "pareto")] if args.quick else [
        ("MobileNetV2", "pareto"), ("ResNet50", "pareto"), ("MobileNetV2", "all"), ("ResNet50", "all")
    ]
    work = Path(tempfile.mkdtemp(prefix="convert-bench-"))
    rows, method = [], None
    try:
        for model, cuts in cases:
            cache = work / f"cache-{model}-{cuts}"
            cold, man = convert(model, shape, cuts, work / "out", cache)
            cached, _ = convert(model, shape, cuts, work / "out", cache)
            row = {
                "model": model, "cuts": cuts, "n_cuts": len(man["cuts"]),
                "candidates": man["candidate_cuts"], "cold_s": cold, "cached_s": cached,
                "edge_mb": man["edge_total_bytes"] / 1e6, "model_mb": man["model"]["bytes"] / 1e6,
                "max_rel_err": max(max(c["verify"]["rel_err"], c["verify"].get("boundary_rel_err", 0))
                                   for c in man["cuts"]),
            }
            if (model, cuts) == cases[0]:  # --jobs 2 once: each run costs minutes on 2 cores
                row["jobs2_s"], _ = convert(model, shape, cuts, work / "out", work / f"cache-{model}-j2", jobs=2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if cuts == "pareto" and method is None:
                method = method_ratio(shape)
                print(json.dumps(method), flush=True)
            write_report(rows, method, shape)  # partial results survive an interrupted run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_report(rows, method, shape):
    lines = [
        "# convert_bench",
        "",
        f"`partnner convert keras.applications.M --input-shape {shape}`, weights=None, one fresh "
        f"process per run (TensorFlow import included). Machine: {os.cpu_count()} cores, shared. "
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| model | cuts | built / candidates | cold s | cached s | cached / cold | --jobs 2 s | jobs2 / cold "
        "| edge total MB | model.keras MB | worst rel err |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        j2 = r.get("jobs2_s")
        j2_s = f"{j2:.1f}" if j2 else "-"
        j2_ratio = f"{j2 / r['cold_s']:.2f}" if j2 else "-"
        lines.append(
            f"| {r['model']} | {r['cuts']} | {r['n_cuts']} / {r['candidates']} | {r['cold_s']:.1f} "
            f"| {r['cached_s']:.1f} | {r['cached_s'] / r['cold_s']:.2f} "
            f"| {j2_s} | {j2_ratio} "
            f"| {r['edge_mb']:.1f} | {r['model_mb']:.1f} | {r['max_rel_err']:.1e} |"
        )
    if method:
        lines += [
            "",
            "Prefix conversion method, full MobileNetV2 in one process: concrete function + injected "
            f"signature {method['ours']:.2f} s vs `model.export()` + `from_saved_model` "
            f"{method['export']:.2f} s (ratio {method['export'] / method['ours']:.1f}x).",
        ]
    lines += [
        "",
        "Cuts built = cloud-only + selected single-tensor cuts + edge-only; candidates = all "
        "single-tensor cut points. Edge total = sum of all prefix .tflite files.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
