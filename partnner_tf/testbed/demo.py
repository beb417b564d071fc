"""``partnner demo``: MobileNetV2 over an LTE link that drops and recovers, with the cloud's load stepping."""

from pathlib import Path

import click
import numpy as np

from partnner_tf.manifest import load_manifest
from partnner_tf.testbed.bench import LinkPreset, Run, start_daemon
from partnner_tf.testbed.session import run_edge
from partnner_tf.testbed.board import detect, dilation, emulation_for
from partnner_tf.testbed.link import parse_schedule
from partnner_tf.testbed.load import clients_at, parse_load

#: The demo's world, in seconds from the first frame: good LTE, a drop, an outage-like trough, recovery.
LINK = LinkPreset("lte (drops and recovers)", "steps:0=30e6,14=3e6,24=1e6,32=30e6", "const:20e6", 0.010)
#: Concurrent load clients on the daemon: the cloud gets busy for a while, then quiet again.
LOAD = "0=0,6=3,12=0,36=3,42=0"
DURATION_S = 48.0


def run_demo(out_dir, frames=100000, board="rpi3b", input_shape="224,224,3", duration_s=DURATION_S,
             model="keras.applications.MobileNetV2", board_mode="dilate", echo=click.echo):
    """Convert, serve, run partnner live, then edge-only and cloud-only; print the comparison and a plot."""
    from partnner_tf.testbed.cli import ensure_converted

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cap = detect()
    emu = emulation_for(board)
    if board_mode in ("dilate", "dilate-all"):
        what = "every prefix run" if board_mode == "dilate" else "every prefix run and the frame's other work"
        threads, slowdown = dilation(emu)
        echo(f"board {board}: {what} stretched {slowdown:.1f}x" + (", one interpreter thread" if threads == 1 else ""))
    else:
        echo(f"board {board}: {emu['cpus']} core(s) at {emu['quota']:.3f} of a core each"
             + ("" if cap.can_cap else f" -- NOT emulated: {cap.reason}"))
    tag = Path(model).name.split(".")[-1] + "-" + input_shape.replace(",", "x")
    out = ensure_converted(model, input_shape, out_dir / "models" / tag, progress=echo)
    manifest = load_manifest(out)
    names = {c.id: (c.layers[-1] if c.layers else "") for c in manifest.cuts}
    names[manifest.cloud_only] = "cloud-only: the input is sent"
    names[manifest.edge_only] = "edge-only"
    echo(f"{manifest.name}: {len(manifest.cuts)} cuts (0 = cloud-only, {manifest.edge_only} = edge-only)")
    echo("starting the cloud daemon (2 workers) ...")
    daemon = start_daemon([out], workers=2, log_path=str(out_dir / "daemon.log"))
    up = parse_schedule(LINK.up)
    load = parse_load(LOAD)
    runs = {}
    try:
        for policy in ("partnner", "edge", "cloud"):
            echo(f"\n== {policy}: {duration_s:.0f} s over the emulated link, cloud load {LOAD} ==")
            live = _Live(echo, up, load, names, quiet=policy != "partnner")
            frames_got = run_edge(out, policy, frames=frames, log_path=out_dir / f"{policy}.jsonl",
                                  emulation=board, daemon_endpoint=daemon.endpoint, link=LINK, load=LOAD,
                                  stats_path=out_dir / f"{policy}.link.jsonl", duration_s=duration_s,
                                  on_frame=live, board_mode=board_mode)
            runs[policy] = Run(policy, frames_got)
            live.done(runs[policy])
    finally:
        daemon.stop()
    _summary(runs, echo)
    try:
        echo(f"\nplot: {_plot(runs, up, load, out_dir / 'demo.png', names)}")
    except ImportError as exc:
        echo(f"\nno plot: matplotlib is missing ({exc}); pip install 'partnner-tf[testbed]'")
    echo(f"per-frame logs: {out_dir}/*.jsonl")


class _Live:
    """Prints what the partnner run is doing twice a second: time, link, load, cut, latency."""

    def __init__(self, echo, up, load, names, quiet=False):
        self.echo, self.up, self.load, self.names, self.quiet = echo, up, load, names, quiet
        self.last_t = -1.0
        self.last_cut = None
        self.window = []

    def __call__(self, frame):
        self.window.append(frame["total_s"])
        t = frame.get("wall", 0.0)
        moved = frame["cut"] != self.last_cut
        if self.quiet or (t - self.last_t < 1.0 and not moved):
            self.last_cut = frame["cut"]
            return
        self.last_t = t
        mark = "  <- cut moved" if moved and self.last_cut is not None else ""
        self.last_cut = frame["cut"]
        lat = np.mean(self.window) * 1e3
        self.window = []
        self.echo(f"t {t:5.1f} s  link {self.up.rate_bps(t) / 1e6:5.1f} Mbit/s  load {clients_at(self.load, t)} "
                  f"clients  cut {frame['cut']:3d} ({self.names[frame['cut']][:28]:<28})  {lat:7.1f} ms"
                  f"{'  FALLBACK' if frame.get('fallback') else ''}{mark}")

    def done(self, run):
        if run.ok:
            self.echo(f"{run.policy}: {len(run.frames)} frames, mean {run.mean_s * 1e3:.1f} ms, "
                      f"p95 {run.p95_s * 1e3:.1f} ms")


def _summary(runs, echo):
    echo("\n== comparison (same link and load schedules) ==")
    echo(f"{'policy':<10}{'frames':>8}{'mean ms':>10}{'p95 ms':>10}{'frames/s':>10}")
    for name, r in runs.items():
        if r.ok:
            rate = len(r.frames) / max(r.frames[-1].get("wall", 1.0), 1e-3)
            echo(f"{name:<10}{len(r.frames):>8}{r.mean_s * 1e3:>10.1f}{r.p95_s * 1e3:>10.1f}{rate:>10.1f}")
    p = runs.get("partnner")
    if p is not None and p.ok:
        for other in ("edge", "cloud"):
            r = runs.get(other)
            if r is not None and r.ok:
                echo(f"speedup of partnner over {other}-only: {r.mean_s / p.mean_s:.2f}x (mean latency)")


def _plot(runs, up, load, path, names):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for name, r in runs.items():
        if r.ok:
            ax[0].plot([f["wall"] for f in r.frames], [f["total_s"] * 1e3 for f in r.frames], lw=1,
                       label=f"{name} (mean {r.mean_s * 1e3:.0f} ms)")
    ax[0].set_yscale("log")
    ax[0].set_ylabel("latency ms")
    ax[0].legend(fontsize=8)
    p = runs.get("partnner")
    if p is not None and p.ok:
        ax[1].step([f["wall"] for f in p.frames], [f["cut"] for f in p.frames], where="post")
    ax[1].set_ylabel("partnner's cut")
    t = np.linspace(0, max((r.frames[-1]["wall"] for r in runs.values() if r.ok), default=1), 400)
    ax[2].plot(t, [up.rate_bps(x) / 1e6 for x in t], label="uplink Mbit/s")
    ax[2].plot(t, [clients_at(load, x) for x in t], label="cloud load (clients)")
    ax[2].set_xlabel("seconds")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
