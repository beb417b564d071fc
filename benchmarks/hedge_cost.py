"""Hedge cost: what a hedged probe over a link that stays bad costs the edge-only run beside it.

    .venv/bin/python benchmarks/hedge_cost.py [--boards rpi4,rpi3b] [--modes dilate,cgroup] [--rounds 10] [--repeats 3]

While it runs edge-only, partnner probes the link with hedged frames: the edge-only run goes
beside the cloud request and the first result wins. Over a link that stays bad the edge wins, and
the probe's cost is what the waiting request takes from that run; the selector spaces its probes
by it (``hedge_slow``, learnt online). Here the cloud is a real ZeroMQ ROUTER on loopback that takes
every request and never answers: each hedged frame waits for its edge-only run. MobileNetV2 96x96
(converted once into a cache folder); per board and board mode (``dilate``: each prefix run
stretched by the board's slowdown; ``cgroup``: a CFS CPU quota, root only) and per way of waiting
(``poll``: a threading.Event the client looked at every 2 ms, as the runtime did before
``partnner_tf.client.Wakeup``; ``wakeup``: the runtime's), edge processes alternate a plain
edge-only frame and a hedged probe of each probe cut, after warming up. Writes
benchmarks/results/hedge_cost.md.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PROBES = (0, 1, 3, 5)  # cloud-only (the raw input) and cuts whose payloads are 54, 9 and 5 KiB
SHAPE = (96, 96, 3)
VARIANTS = ("poll", "wakeup")


class _PolledEvent(threading.Event):
    """The wait before Wakeup: a threading.Event the client looks at every CANCEL_POLL_S."""

    def close(self):
        pass


def worker(out, endpoint, board, mode, rounds, variant):
    """In the edge process: warm up, say ready, wait for "go" (the cgroup joined), run, print JSON."""
    if variant == "poll":
        import partnner_tf.client

        partnner_tf.client.Wakeup = _PolledEvent
    from partnner_tf.manifest import load_manifest
    from partnner_tf.runtime.edge import EdgeRuntime
    from partnner_tf.selector import Selector
    from partnner_tf.testbed.board import dilation, emulation_for
    from partnner_tf.testbed.edge_proc import Dilation, _preload

    m = load_manifest(out)
    seq = [c for _ in range(rounds) for p in PROBES for c in (m.edge_only, p)]

    class Hedger(Selector):
        """Runs ``seq``, every cloud frame hedged; keeps plain and hedged edge-only times."""

        name = "hedger"

        def __init__(self, manifest):
            super().__init__(manifest)
            self.i, self.plain, self.hedged = 0, [], []

        def choose(self):
            self.i += 1
            return seq[self.i - 1]

        def hedge(self, cut):
            return True

        def deadline_s(self, cut):
            return 5.0

        def observe(self, obs):
            if obs.cut == m.edge_only:
                self.plain.append(obs.edge_s)
            elif obs.edge_only_s:  # the silent cloud: the edge-only run beside it always wins
                self.hedged.append(obs.edge_only_s)

    emu = emulation_for(board)
    sel = Hedger(m)
    threads, slowdown = dilation(emu) if mode == "dilate" else (emu["cpus"], 1.0)
    rt = EdgeRuntime(out, cloud=endpoint, selector=sel, threads=threads)
    try:
        _preload(rt, "partnner")
        print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
        sys.stdin.readline()  # "go": the orchestrator has capped this process
        if slowdown > 1.0:
            Dilation(slowdown)  # each prefix run stretched, as in the testbed's edge process
        x = np.random.default_rng(0).random((1, *SHAPE)).astype(np.float32)
        cpu = time.process_time()
        for _ in seq:
            rt.infer(x)
        rt.settle()
        cpu = time.process_time() - cpu
    finally:
        rt.close()
    print(json.dumps({"plain": sel.plain, "hedged": sel.hedged, "cpu_s": cpu, "frames": len(seq)}), flush=True)


def run_one(out, endpoint, board, mode, rounds, variant):
    """One edge process for (board, mode, variant); returns its JSON result."""
    from partnner_tf.testbed import procs
    from partnner_tf.testbed.board import CpuCap, emulation_for

    emu = emulation_for(board)
    cap = CpuCap(emu["cpus"], emu["quota"]) if mode == "cgroup" else None
    if cap is not None and cap.path is None:
        raise SystemExit(f"--modes cgroup: this host cannot cap a process ({cap.cap.reason})")
    cmd = [sys.executable, __file__, "--worker", str(out), endpoint, board, mode, str(rounds), variant]
    proc = procs.spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        procs.read_ready_line(proc, f"edge process ({board}, {mode}, {variant})", timeout_s=300)
        if cap is not None:
            cap.join(proc.pid)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if proc.wait(timeout=600) != 0 or not line:
            raise SystemExit(f"edge process ({board}, {mode}, {variant}) failed with exit code {proc.returncode}")
        return json.loads(line)
    finally:
        procs.terminate(proc)
        if cap is not None:
            cap.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", default="rpi4,rpi3b")
    ap.add_argument("--modes", default="dilate,cgroup", help="dilate, cgroup (root only), or both")
    ap.add_argument("--rounds", type=int, default=10, help="hedged probes of each probe cut per process")
    ap.add_argument("--repeats", type=int, default=3, help="processes per board, mode and wait, interleaved")
    ap.add_argument("--cache", default="/tmp/partnner-bench/mobilenetv2-96-pareto")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    import zmq

    from partnner_tf.manifest import load_manifest
    from partnner_tf.testbed.procs import install_handlers

    install_handlers()  # SIGTERM, like Ctrl-C, ends the processes this benchmark started
    out = Path(args.cache)
    if not (out / "manifest.json").exists():
        from partnner_tf.converters import convert

        print(f"converting MobileNetV2 96x96 into {out} ...", file=sys.stderr)
        convert("keras.applications.MobileNetV2", out, input_shape=SHAPE)
    m = load_manifest(out)
    sink = zmq.Context.instance().socket(zmq.ROUTER)  # takes every request, answers none
    sink.linger = 0
    endpoint = f"tcp://127.0.0.1:{sink.bind_to_random_port('tcp://127.0.0.1')}"
    t0 = time.perf_counter()
    pooled = {}
    try:
        # Repeats interleave the two waits, so the host's speed drift falls on both alike.
        for rep in range(args.repeats):
            for board in args.boards.split(","):
                for mode in args.modes.split(","):
                    for variant in VARIANTS:
                        res = run_one(out, endpoint, board, mode, args.rounds, variant)
                        base = float(np.median(res["plain"]))
                        acc = pooled.setdefault((board, mode, variant), {"plain": [], "ratio": [], "cpu": []})
                        acc["plain"] += res["plain"]
                        acc["ratio"] += [h / base for h in res["hedged"]]
                        acc["cpu"].append(res["cpu_s"] / res["frames"])
                        print(f"repeat {rep + 1}/{args.repeats} {board} {mode} {variant}: plain {base * 1e3:.1f} ms, "
                              f"hedged/plain {np.median(acc['ratio'][-len(res['hedged']):]):.2f}, "
                              f"CPU {acc['cpu'][-1] * 1e3:.2f} ms/frame", file=sys.stderr)
    finally:
        sink.close()
    report(m, args, pooled, time.perf_counter() - t0)


def report(m, args, pooled, wall):
    sizes = ", ".join(f"{m.cuts[c].boundary_bytes / 1024:.0f}" for c in PROBES)
    lines = [f"# hedge_cost: hedged probes over a link that stays bad ({m.name}, input {m.input.shape})", "",
             f"Command: `.venv/bin/python benchmarks/hedge_cost.py --boards {args.boards} --modes {args.modes} "
             f"--rounds {args.rounds} --repeats {args.repeats}`; {wall:.0f} s wall.", "",
             f"The cloud takes every request and never answers. Each edge process alternates a plain edge-only "
             f"frame and a hedged probe of cuts {list(PROBES)} (payloads {sizes} KiB), {args.rounds} rounds; "
             f"{args.repeats} processes per row, interleaved with the other wait's. Hedged / plain: each hedged "
             "edge-only run over its process's median plain one, pooled. Wait: `poll`, a threading.Event the "
             "client looked at every 2 ms (the runtime before partnner_tf.client.Wakeup); `wakeup`, the "
             "runtime's. CPU: the edge process's CPU time per frame (half the frames are hedged), median "
             "over the processes.", "",
             "| board | mode | wait | plain edge-only ms | hedged / plain: median | mean | p90 | probes | "
             "CPU ms per frame |", "|---|---|---|---|---|---|---|---|---|"]
    for (board, mode, variant), a in pooled.items():
        r = np.array(a["ratio"])
        lines.append(f"| {board} | {mode} | {variant} | {np.median(a['plain']) * 1e3:.1f} | {np.median(r):.2f} | "
                     f"{r.mean():.2f} | {np.percentile(r, 90):.2f} | {len(r)} | {np.median(a['cpu']) * 1e3:.2f} |")
    lines += ["", f"Machine load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (RESULTS / "hedge_cost.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7])
    else:
        main()
