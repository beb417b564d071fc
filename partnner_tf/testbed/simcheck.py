"""Replay a bench cell in ``partnner sim`` and compare its mean latency per policy with the real run."""

import json
import subprocess
from pathlib import Path

from partnner_tf.testbed import procs
from partnner_tf.testbed.link import parse_schedule
from partnner_tf.testbed.load import parse_load


def _uplink_args(spec):
    if spec.startswith("const:"):
        return ["--bandwidth", f"{float(spec[6:]) / 1e6:g}"]
    if spec.startswith("steps:"):
        pts = [p.split("=") for p in spec[6:].split(",") if p]
        return ["--bandwidth-steps", ",".join(f"{float(t):g}:{float(r) / 1e6:g}" for t, r in pts)]
    path, _, scale = spec.partition("*")
    return ["--trace", path] + (["--trace-scale", scale] if scale else [])


def _downlink_args(spec):
    """The downlink's mean rate (the simulator's downlink is constant)."""
    rate = parse_schedule(spec).mean_bps
    return ["--downlink", f"{rate / 1e6:g}"] if rate > 0 else []


def _load_args(load, workers=2):
    # A client hammering the daemon's workers stretches a request by about one suffix per
    # `workers` clients: the simulator's multiplier is 1 + clients / workers.
    if not load:
        return []
    return ["--load-steps", ",".join(f"{t:g}:{1 + n / workers:g}" for t, n in parse_load(load))]


def simulate_cell(cell, frames, load=None, progress=print):
    """Run ``partnner sim`` on the cell's world; returns ``{policy: {"sim_s", "real_s", "ratio"}}``."""
    link = cell["link_preset"]
    runs = cell["runs"]
    prof = cell["profile"]
    policies = [p for p in ("edge", "cloud", "neurosurgeon", "partnner") if p in runs and runs[p].ok]
    best = runs.get("best-fixed")
    fixed = best.policy.split("(")[-1].rstrip(")") if best is not None and best.ok else None
    if fixed and fixed not in policies:
        policies.append(fixed)
    if not policies:
        return {}
    wd = Path(cell["workdir"]) / "sim"
    wd.mkdir(parents=True, exist_ok=True)
    slowdown = prof["edge"].get("slowdown", 1.0)
    speedup = prof["cloud"].get("speedup", 1.0)
    host_prof = json.loads(json.dumps(prof))
    host_prof["edge"]["cut_s"] = [s / slowdown for s in prof["edge"]["cut_s"]]
    host_prof["cloud"]["cut_s"] = [s * speedup for s in prof["cloud"]["cut_s"]]
    prof_path = wd / "profile.host.json"
    prof_path.write_text(json.dumps(host_prof))
    cmd = procs.python_cmd("partnner_tf.cli", "sim", "--profile", prof_path, "--manifest", cell["out"],
                           *_uplink_args(link.up), *_downlink_args(link.down), "--trace-offset", link.offset_s,
                           "--rtt-ms", 2000 * link.delay_s, "--edge-factor", f"{slowdown:.4f}",
                           "--cloud-speedup", f"{speedup:.4f}",
                           "--policies", ",".join(policies), "--frames", frames, "--out", wd, "--no-plot",
                           *_load_args(load))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        progress(f"    sim FAILED: {res.stderr.strip()[-300:]}")
        return {"error": res.stderr.strip()[-300:]}
    summary = json.loads((wd / "summary.json").read_text())["policies"]
    out = {}
    for p in policies:
        for name in [p] * (p in runs) + ["best-fixed"] * (p == fixed):
            real, sim_s = runs[name], summary[p]["mean_s"]
            out[name] = {"sim_s": sim_s, "real_s": real.mean_s, "ratio": sim_s / real.mean_s}
    progress("    sim/real: " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in out.items()))
    return out
