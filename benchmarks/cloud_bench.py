"""Cloud daemon: wire overhead vs bare pyzmq, throughput vs a bare tf.function loop, start-up time.

Run:  .venv/bin/python benchmarks/cloud_bench.py [--sections overhead,throughput,startup] [--seconds 8]
Writes benchmarks/results/cloud_bench.md and cloud_bench.json. Every ratio is against a
baseline measured in the same run, on the same machine (2 cores, shared: expect noise).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from partnner_tf import protocol
from partnner_tf.client import CloudClient
from partnner_tf.manifest import write_json_atomic
from partnner_tf.runtime.cloud.spawn import start_daemon

RESULTS = Path(__file__).parent / "results"
#: Boundary payloads for the overhead runs: (label, shape) of float32.
PAYLOADS = [("50 KB", (1, 80, 160, 1)), ("1 MiB", (1, 256, 256, 4)), ("4 MiB", (1, 512, 512, 4))]
#: A mid cut of MobileNetV2 (224x224) for the throughput runs: its block-5 residual sum.
THROUGHPUT_CUT = "block_5_add"

ECHO_SERVER = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); port = s.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
small = sys.argv[1] == "small"
while True:
    f = s.recv_multipart(copy=False)
    if f[1].bytes == b"stop": break
    s.send_multipart([f[0], b'{"v":1,"type":"ok","id":0,"tensors":[]}'] if small else f, copy=False)
"""


def _median_ms(xs):
    return statistics.median(xs) * 1000


# -- overhead --------------------------------------------------------------------------------


