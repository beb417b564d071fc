"""Bundle sizes per board for MobileNetV2 and ResNet50 (224x224, pareto cuts).

Run: .venv/bin/python benchmarks/bundle_sizes.py [--models MobileNetV2,ResNet50] [--work DIR]

Converts each model once (the converter's cache makes reruns fast), bundles it for every board a
bundle can be made for, and writes benchmarks/results/bundle_sizes.md: bundle MB, prefix MB, wheel
MB, number of cuts, the ratio to the generic-x86_64 bundle (the baseline of the same run), and the
wall time of a bundle with a warm wheel cache.
"""

import argparse
import tarfile
import time
from pathlib import Path

from partnner_tf.boards import list_boards
from partnner_tf.boards.bundle import make_bundle
from partnner_tf.boards.fit import platform_problems
from partnner_tf.boards.wheels import build_wheel

RESULTS = Path(__file__).parent / "results" / "bundle_sizes.md"
BASELINE = "generic-x86_64"


def convert_once(name, work):
    from partnner_tf.converters import convert

    out = work / f"{name}_224"
    if not (out / "manifest.json").is_file():
        convert(f"keras.applications.{name}", out, input_shape=(224, 224, 3), cuts="pareto")
    return out


def sizes(path):
    parts = {"prefixes": 0, "wheels": 0}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            if "/model/" in m.name and m.isfile():
                parts["prefixes"] += m.size  # float prefixes, and int8 copies for the Edge TPU
            elif "/wheels/" in m.name:
                parts["wheels"] += m.size
    return parts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="MobileNetV2,ResNet50")
    ap.add_argument("--work", default="/tmp/partnner-bundle-sizes")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(work / "wheel")
    rows = []
    for name in args.models.split(","):
        out = convert_once(name, work)
        base = None
        boards = sorted(list_boards(), key=lambda b: b.name != BASELINE)  # baseline first
        for board in boards:
            if platform_problems(board):
                rows.append((name, board.name, None, None, None, None, None, None, "refused: " + platform_problems(board)[0]))
                continue
            t0 = time.perf_counter()
            # As the CLI does: Edge TPU boards get full-int8 copies of their prefixes too.
            r = make_bundle(out, board, work / f"{name}-{board.name}.tar.gz", policy="partnner", wheel=wheel,
                            edgetpu=board.accelerator == "edgetpu")
            wall = time.perf_counter() - t0
            p = sizes(r.path)
            base = base or r.bytes
            rows.append((name, board.name, r.bytes, p["prefixes"], p["wheels"], len(r.cuts) - 1,
                         r.bytes / base, wall, ""))
            print(f"{name:12} {board.name:16} {r.bytes / 1e6:7.1f} MB  x{r.bytes / base:.2f}  {wall:.1f} s")
    lines = [
        "# Bundle sizes (224x224, pareto cuts, float32 prefixes; Edge TPU boards add full-int8 copies)",
        "",
        f"Command: `.venv/bin/python benchmarks/bundle_sizes.py`. Ratio: bundle size / the {BASELINE} bundle of the",
        "same model in the same run. Wall: one bundle with a warm wheel cache (wheel build excluded).",
        "",
        "| model | board | bundle MB | prefixes MB | wheels MB | edge cuts | ratio | wall s | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, board, total, pre, whl, cuts, ratio, wall, note in rows:
        if total is None:
            lines.append(f"| {name} | {board} | - | - | - | - | - | - | {note} |")
        else:
            lines.append(f"| {name} | {board} | {total / 1e6:.1f} | {pre / 1e6:.1f} | {whl / 1e6:.1f} | {cuts} | "
                         f"{ratio:.2f} | {wall:.1f} | |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
