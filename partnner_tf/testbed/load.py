"""Cloud load on a schedule: concurrent clients of the same daemon, in their own process."""

import argparse
import json
import logging
import subprocess
import sys
import threading
import time

import numpy as np

from partnner_tf.errors import PartnnerError
from partnner_tf.testbed import procs

log = logging.getLogger(__name__)


def parse_load(spec):
    """``"0=0,10=3,20=0"`` -> ``[(0.0, 0), (10.0, 3), (20.0, 0)]``: concurrent clients from time T."""
    if isinstance(spec, (list, tuple)):
        pts = [(float(t), int(n)) for t, n in spec]
    else:
        try:
            pts = [(float(t), int(n)) for t, n in (p.split("=") for p in str(spec).split(",") if p)]
        except ValueError:
            raise PartnnerError(f"load schedule {spec!r}: expected T=CLIENTS,T=CLIENTS, e.g. 0=0,10=3") from None
    if not pts or any(t < 0 or n < 0 for t, n in pts):
        raise PartnnerError(f"load schedule {spec!r}: expected (t >= 0, clients >= 0) steps")
    return sorted(pts)


def clients_at(schedule, t):
    """How many clients the schedule wants at time ``t``."""
    n = 0
    for ts, k in schedule:
        if ts <= t:
            n = k
    return n


def _input_tensor(manifest, cut_id):
    cut = manifest.cut(cut_id)
    specs = cut.boundary or (manifest.input,)
    rng = np.random.default_rng(0)
    tensors = {}
    for spec in specs:
        shape = tuple(int(d) if d else 1 for d in spec.shape)
        tensors[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return list(tensors.values())


def run(endpoint, manifest_dir, schedule, duration_s, cut=0, timeout_s=30.0, out=None):
    """Drive the load in this process until ``duration_s``; returns the number of requests answered."""
    from partnner_tf.client import CloudClient
    from partnner_tf.manifest import load_manifest

    manifest = load_manifest(manifest_dir)
    tensors = _input_tensor(manifest, cut)
    t0 = time.monotonic()
    stop = threading.Event()
    done = [0]

    def client(i):
        with CloudClient(endpoint) as c:
            while not stop.is_set():
                if clients_at(schedule, time.monotonic() - t0) <= i:
                    stop.wait(0.05)
                    continue
                try:
                    c.infer(manifest.name, cut, tensors, timeout_s)
                    done[0] += 1
                except PartnnerError as exc:
                    log.debug("load client %d: %s", i, exc)
                    stop.wait(0.1)

    peak = max(n for _, n in schedule)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(peak)]
    for t in threads:
        t.start()
    if out:
        print(json.dumps({"t0": time.time(), "clients": peak}), file=out, flush=True)
    try:
        stop.wait(duration_s if duration_s else None)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout_s + 1)
    return done[0]


def main(argv=None):
    """``python -m partnner_tf.testbed.load``: load a daemon on a schedule; prints a JSON ready line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--manifest", required=True, help="converted model folder the daemon serves")
    p.add_argument("--schedule", required=True, help="T=CLIENTS,T=CLIENTS (seconds from start)")
    p.add_argument("--cut", type=int, default=0, help="cut the load clients request (0: whole model)")
    p.add_argument("--duration-s", type=float, default=0.0, help="0: until terminated")
    a = p.parse_args(argv)
    n = run(a.endpoint, a.manifest, parse_load(a.schedule), a.duration_s, a.cut, out=sys.stdout)
    print(json.dumps({"requests": n}), flush=True)
    return 0


class LoadProcess:
    """The load generator in its own process group."""

    def __init__(self, endpoint, manifest_dir, schedule, *, cut=0, duration_s=0.0, nice=5):
        sched = parse_load(schedule)
        spec = ",".join(f"{t:g}={n}" for t, n in sched)
        cmd = procs.python_cmd("partnner_tf.testbed.load", "--endpoint", endpoint, "--manifest",
                               manifest_dir, "--schedule", spec, "--cut", cut, "--duration-s", duration_s)
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        self.schedule = sched
        self.proc = procs.spawn(cmd, stdout=subprocess.PIPE)
        info = procs.read_ready_line(self.proc, "cloud load generator")
        self.t0 = info["t0"]

    def clients_at(self, wall):
        return clients_at(self.schedule, wall - self.t0)

    def stop(self):
        procs.terminate(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