def _probe_models(work):
    """One converted model per payload: input = the boundary, then a pooling + dense head."""
    import keras

    from partnner_tf.converters import convert

    outs = []
    for label, shape in PAYLOADS:
        keras.utils.set_random_seed(0)
        x = keras.Input(shape[1:], name="boundary")
        y = keras.layers.Dense(10, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
        name = "probe_" + label.replace(" ", "").lower()
        out = work / name
        convert(keras.Model(x, y, name=name), out, cuts="pareto", cache_dir=work / "cache")
        outs.append((label, name, shape, out))
    return outs


def _bare(payload, n, small):
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, "small" if small else "full"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(f"tcp://127.0.0.1:{port}")
        head = protocol.encode_request("infer", 1, model="m", cut=0, tensors=[payload])
        rtts = []
        for i in range(n + 20):
            t0 = time.perf_counter()
            s.send_multipart(head, copy=False)
            s.recv_multipart(copy=False)
            if i >= 20:
                rtts.append(time.perf_counter() - t0)
        s.send_multipart([b"stop"])
        s.close()
        ctx.term()
        return rtts
    finally:
        proc.wait(10)


def overhead(work, n):
    outs = _probe_models(work)
    rows = []
    with start_daemon([o[3] for o in outs]) as d, CloudClient(d.endpoint) as c:
        for label, name, shape, _ in outs:
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            for _ in range(20):
                c.infer(name, 0, [x], timeout_s=10)
            rtt, compute, queue = [], [], []
            for _ in range(n):
                t0 = time.perf_counter()
                r = c.infer(name, 0, [x], timeout_s=10)
                rtt.append(time.perf_counter() - t0)
                compute.append(r.compute_s)
                queue.append(r.queue_s)
            bare_small = _bare(x, n, small=True)
            bare_full = _bare(x, n, small=False)
            over = [a - b for a, b in zip(rtt, compute)]
            rows.append({
                "payload": label, "bytes": x.nbytes,
                "rtt_ms": _median_ms(rtt), "compute_ms": _median_ms(compute), "queue_ms": _median_ms(queue),
                "overhead_ms": _median_ms(over), "p95_overhead_ms": float(np.percentile(over, 95) * 1000),
                "bare_small_reply_ms": _median_ms(bare_small), "bare_echo_ms": _median_ms(bare_full),
                "excess_over_bare_ms": _median_ms(over) - _median_ms(bare_small),
            })
            print(f"overhead {label}: {rows[-1]}", flush=True)
    return rows


# -- throughput ------------------------------------------------------------------------------


def _mobilenet(work, size=224):
    from partnner_tf.converters import convert

    out = work / "mobilenet_v2_mid"
    if not out.exists():
        convert("keras.applications.MobileNetV2", out, input_shape=(size, size, 3), cuts=THROUGHPUT_CUT,
                cache_dir=work / "cache")
    from partnner_tf.manifest import load_manifest

    m = load_manifest(out)
    cut = next(c for c in m.cuts if THROUGHPUT_CUT in c.layers)
    return out, m, cut


BARE_LOOP = """
import sys, time, numpy as np
from partnner_tf.manifest import load_manifest
from partnner_tf.runtime.cloud.suffix import build_suffix, load_model
m = load_manifest(sys.argv[1]); cut = m.cuts[int(sys.argv[2])]
suffix = build_suffix(load_model(m.path(m.model_file)), cut)
x = np.random.default_rng(0).standard_normal(cut.boundary[0].shape).astype(np.float32)
for _ in range(5): suffix([x])
print("ready", flush=True)
for line in sys.stdin:
    seconds = float(line); n = 0; t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        suffix([x]); n += 1
    print(n / (time.perf_counter() - t0), flush=True)
"""


class BareLoop:
    """The same suffix in a bare tf.function loop, in its own process like the daemon's."""

    def __init__(self, out, cut_id):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen([sys.executable, "-c", BARE_LOOP, str(out), str(cut_id)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def rate(self, seconds):
        self.proc.stdin.write(f"{seconds}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(30)


def _load(endpoints, name, cut, shape, clients, seconds):
    """Closed-loop clients (threads, one CloudClient each) for ``seconds``; returns req/s."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = time.perf_counter() + seconds + 1.0

    def run(i):
        with CloudClient(endpoints[i % len(endpoints)]) as c:
            c.infer(name, cut, [x], timeout_s=30)
            start.wait()
            t_end = stop
            while time.perf_counter() < t_end:
                c.infer(name, cut, [x], timeout_s=30)
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def _rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def throughput(work, seconds, rounds=3):
    """Interleaved rounds (bare loop, then each daemon set-up) so load from other jobs on the
    machine hits every configuration alike; medians over the rounds are reported."""
    out, m, cut = _mobilenet(work)
    shape = cut.boundary[0].shape
    pre = ("--preload", str(cut.id))
    setups = [  # (label, daemon args, number of daemons, client counts)
        ("1 daemon, 1 worker (inline in the front-end thread; default)", ("--workers", "1"), 1, (1, 2, 4)),
        ("1 daemon, 2 worker threads sharing 2 intra-op threads", ("--workers", "2", "--intra-op-threads", "2"), 1,
         (1, 2, 4)),
        ("1 daemon, 2 worker threads, 1 intra-op thread each (auto)", ("--workers", "2"), 1, (1, 2, 4)),
        ("2 daemon processes, 1 worker each", ("--workers", "1"), 2, (2, 4)),
    ]
    bare = BareLoop(out, cut.id)
    daemons = {label: [start_daemon(out, args=args + pre) for _ in range(n)] for label, args, n, _ in setups}
    samples = {"bare": []}
    try:
        for r in range(rounds):
            samples["bare"].append(bare.rate(seconds))
            for label, _, _, counts in setups:
                eps = [d.endpoint for d in daemons[label]]
                for clients in counts:
                    rps = _load(eps, m.name, cut.id, shape, clients, seconds)
                    samples.setdefault((label, clients), []).append(rps)
            print(f"round {r}: " + ", ".join(f"{k}: {v[-1]:.1f}" for k, v in samples.items()), flush=True)
        rss = {label: sum(_rss_mb(d.pid) for d in ds) for label, ds in daemons.items()}
    finally:
        bare.close()
        for ds in daemons.values():
            for d in ds:
                d.stop()
    bare_rps = statistics.median(samples["bare"])
    rows = [{"setup": label, "clients": clients, "req_s": statistics.median(samples[(label, clients)]),
             "vs_bare": statistics.median(samples[(label, clients)]) / bare_rps, "rss_mb": rss[label]}
            for label, _, _, counts in setups for clients in counts]
    return {"model": m.name, "cut": cut.id, "layer": THROUGHPUT_CUT, "boundary": list(shape), "bare_req_s": bare_rps,
            "bare_samples": samples["bare"], "rounds": rounds, "rows": rows}


# -- start-up --------------------------------------------------------------------------------


def _all_cuts_folder(app, work, size=224):
    """model.keras + a manifest of every single-tensor cut (prefixes are not built: the daemon
    never reads them, and converting ResNet50's 39 prefixes would take many minutes)."""
    from partnner_tf.converters import cuts as cuts_mod
    from partnner_tf.converters.loading import load

    model, name = load(f"keras.applications.{app}", (size, size, 3))
    out = work / f"{name}_all"
    out.mkdir(exist_ok=True)
    model.save(out / "model.keras")
    points = cuts_mod.cut_points(cuts_mod.Graph(model))
    inp = model.inputs[0].name
    cuts = []
    for i, p in enumerate(points):
        edge_only = i == len(points) - 1
        cuts.append({
            "id": i, "layers": [p.layer] if p.layer else [],
            "prefix": None if i == 0 else f"prefixes/cut_{i}.tflite",
            "boundary_bytes": 0 if edge_only else p.nbytes, "prefix_macs": p.prefix_macs,
            "suffix_macs": p.suffix_macs,
            "boundary": [] if edge_only else [{"name": p.layer or inp, "shape": list(p.shape), "dtype": p.dtype}],
        })
    write_json_atomic(out / "manifest.json", {
        "format": "partnner-manifest", "version": 1,
        "model": {"name": name, "file": "model.keras",
                  "input": {"name": inp, "shape": [1, size, size, 3], "dtype": "float32"}},
        "cuts": cuts})
    return out, len(cuts) - 1


def startup(work):
    rows = []
    for app in ("MobileNetV2", "ResNet50"):
        out, cloud_cuts = _all_cuts_folder(app, work)
        for preload in ("all", "none"):
            t0 = time.perf_counter()
            with start_daemon(out, args=("--preload", preload), timeout_s=900) as d, CloudClient(d.endpoint) as c:
                ready = time.perf_counter() - t0
                info = c.describe()["startup"]
                rss = _rss_mb(d.pid)
            rows.append({"model": app, "cloud_cuts": cloud_cuts, "preload": preload, "ready_s": ready,
                         "load_s": info["load_s"], "warm_s": info["warm_s"], "rss_mb": rss})
            print(f"startup {rows[-1]}", flush=True)
    return rows


# -- report ----------------------------------------------------------------------------------


def report(results, path):
    lines = ["# Cloud daemon benchmark", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores (shared machine); "
             "`.venv/bin/python benchmarks/cloud_bench.py`.", ""]
    if "overhead" in results:
        lines += ["## Overhead on loopback (medians; goal: overhead < 1 ms at 1 MiB)", "",
                  "overhead = client round trip - server compute_s; bare = a pyzmq DEALER/ROUTER process "
                  "receiving the same header + payload and answering a small reply (echo: the payload back).", "",
                  "| payload | round trip ms | compute ms | queue ms | overhead ms | p95 ms | bare ms | bare echo ms | overhead - bare ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in results["overhead"]:
            lines.append(f"| {r['payload']} | {r['rtt_ms']:.3f} | {r['compute_ms']:.3f} | {r['queue_ms']:.3f} | "
                         f"{r['overhead_ms']:.3f} | {r['p95_overhead_ms']:.3f} | {r['bare_small_reply_ms']:.3f} | "
                         f"{r['bare_echo_ms']:.3f} | {r['excess_over_bare_ms']:+.3f} |")
        lines.append("")
    if "throughput" in results:
        t = results["throughput"]
        lines += [f"## Throughput: {t['model']} (224x224) cut {t['cut']} ({t['layer']}, boundary {t['boundary']})", "",
                  f"Bare `tf.function` loop of the same suffix in its own process: **{t['bare_req_s']:.1f} req/s** "
                  f"(median of {t['rounds']} interleaved rounds: {', '.join(f'{x:.1f}' for x in t['bare_samples'])}; "
                  "goal: daemon >= 90% of it).", "",
                  "| setup | clients | req/s | vs bare loop | daemon RSS MB |", "|---|---|---|---|---|"]
        for r in t["rows"]:
            lines.append(f"| {r['setup']} | {r['clients']} | {r['req_s']:.1f} | {r['vs_bare']:.0%} | {r['rss_mb']:.0f} |")
        lines.append("")
    if "startup" in results:
        lines += ["## Start-up (224x224, every single-tensor cut)", "",
                  "ready = spawn to answered ping; load = reading model.keras; warm = building and tracing "
                  "the preloaded suffixes (with `--preload none` they warm in the background after READY).", "",
                  "| model | cloud cuts | --preload | ready s | load s | warm s | RSS MB |", "|---|---|---|---|---|---|---|"]
        for r in results["startup"]:
            lines.append(f"| {r['model']} | {r['cloud_cuts']} | {r['preload']} | {r['ready_s']:.1f} | "
                         f"{r['load_s']:.1f} | {r['warm_s']:.1f} | {r['rss_mb']:.0f} |")
        lines.append("")
    path.write_text("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="overhead,throughput,startup")
    ap.add_argument("--requests", type=int, default=300, help="requests per payload size (overhead)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per throughput point")
    ap.add_argument("--work", default=None, help="folder for converted models (a temporary one by default)")
    args = ap.parse_args()
    from partnner_tf.testbed.procs import install_handlers

    install_handlers()  # SIGTERM, like Ctrl-C, ends the processes this benchmark started
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.work or tempfile.mkdtemp(prefix="cloud-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    RESULTS.mkdir(exist_ok=True)
    json_path = RESULTS / "cloud_bench.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    if "overhead" in sections:
        results["overhead"] = overhead(work, args.requests)
    if "throughput" in sections:
        results["throughput"] = throughput(work, args.seconds)
    if "startup" in sections:
        results["startup"] = startup(work)
    json_path.write_text(json.dumps(results, indent=1))
    report(results, RESULTS / "cloud_bench.md")
    print((RESULTS / "cloud_bench.md").read_text())


if __name__ == "__main__":
    main()
