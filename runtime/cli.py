"""``partnner edge run``: stream frames through the edge runtime, with a live line and a JSON log."""

import json
import sys
import time
from collections import Counter

import click
import numpy as np

from partnner_tf.constants import DEFAULT_ENDPOINT, ENV_ENDPOINT, ENV_THREADS


@click.group()
def edge():
    """Run a converted model on this device, partitioned with a cloud daemon."""


@edge.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--cloud", default=DEFAULT_ENDPOINT, envvar=ENV_ENDPOINT, show_default=True,
              help="Cloud daemon endpoint; 'none' runs every frame on the edge.")
@click.option("--source", default="random", show_default=True,
              help="'random' (or random:SEED), a folder of images / .npy files, or one file.")
@click.option("--frames", type=click.IntRange(min=1), default=100, show_default=True,
              help="Number of frames to run.")
@click.option("--policy", default="partnner", show_default=True,
              help="Cut selection: partnner, neurosurgeon, edge, cloud or fixed:K.")
@click.option("--profile", "profile_path", type=click.Path(exists=True, dir_okay=False),
              help="Profile JSON for the neurosurgeon policy.")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, writable=True),
              help="Write one JSON line per frame to this file.")
@click.option("--threads", type=click.IntRange(min=1), envvar=ENV_THREADS,
              help="Interpreter threads (default: the board's, else all CPUs).")
@click.option("--board", help="Board name: its threads and accelerator delegate are the defaults.")
@click.option("--deadline", "deadline_s", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="Cloud deadline (s) when the policy suggests none; past it the frame runs on the edge.")
@click.option("--server-key", type=click.Path(exists=True, dir_okay=False),
              help="CURVE: the daemon's public key file (encrypts and authenticates the link).")
@click.option("--client-key", type=click.Path(exists=True, dir_okay=False),
              help="CURVE: this device's .key_secret file.")
@click.option("--quiet", is_flag=True, help="No live line, only the summary.")
def run(out, cloud, source, frames, policy, profile_path, log_path, threads, board, deadline_s,
        server_key, client_key, quiet):
    """Run FRAMES frames of the model converted in OUT and print a summary."""
    from partnner_tf.runtime.edge import EdgeRuntime, freeze_heap
    from partnner_tf.runtime.sources import open_source

    cloud = None if cloud.lower() in ("", "none") else cloud
    selector_options = {"profile": profile_path} if profile_path else None
    runtime = EdgeRuntime(out, cloud=cloud, selector=policy, board=board, threads=threads,
                          deadline_s=deadline_s, selector_options=selector_options,
                          server_public_key=server_key, client_keypair=client_key)
    log_file = open(log_path, "w", encoding="utf-8") if log_path else None
    live = _Live(quiet)
    results = []
    try:
        with runtime:
            if getattr(runtime.selector, "adaptive", True):
                # Loads while frames run would stall them: the cuts it may swap to load now.
                t = time.perf_counter()
                loaded = runtime.preload()
                if loaded and not quiet:
                    click.echo(f"preloaded the prefixes of cuts {loaded} in {time.perf_counter() - t:.1f} s", err=True)
            freeze_heap()
            for result in runtime.stream(open_source(source, runtime.manifest.input, frames=frames)):
                results.append(result.to_dict())
                live.update(result)
                if log_file is not None:
                    log_file.write(json.dumps(results[-1]) + "\n")
                    log_file.flush()
            live.close()
            click.echo(summary(results, runtime), err=False)
    finally:
        if log_file is not None:
            log_file.close()


class _Live:
    """One status line on stderr: rewritten in place on a terminal, once a second otherwise."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.bps = None
        self.last = 0.0

    def update(self, r):
        if r.bytes_sent and r.transfer_s > 0 and not r.fallback:
            bps = r.bytes_sent * 8 / r.transfer_s
            self.bps = bps if self.bps is None else 0.8 * self.bps + 0.2 * bps
        now = time.monotonic()
        if self.quiet or (not self.tty and now - self.last < 1.0):
            return
        self.last = now
        bw = f"{self.bps / 1e6:8.2f} Mbit/s" if self.bps else "      -- Mbit/s"
        line = (f"frame {r.frame:6d}  cut {r.cut:3d}  {r.total_s * 1e3:8.2f} ms  {bw}"
                f"{'  FALLBACK' if r.fallback else ''}")
        click.echo(("\r" + line) if self.tty else line, err=True, nl=not self.tty)

    def close(self):
        if self.tty and not self.quiet:
            click.echo("", err=True)


def summary(results, runtime):
    """A few lines: latency percentiles, time split, cuts used, fallbacks, swaps."""
    if not results:
        return "no frames"
    total = np.array([r["total_s"] for r in results]) * 1e3
    mean = {k: np.mean([r[k] for r in results]) * 1e3 for k in ("edge_s", "transfer_s", "cloud_s")}
    cuts = Counter(r["cut"] for r in results)
    fallbacks = sum(r["fallback"] for r in results)
    p50, p95, p99 = np.percentile(total, [50, 95, 99])
    return "\n".join([
        f"model {runtime.manifest.name}: {len(results)} frames, policy {getattr(runtime.selector, 'name', type(runtime.selector).__name__)}, "
        f"{runtime.threads} thread(s)",
        f"latency ms: p50 {p50:.2f}  p95 {p95:.2f}  p99 {p99:.2f}  mean {total.mean():.2f}",
        f"mean ms: edge {mean['edge_s']:.2f}  transfer {mean['transfer_s']:.2f}  cloud {mean['cloud_s']:.2f}",
        "cuts: " + ", ".join(f"{c}x{n}" for c, n in sorted(cuts.items())),
        f"fallbacks: {fallbacks}  swaps: {runtime.stats['swaps']}  deferred swaps: {runtime.stats['deferred']}  "
        f"prefix loads: {runtime.cache.stats['misses']} in frame, {runtime.cache.stats['prefetched']} prefetched",
    ])
