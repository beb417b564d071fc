"""``partnner profile OUT``: time every cut's prefix (LiteRT) and suffix (TensorFlow) on this machine.

The profile is what a pre-characterizing baseline (Neurosurgeon) needs before its first frame,
and what the simulator builds its worlds from; partnner itself never needs one.
"""

import logging
import time
from pathlib import Path

import click
import numpy as np

from partnner_tf.errors import PartnnerError
from partnner_tf.manifest import load_manifest, write_json_atomic

log = logging.getLogger(__name__)


#: Prefixes are timed after this idle pause, as frames run them: a frame's prefix follows a wait
#: on the link or the camera, and after one it ran slower than in a tight loop, the more so the
#: shorter the prefix (MobileNetV2 96x96 on one thread here: cut 2 1.0-1.1 ms after 20 ms idle
#: against 0.55-0.7 back to back, edge-only 2.9-3.3 against 2.6-2.9). Profiled back to back,
#: the testbed's simulator ran small prefixes on its emulated boards up to a third too fast
#: (MobileNetV2 cut 2 on the Pi 3B: 11.8 against 18.4 ms); after 10 ms (5 and 20 did about as
#: well), its partitioned runs came within 15% of the real ones (docs/testbed.md;
#: benchmarks/profile_pause.py measures the pause's effect per cut).
PAUSE_S = 0.01


def _median_time(fn, repeats, pause_s=0.0):
    fn()  # warm-up: first invokes pack weights / trace graphs
    times = []
    for _ in range(repeats):
        if pause_s:
            time.sleep(pause_s)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _rand(shape, dtype, rng):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def profile_edge(manifest, threads=None, repeats=10, progress=None, pause_s=PAUSE_S):
    """Median seconds of each cut's TFLite prefix (0 for the cloud-only cut), each run timed after
    ``pause_s`` idle."""
    from partnner_tf.runtime.interpreter import load_prefix

    rng = np.random.default_rng(0)
    out = []
    used = threads
    for cut in manifest.cuts:
        if cut.prefix is None:
            out.append(0.0)
            continue
        prefix = load_prefix(manifest.path(cut.prefix), threads=threads)
        used = prefix.threads
        inputs = {k: _rand(d["shape"], d["dtype"], rng) for k, d in prefix.inputs.items()}
        out.append(_median_time(lambda: prefix.run(inputs), repeats, pause_s))
        if progress:
            progress(f"edge cut {cut.id}: {out[-1] * 1e3:.2f} ms")
    return out, used


def profile_cloud(manifest, repeats=10, progress=None):
    """Median seconds of each cut's TensorFlow suffix (0 for the edge-only cut)."""
    from partnner_tf.runtime.cloud.suffix import build_suffix, load_model

    model = load_model(manifest.path(manifest.model_file))
    rng = np.random.default_rng(0)
    out = []
    for cut in manifest.cuts:
        if cut.is_edge_only:
            out.append(0.0)
            continue
        suffix = build_suffix(model, cut)
        tensors = [_rand(s, d, rng) for s, d in suffix.specs]
        out.append(_median_time(lambda: suffix(tensors), repeats))
        if progress:
            progress(f"cloud cut {cut.id}: {out[-1] * 1e3:.2f} ms")
    return out


def make_profile(out_dir, threads=None, repeats=10, progress=None, pause_s=PAUSE_S):
    """Profile every cut of the converted model in ``out_dir``; returns the profile dict."""
    if repeats < 1:
        raise PartnnerError(f"repeats: expected >= 1, received {repeats}")
    manifest = load_manifest(out_dir)
    t0 = time.perf_counter()
    edge, used_threads = profile_edge(manifest, threads, repeats, progress, pause_s)
    t1 = time.perf_counter()
    cloud = profile_cloud(manifest, repeats, progress)
    t2 = time.perf_counter()
    # Profiling wall time without the pauses: a profiler need not pause.
    paused = pause_s * repeats * sum(1 for c in manifest.cuts if c.prefix is not None)
    return {
        "format": "partnner-profile",
        "version": 1,
        "model": manifest.name,
        # Wall time of each side too: a slower board takes longer to profile its prefixes.
        "edge": {"threads": used_threads, "cut_s": edge, "profiling_s": t1 - t0 - paused, "pause_s": pause_s},
        "cloud": {"cut_s": cloud, "profiling_s": t2 - t1},
        "profiling_s": t2 - t0 - paused,
        "repeats": repeats,
        # The cut table, so a profile alone is enough to simulate a world.
        "cuts": [{"boundary_bytes": c.boundary_bytes, "prefix_macs": c.prefix_macs,
                  "suffix_macs": c.suffix_macs} for c in manifest.cuts],
    }


@click.command("profile")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Profile JSON to write [default: OUT/profile.json].")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="LiteRT threads [default: all CPUs].")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timed runs per cut (after one warm-up); the median is kept.")
@click.option("--pause-ms", type=click.FloatRange(min=0), default=1e3 * PAUSE_S, show_default=True,
              help="Idle pause before each timed prefix run, as between frames (0: a tight loop).")
@click.option("--quiet", is_flag=True, help="No per-cut lines.")
def profile(out_dir, output, threads, repeats, pause_ms, quiet):
    """Time each cut's prefix (LiteRT) and suffix (TensorFlow) of the model converted in OUT_DIR.

    Writes the profile JSON a Neurosurgeon-style selector and the simulator (partnner sim
    --profile) take. partnner itself needs no profile.
    """
    echo = None if quiet else (lambda s: click.echo(s, err=True))
    data = make_profile(out_dir, threads=threads, repeats=repeats, progress=echo, pause_s=pause_ms / 1e3)
    output = output or out_dir / "profile.json"
    write_json_atomic(output, data)
    click.echo(f"wrote {output}: {len(data['cuts'])} cuts, profiling took {data['profiling_s']:.1f} s")
