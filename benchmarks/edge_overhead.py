"""Runtime overhead per frame on loopback: total - edge - cloud against a bare pyzmq round trip.

    .venv/bin/python benchmarks/edge_overhead.py [--frames 300]

A small model whose cut boundary is exactly 1 MiB (float32 128x128x16 after a 1x1 convolution)
is converted, served by a real cloud daemon on tcp://127.0.0.1, and streamed through
:class:`EdgeRuntime` at that cut. Per frame, ``total_s - edge_s - cloud_s`` is everything the
runtime, the client, the wire and the daemon's I/O add around the two computations. The baseline
is a bare pyzmq DEALER -> ROUTER round trip in another process carrying the same 1 MiB plus a
small header out and a small reply back. Goal: the median difference under 1 ms.
Results go to benchmarks/results/edge_overhead.json and .md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SHAPE = (128, 128, 16)  # float32: 1 MiB

_ECHO = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.linger = 0
port = s.bind_to_random_port("tcp://127.0.0.1"); print(port, flush=True)
while True:
    msg = s.recv_multipart(copy=False)
    if bytes(msg[1]) == b"stop": break
    s.send_multipart([msg[0], b'{"v":1,"type":"ok","id":1,"outputs":[[1,4]]}', b"\\0" * 16])
"""


def build(out):
    import keras

    from partnner_tf.converters import convert

    keras.utils.set_random_seed(0)
    x = keras.Input(SHAPE, name="image")
    h = keras.layers.Conv2D(SHAPE[-1], 1, name="mix")(x)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    y = keras.layers.Dense(4, name="logits")(h)
    return convert(keras.Model(x, y, name="mib_boundary"), out, cuts=["mix"])


def bare_round_trips(nbytes, n):
    import zmq

    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    try:
        s.connect(f"tcp://127.0.0.1:{int(proc.stdout.readline())}")
        payload = np.ones(nbytes // 4, np.float32)
        header = json.dumps({"v": 1, "type": "infer", "id": 1, "model": "m", "cut": 1,
                             "tensors": [{"dtype": "float32", "shape": [1, *SHAPE]}]}).encode()
        rtt = []
        for i in range(n + 20):
            t = time.perf_counter()
            s.send_multipart([header, payload], copy=False)
            s.recv_multipart()
            if i >= 20:
                rtt.append(time.perf_counter() - t)
        s.send_multipart([b"stop"])
        return rtt
    finally:
        s.close()
        ctx.term()
        proc.wait(timeout=10)


def runtime_frames(out, cut, n):
    from partnner_tf.runtime.cloud.spawn import start_daemon
    from partnner_tf.runtime.edge import EdgeRuntime

    x = np.random.default_rng(0).random((n + 20, *SHAPE), dtype=np.float32)
    with start_daemon([out]) as d, EdgeRuntime(out, cloud=d.endpoint, selector=f"fixed:{cut}", threads=1) as rt:
        results = list(rt.stream(x))[20:]
    assert not any(r.fallback for r in results)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args(argv)
    from partnner_tf.testbed.procs import install_handlers

    install_handlers()  # SIGTERM, like Ctrl-C, ends the processes this benchmark started
    with tempfile.TemporaryDirectory() as tmp:
        m = build(Path(tmp) / "out")
        cut = next(c for c in m.cuts if c.layers and c.layers[-1] == "mix")
        assert cut.boundary_bytes == 1 << 20, cut.boundary_bytes
        results = runtime_frames(m.root, cut.id, args.frames)
    bare = np.array(bare_round_trips(1 << 20, args.frames))
    over = np.array([r.total_s - r.edge_s - r.cloud_s for r in results])
    local = np.array([r.total_s - r.edge_s - r.transfer_s - r.cloud_s for r in results])
    med = {k: float(np.median(v)) * 1e3 for k, v in
           {"runtime": over, "bare": bare, "local": local,
            "edge": np.array([r.edge_s for r in results]), "cloud": np.array([r.cloud_s for r in results])}.items()}
    p95 = {"runtime": float(np.percentile(over, 95)) * 1e3, "bare": float(np.percentile(bare, 95)) * 1e3}
    summary = {"boundary_bytes": 1 << 20, "frames": args.frames, "median_ms": med, "p95_ms": p95,
               "overhead_ms": med["runtime"] - med["bare"], "ratio": med["runtime"] / med["bare"]}
    lines = ["# edge_overhead: runtime overhead per frame, 1 MiB boundary, loopback", "",
             "| | median ms | p95 ms |", "|---|---|---|",
             f"| runtime: total - edge - cloud | {med['runtime']:.3f} | {p95['runtime']:.3f} |",
             f"| bare pyzmq round trip, same bytes | {med['bare']:.3f} | {p95['bare']:.3f} |",
             f"| runtime's own bookkeeping (total - edge - transfer - cloud) | {med['local']:.3f} | |", "",
             f"Overhead beyond the bare round trip: **{summary['overhead_ms']:.3f} ms** median "
             f"(ratio {summary['ratio']:.2f}x); goal < 1 ms. Edge prefix {med['edge']:.2f} ms, "
             f"cloud (queue + compute) {med['cloud']:.2f} ms.", "",
             f"Machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared).", "",
             f"Command: `.venv/bin/python benchmarks/edge_overhead.py --frames {args.frames}`"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "edge_overhead.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "edge_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
