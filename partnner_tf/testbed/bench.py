"""The bench: models x boards x links x policies, each run with real processes, summarised per cell."""

import json
import logging
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from partnner_tf.errors import EmulationError, PartnnerError
from partnner_tf.manifest import load_manifest, write_json_atomic
from partnner_tf.testbed import procs
from partnner_tf.testbed.board import dilation, emulation_for
from partnner_tf.testbed.link import parse_schedule
from partnner_tf.testbed.session import run_edge, run_in_turns
from partnner_tf.traces import traces_dir

log = logging.getLogger(__name__)

POLICIES = ("edge", "cloud", "neurosurgeon", "partnner", "best-fixed")
@dataclass(frozen=True)
class LinkPreset:
    """One emulated link: uplink and downlink schedules (spec strings), one-way delay, trace offset."""

    name: str
    up: str
    down: str
    delay_s: float
    offset_s: float = 0.0


def link_presets():
    """The named links: WiFi constant, LTE and 3G real uplink traces (downlinks constant)."""
    t = traces_dir()
    return {
        "wifi": LinkPreset("wifi", "const:40e6", "const:40e6", 0.002),
        "lte": LinkPreset("lte", str(t / "Verizon-LTE-short.up"), "const:12e6", 0.020, 20.0),
        "lte-driving": LinkPreset("lte-driving", str(t / "ATT-LTE-driving-2016.up"), "const:12e6", 0.025),
        "3g": LinkPreset("3g", str(t / "TMobile-UMTS-driving.up"), "const:2e6", 0.050, 100.0),
        # The demo's LTE: bandwidth drops and recovers.
        "lte-drop": LinkPreset("lte-drop", "steps:0=8e6,12=1e6,24=0.4e6,36=8e6", "const:12e6", 0.020),
    }


def resolve_link(name):
    """A preset name, or ``UP|DOWN|DELAY_MS`` with schedule specs (see link.parse_schedule)."""
    if isinstance(name, LinkPreset):
        return name
    presets = link_presets()
    if name in presets:
        preset = presets[name]
    elif "|" in name:
        up, down, delay = (name.split("|") + ["0"])[:3]
        preset = LinkPreset(name, up, down, float(delay) / 1000.0)
    else:
        raise PartnnerError(f"unknown link {name!r}; known: {', '.join(presets)} or UP|DOWN|DELAY_MS")
    for spec in (preset.up, preset.down):
        if not spec.startswith(("const:", "steps:")) and not Path(spec.split("*")[0]).exists():
            raise EmulationError(f"link {preset.name!r}: trace {spec} is missing (set PARTNNER_TRACES)")
    return preset


@dataclass
class Run:
    """One policy's run in one cell."""

    policy: str
    frames: list = field(default_factory=list)
    error: str = None
    link_stats: list = field(default_factory=list)

    @property
    def ok(self):
        return self.error is None and bool(self.frames)

    def latencies(self):
        return np.array([f["total_s"] for f in self.frames])

    @property
    def mean_s(self):
        return float(self.latencies().mean()) if self.ok else math.nan

    @property
    def p95_s(self):
        return float(np.percentile(self.latencies(), 95)) if self.ok else math.nan


def read_stats(path):
    try:
        return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    except OSError:
        return []


