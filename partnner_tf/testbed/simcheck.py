"""Replay a bench cell in ``partnner sim`` and compare its mean latency per policy with the real run."""

import csv
import json
import statistics
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


def _sim(args):
    """Run ``partnner sim``; returns its error, or None."""
    res = subprocess.run(procs.python_cmd("partnner_tf.cli", *args), capture_output=True, text=True, timeout=300)
    return res.stderr.strip()[-300:] if res.returncode != 0 else None


def _transfer_overhead(cloud_run, wd, link):
    """Seconds a real cloud-only transfer took beyond the simulated one (medians), on a constant
    uplink (a trace's spread hides it); None when not measurable or under 0.1 ms."""
    if cloud_run is None or not cloud_run.ok or not link.up.startswith("const:"):
        return None
    with open(wd / "frames.csv", newline="") as f:
        sim = [float(r["transfer_s"]) for r in csv.DictReader(f) if r["policy"] == "cloud"]
    real = [f["transfer_s"] for f in cloud_run.frames if not f.get("fallback")]
    if not sim or not real:
        return None
    extra = statistics.median(real) - statistics.median(sim)
    return extra if extra > 1e-4 else None


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
    args = ["sim", "--profile", prof_path, "--manifest", cell["out"], *_uplink_args(link.up),
            *_downlink_args(link.down), "--trace-offset", link.offset_s, "--edge-factor", f"{slowdown:.4f}",
            "--cloud-speedup", f"{speedup:.4f}", "--policies", ",".join(policies), "--frames", frames,
            "--out", wd, "--no-plot", *_load_args(load)]
    rtt_ms = 2000 * link.delay_s
    err = _sim(args + ["--rtt-ms", rtt_ms])
    extra = None if err else _transfer_overhead(runs.get("cloud"), wd, link)
    if extra:
        # What the simulator leaves out of a transfer (the relay's hops, the messages' framing):
        # the cloud-only run's median transfer beyond the simulated one's, on a constant link.
        rtt_ms += 1000 * extra
        err = _sim(args + ["--rtt-ms", rtt_ms])
    if err:
        progress(f"    sim FAILED: {err}")
        return {"error": err}
    summary = json.loads((wd / "summary.json").read_text())["policies"]
    out = {}
    for p in policies:
        for name in [p] * (p in runs) + ["best-fixed"] * (p == fixed):
            real, sim_s = runs[name], summary[p]["mean_s"]
            out[name] = {"sim_s": sim_s, "real_s": real.mean_s, "ratio": sim_s / real.mean_s}
    note = f" (transfers +{1000 * extra:.1f} ms, as the cloud-only run's)" if extra else ""
    progress("    sim/real: " + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in out.items()) + note)
    return out