def profile_model(out, dest, threads=None):
    """The host's per-cut profile (``partnner profile``, on ``threads`` interpreter threads, by
    default all), cached in ``dest``."""
    from partnner_tf.runtime.profile import PAUSE_S

    if Path(dest).exists():
        cached = json.loads(Path(dest).read_text())
        same_pause = cached["edge"].get("pause_s") == PAUSE_S  # else it is made again
        if same_pause and (threads is None or cached["edge"].get("threads") == threads):
            return cached
    cmd = procs.python_cmd("partnner_tf.cli", "profile", out, "-o", dest, "--quiet", "--repeats", "5")
    if threads is not None:
        cmd += ["--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise PartnnerError(f"partnner profile {out} failed: {res.stderr[-1500:]}")
    return json.loads(Path(dest).read_text())


def board_profile(profile, slowdown):
    """The host profile with the edge side slowed like the board (Neurosurgeon's pre-characterisation)."""
    p = json.loads(json.dumps(profile))
    p["edge"]["cut_s"] = [s * slowdown for s in profile["edge"]["cut_s"]]
    p["edge"]["slowdown"] = slowdown
    return p


def rank_fixed(manifest, profile, link, frames_s, n_frames):
    """Cuts ranked by their estimated mean latency over the run's stretch of the link."""
    up, down = parse_schedule(link.up), parse_schedule(link.down)
    out_bytes = 4 * 1000  # model outputs are small next to boundaries; a classifier's 1000 floats
    est = {}
    t = np.arange(n_frames) * frames_s + link.offset_s
    for cut in manifest.cuts:
        e = profile["edge"]["cut_s"][cut.id]
        if cut.is_edge_only:
            est[cut.id] = e
            continue
        tx = np.mean(up.transfer_time(t, max(cut.boundary_bytes, 1)))
        rx = np.mean(down.transfer_time(t, out_bytes))
        est[cut.id] = e + tx + rx + 2 * link.delay_s + profile["cloud"]["cut_s"][cut.id]
    return sorted(est, key=est.get), est


def start_daemon(outs, workers=1, log_path=None):
    from partnner_tf.runtime.cloud.spawn import start_daemon as _start

    daemon = _start([str(o) for o in outs], args=("--workers", str(workers)), timeout_s=600, log_path=log_path)
    procs.adopt(daemon.proc)
    return daemon


#: Frames of the short edge-only run that sizes the board before runs in turns (Neurosurgeon's
#: pre-characterisation and the ranking of fixed cuts need the board's speed first).
PRE_FRAMES = 8


def run_cell(out, board, link, *, policies, frames, workdir, daemon_endpoint, host_profile,
             load=None, fixed_top=2, max_run_s=0.0, link_mode="relay", board_mode="dilate", turns=True,
             progress=print):
    """Every policy of one (model, board, link) cell; returns ``{name: Run}`` and the board profile.

    With ``turns`` (and the relay link, and no cloud load, whose schedule runs on wall time) the
    policies run side by side in turns (:func:`~partnner_tf.testbed.session.run_in_turns`), so
    the host's speed drift falls on all of them alike; otherwise one after the other.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    emu = emulation_for(board)
    runs = {}

    def spec(name, policy, profile=None, n=frames):
        stats = workdir / f"{name.replace(':', '_')}.link.jsonl"
        stats.unlink(missing_ok=True)
        return dict(out=out, policy=policy, frames=n, log_path=workdir / f"{name.replace(':', '_')}.jsonl",
                    emulation=board, daemon_endpoint=daemon_endpoint, link=link, profile=profile, load=load,
                    stats_path=stats, duration_s=max_run_s, link_mode=link_mode, board_mode=board_mode)

    def record(name, got, kw, seconds):
        if isinstance(got, Exception):
            text = str(got).strip()
            runs[name] = Run(name, error=text.splitlines()[-1][:300] if text else repr(got))
            progress(f"    {name:<14} FAILED: {runs[name].error}")
        else:
            runs[name] = Run(name, got, link_stats=read_stats(kw["stats_path"]))
            r = runs[name]
            progress(f"    {name:<14} mean {r.mean_s * 1e3:8.1f} ms  p95 {r.p95_s * 1e3:8.1f} ms" +
                     (f"  ({seconds:.0f} s)" if seconds is not None else ""))
        return runs[name]

    def go(name, policy, profile=None, n=frames):
        kw, t0 = spec(name, policy, profile, n), time.monotonic()
        try:
            got = run_edge(**kw)
        except (PartnnerError, OSError, ValueError) as exc:
            got = exc
        return record(name, got, kw, time.monotonic() - t0)

    bprof_path = workdir / "profile.board.json"
    in_turns = turns and link_mode == "relay" and not load
    if in_turns:
        progress(f"    sizing the board: {PRE_FRAMES} edge-only frames ...")
        sizing = go("sizing", "edge", n=PRE_FRAMES)
        runs.pop("sizing")
        bprof = _board_profile(manifest, emu, host_profile, sizing)
        write_json_atomic(workdir / "profile.pre.json", bprof)
        names = {"edge": "edge"}
        if "cloud" in policies or "best-fixed" in policies:
            names["cloud"] = "cloud"
        if "neurosurgeon" in policies:
            names["neurosurgeon"] = "neurosurgeon"
        if "partnner" in policies:
            names["partnner"] = "partnner"
        if "best-fixed" in policies:
            for c in _fixed_candidates(manifest, bprof, link, sizing, frames, fixed_top):
                names[f"fixed:{c}"] = f"fixed:{c}"
        specs = {n: spec(n, p, workdir / "profile.pre.json" if p == "neurosurgeon" else None)
                 for n, p in names.items()}
        progress(f"    {', '.join(names)}: in turns of a few frames each ...")
        for name, got in run_in_turns(specs).items():
            record(name, got, specs[name], None)
        bprof = _board_profile(manifest, emu, host_profile, runs["edge"], runs.get("cloud"))
        write_json_atomic(bprof_path, bprof)
    else:
        edge = go("edge", "edge")
        bprof = _board_profile(manifest, emu, host_profile, edge)
        write_json_atomic(bprof_path, bprof)
        if "cloud" in policies or "best-fixed" in policies:
            bprof = _board_profile(manifest, emu, host_profile, edge, go("cloud", "cloud"))
            write_json_atomic(bprof_path, bprof)
        if "neurosurgeon" in policies:
            go("neurosurgeon", "neurosurgeon", bprof_path)
        if "partnner" in policies:
            go("partnner", "partnner")
        if "best-fixed" in policies:
            for c in _fixed_candidates(manifest, bprof, link, edge, frames, fixed_top):
                go(f"fixed:{c}", f"fixed:{c}")
    if "best-fixed" in policies:
        fixed = [r for n, r in runs.items() if r.ok and (n.startswith("fixed:") or n in ("edge", "cloud"))]
        if fixed:
            best = min(fixed, key=lambda r: r.mean_s)
            runs["best-fixed"] = Run(f"best-fixed ({best.policy})", best.frames, link_stats=best.link_stats)
    return runs, bprof


def _board_profile(manifest, emu, host_profile, edge, cloud=None):
    """The host profile with the edge slowed as ``edge``'s run measured, the cloud as ``cloud``'s."""
    host_edge = host_profile["edge"]["cut_s"][manifest.edge_only]
    if edge.ok and host_edge > 0:
        # The mean, not the median: a quota throttles some frames and not others, and the
        # mean latency is what the board profile must predict.
        slowdown = float(np.mean([f["edge_s"] for f in edge.frames])) / host_edge
    else:
        slowdown = dilation(emu)[1] if host_profile["edge"].get("threads") == 1 else 1.0 / emu["quota"]
    bprof = board_profile(host_profile, slowdown)
    host_cloud = host_profile["cloud"]["cut_s"][manifest.cloud_only]
    if cloud is not None and cloud.ok and host_cloud > 0:
        # The daemon's own compute time for the whole model, against the profiler's figure.
        bprof["cloud"]["speedup"] = host_cloud / float(np.mean([f["compute_s"] for f in cloud.frames]))
        bprof["cloud"]["cut_s"] = [s / bprof["cloud"]["speedup"] for s in host_profile["cloud"]["cut_s"]]
    return bprof


def _fixed_candidates(manifest, bprof, link, edge, frames, fixed_top):
    """Middle cuts the board profile gives a chance (within 1.5x of the better end), best first."""
    order, est = rank_fixed(manifest, bprof, link, edge.mean_s if edge.ok else 0.1, frames)
    ends = min(est[manifest.edge_only], est[manifest.cloud_only])
    return [c for c in order if c not in (manifest.edge_only, manifest.cloud_only) and est[c] < 1.5 * ends][:fixed_top]


def run_matrix(models, boards, links, *, policies=POLICIES, frames=40, out_dir, load=None, fixed_top=2,
               sim=True, max_run_s=0.0, link_mode="relay", board_mode="dilate", turns=True, progress=print):
    """Run the whole matrix; writes per-frame logs under ``out_dir`` and returns the cell results.

    Args:
        models: converted model folders (each with manifest.json).
        boards: board names (registry or testbed presets) or emulation dicts.
        links: link preset names or ``UP|DOWN|DELAY_MS`` specs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = [resolve_link(name) for name in links]
    manifests = {str(m): load_manifest(m) for m in models}
    progress(f"bench: {len(models)} model(s) x {len(boards)} board(s) x {len(links)} link(s), "
             f"{frames} frames per run, policies {', '.join(policies)}")
    profiles = {}
    for m in models:
        progress(f"profiling {manifests[str(m)].name} on this host ...")
        # Dilated boards run one interpreter thread (board.dilation): so does their host profile.
        profiles[str(m)] = profile_model(m, out_dir / f"profile.{manifests[str(m)].name}.json",
                                         threads=1 if board_mode in ("dilate", "dilate-all") else None)
    progress("starting the cloud daemon ...")
    daemon = start_daemon(models, workers=2 if load else 1, log_path=str(out_dir / "daemon.log"))
    cells = []
    try:
        total = len(models) * len(boards) * len(links)
        k = 0
        for m in models:
            for b in boards:
                for lk in links:
                    k += 1
                    name = manifests[str(m)].name
                    bname = b if isinstance(b, str) else "custom"
                    progress(f"[{k}/{total}] {name} on {bname} over {lk.name}")
                    wd = out_dir / "cells" / f"{name}__{bname}__{lk.name}"
                    cell = {"model": name, "out": str(m), "board": bname, "link": lk.name, "link_preset": lk,
                            "workdir": str(wd)}
                    try:
                        cell["runs"], cell["profile"] = run_cell(
                            m, b, lk, policies=policies, frames=frames, workdir=wd, daemon_endpoint=daemon.endpoint,
                            host_profile=profiles[str(m)], load=load, fixed_top=fixed_top, max_run_s=max_run_s,
                            link_mode=link_mode, board_mode=board_mode, turns=turns, progress=progress)
                    except (PartnnerError, OSError) as exc:
                        cell["error"] = str(exc)
                        progress(f"    cell FAILED: {exc}")
                    procs.check_stopping()  # a cell that failed because SIGTERM ended its processes
                    if sim and "runs" in cell:
                        from partnner_tf.testbed.simcheck import simulate_cell

                        n = min((len(r.frames) for r in cell["runs"].values() if r.ok), default=frames)
                        cell["sim"] = simulate_cell(cell, n, load=load, progress=progress)
                    cells.append(cell)
    finally:
        daemon.stop()
    return cells
