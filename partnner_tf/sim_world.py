"""Simulated worlds: per-cut edge/cloud costs, a link, load and slowdown schedules, noise.

A world is built from a profile (``partnner profile`` JSON, or a synthetic one made here from a
manifest's MACs) and scaled to a board (``edge_factor``) and a cloud (``cloud_speedup``).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from partnner_tf.errors import PartnnerError
from partnner_tf.manifest import Manifest, manifest_from_dict
from partnner_tf.traces import constant

PROFILE_FORMAT = "partnner-profile"
PROFILE_VERSION = 1


class Schedule:
    """A piecewise-constant value over time: ``[(t_s, value), ...]``, the last value forever."""

    def __init__(self, points, default=1.0, name="schedule"):
        pts = sorted((float(t), float(v)) for t, v in (points or [(0.0, default)]))
        if any(not (math.isfinite(t) and math.isfinite(v)) or t < 0 or v <= 0 for t, v in pts):
            raise PartnnerError(f"{name}: expected (t_s >= 0, value > 0) pairs, received {pts}")
        if pts[0][0] > 0:
            pts.insert(0, (0.0, default))
        self.name = name
        self.times = np.array([t for t, _ in pts])
        self.values = np.array([v for _, v in pts])

    def __call__(self, t):
        return self.values[np.searchsorted(self.times, t, side="right") - 1]

    @property
    def changes(self):
        """Times at which the value changes."""
        return [float(t) for t, a, b in zip(self.times[1:], self.values[:-1], self.values[1:]) if a != b]


def parse_steps(text, name):
    """``"0:1,30:6,60:1"`` -> [(0, 1), (30, 6), (60, 1)] (time s : value)."""
    if not text:
        return None
    try:
        return [(float(a), float(b)) for a, b in (p.split(":") for p in text.split(",") if p.strip())]
    except ValueError:
        raise PartnnerError(f"{name}: expected t:value pairs separated by commas, e.g. 0:1,30:6; received {text!r}") from None


@dataclass
class World:
    """Everything the simulator needs to price a frame at any cut and time.

    ``edge_s``/``cloud_s`` are the unloaded per-cut costs on this board and this cloud; ``load``
    multiplies cloud costs and ``slow`` edge costs over time; ``noise`` is the sigma of the
    multiplicative log-normal noise on every measured component; ``stalls`` the chance per frame
    that the edge or the cloud stalls for 1-3 frames at 1.4-2x (a shared host's hiccups, as on
    the testbed). A hedged edge-only run (beside a cloud request, whose sending shares the
    edge's CPU) takes ``hedge_slow`` times as long.
    """

    manifest: Manifest
    edge_s: np.ndarray
    cloud_s: np.ndarray
    uplink: object = field(default_factory=lambda: constant(10e6))
    rtt_s: float = 0.02
    down_bps: float = 20e6
    result_bytes: int = 4096
    load: Schedule = field(default_factory=lambda: Schedule(None, name="load"))
    slow: Schedule = field(default_factory=lambda: Schedule(None, name="edge slowdown"))
    noise: float = 0.05
    stalls: float = 0.0
    hedge_slow: float = 1.0
    trace_offset_s: float = 0.0
    profiling_s: float = 0.0
    name: str = "world"

    def __post_init__(self):
        n = len(self.manifest.cuts)
        self.edge_s = np.asarray(self.edge_s, dtype=np.float64)
        self.cloud_s = np.asarray(self.cloud_s, dtype=np.float64)
        if self.edge_s.shape != (n,) or self.cloud_s.shape != (n,):
            raise PartnnerError(
                f"world {self.name!r}: expected {n} per-cut edge and cloud costs, "
                f"received {self.edge_s.shape[0]} and {self.cloud_s.shape[0]}"
            )
        self.bytes = np.array([c.boundary_bytes for c in self.manifest.cuts], dtype=np.float64)
        self.edge_cut = self.manifest.edge_only
        self.is_edge = np.array([c.is_edge_only for c in self.manifest.cuts])
        self.down_s = self.result_bytes * 8.0 / self.down_bps

    @property
    def changes(self):
        """Times of step changes (load, edge slowdown, a step uplink)."""
        ts = set(self.load.changes) | set(self.slow.changes)
        up_t = getattr(self.uplink, "_t", None)
        if up_t is not None:
            r = self.uplink._r
            ts |= {float(t) for t, a, b in zip(up_t[1:], r[:-1], r[1:]) if a != b}
        return sorted(ts)

    def components(self, t, cuts=None, z=(1.0, 1.0, 1.0)):
        """(edge, network, cloud) seconds per cut starting at time ``t``; ``z`` the noise factors."""
        idx = slice(None) if cuts is None else cuts
        e = self.edge_s[idx] * self.slow(t) * z[0]
        up = self.uplink.transfer_time(self.trace_offset_s + t + e, self.bytes[idx])
        net = (up + self.rtt_s + self.down_s) * z[1]
        k = self.cloud_s[idx] * self.load(t) * z[2]
        edge = self.is_edge[idx]
        return e, np.where(edge, 0.0, net), np.where(edge, 0.0, k)

    def expected(self, t, cuts=None):
        """Noise-free end-to-end latency per cut at time ``t``."""
        e, n, k = self.components(t, cuts)
        return e + n + k


def load_profile(path_or_dict):
    """Read and check a profile JSON (``partnner profile``)."""
    if isinstance(path_or_dict, dict):
        data, where = path_or_dict, "profile"
    else:
        where = str(path_or_dict)
        try:
            data = json.loads(Path(path_or_dict).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PartnnerError(f"cannot read profile {where}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PartnnerError(f"{where}: expected a {PROFILE_FORMAT!r} JSON, received format {got!r}")
    try:
        edge = [float(x) for x in data["edge"]["cut_s"]]
        cloud = [float(x) for x in data["cloud"]["cut_s"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise PartnnerError(f"{where}: expected edge.cut_s and cloud.cut_s lists of seconds ({exc})") from None
    if len(edge) != len(cloud) or not edge:
        raise PartnnerError(f"{where}: edge.cut_s has {len(edge)} entries and cloud.cut_s {len(cloud)}; expected equal, > 0")
    return data


def profile_manifest(profile, manifest=None):
    """The manifest a profile describes: ``manifest`` if given, else the cut table it embeds."""
    n = len(profile["edge"]["cut_s"])
    if manifest is None:
        cuts = profile.get("cuts")
        if not cuts:
            raise PartnnerError("this profile embeds no cut table (field 'cuts'); give the manifest too")
        manifest = manifest_from_table(profile.get("model", "model"), cuts)
    if isinstance(manifest, dict):
        manifest = manifest_from_dict(manifest)
    if len(manifest.cuts) != n:
        raise PartnnerError(f"profile has {n} cuts, manifest {manifest.name!r} has {len(manifest.cuts)}")
    return manifest


def manifest_from_table(name, cuts, input_shape=(1, 224, 224, 3), dtype="float32"):
    """A minimal in-memory manifest from ``[{boundary_bytes, prefix_macs, suffix_macs}, ...]``."""
    last = len(cuts) - 1
    return manifest_from_dict({
        "format": "partnner-manifest", "version": 1,
        "model": {"name": name, "file": "model.keras",
                  "input": {"name": "input", "shape": list(input_shape), "dtype": dtype}},
        "cuts": [
            {"id": i, "layers": [], "prefix": None if i == 0 else f"prefixes/cut_{i}.tflite",
             "boundary_bytes": int(c["boundary_bytes"]) if i < last else 0,
             "prefix_macs": int(c["prefix_macs"]) if i > 0 else 0,
             "suffix_macs": int(c["suffix_macs"]) if i < last else 0,
             **{k: v for k, v in c.items() if k not in ("id", "boundary_bytes", "prefix_macs", "suffix_macs")}}
            for i, c in enumerate(cuts)
        ],
    })


KINDS = ("conv", "depthwise", "dense", "elementwise")
#: True cost per MAC by kind in synthetic worlds, relative to conv (edge CPU, cloud).
EDGE_KIND_COST = {"conv": 1.0, "depthwise": 6.0, "dense": 1.5, "elementwise": 3.0}
CLOUD_KIND_COST = {"conv": 1.0, "depthwise": 2.5, "dense": 1.0, "elementwise": 5.0}


def synthetic_manifest(n_cuts, seed=0, total_macs=300e6, input_bytes=602112, name=None, kinds=True):
    """A made-up model with ``n_cuts`` cuts: activations shrink with depth, with bumps; with
    ``kinds`` the cuts carry ``prefix_macs_by_kind``/``suffix_macs_by_kind`` as the converter writes."""
    if n_cuts < 2:
        raise PartnnerError(f"a model needs at least 2 cuts (cloud-only, edge-only), received {n_cuts}")
    rng = np.random.default_rng(seed)
    seg = rng.lognormal(0.0, 0.6, n_cuts - 1)
    seg = seg / seg.sum() * total_macs
    pre = np.concatenate([[0.0], np.cumsum(seg)])
    depth = np.linspace(0, 1, n_cuts)
    # Early feature maps are wide; expansions inside blocks make bytes jump up and down.
    size = input_bytes * np.exp(-3.5 * depth) * rng.choice([0.5, 1.0, 2.0, 4.0], n_cuts, p=[0.3, 0.4, 0.2, 0.1])
    size[0] = input_bytes
    # Each segment's MACs split between kinds: mostly conv, some depthwise/elementwise, dense late.
    mix = rng.dirichlet([6.0, 1.0, 0.2, 0.6], n_cuts - 1) * seg[:, None]
    cum = np.vstack([np.zeros(len(KINDS)), np.cumsum(mix, axis=0)])
    cuts = []
    for i in range(n_cuts):
        c = {"boundary_bytes": max(int(size[i]), 16), "prefix_macs": int(pre[i]), "suffix_macs": int(total_macs - pre[i])}
        if kinds:
            c["prefix_macs_by_kind"] = {k: int(v) for k, v in zip(KINDS, cum[i])}
            c["suffix_macs_by_kind"] = {k: int(v) for k, v in zip(KINDS, cum[-1] - cum[i])}
        cuts.append(c)
    return manifest_from_table(name or f"synthetic{n_cuts}", cuts)


def _segment_costs(manifest, side_cost, rng, spread):
    """Cost per MAC of each segment between cuts: by kind when known, times a per-segment factor."""
    pre = np.array([c.prefix_macs for c in manifest.cuts], dtype=np.float64)
    by_kind = [c.extra.get("prefix_macs_by_kind") for c in manifest.cuts]
    if all(isinstance(k, dict) for k in by_kind):
        cum = np.array([[float(k.get(n, 0)) for n in KINDS] for k in by_kind])
        seg = np.diff(cum, axis=0) @ np.array([side_cost[n] for n in KINDS])
        seg = seg + np.maximum(np.diff(pre) - np.diff(cum, axis=0).sum(axis=1), 0.0)
    else:
        seg = np.diff(pre)
    return seg * rng.lognormal(0.0, spread, seg.size)


def synthetic_profile(manifest, seed=0, edge_s_per_gmac=0.02, cloud_s_per_gmac=0.004, spread=0.4,
                      overhead_s=2e-4):
    """A profile for ``manifest`` from its MACs: each segment between cuts costs by layer kind
    (when the manifest says) and by its own factor, differently on the edge and in the cloud."""
    rng = np.random.default_rng(seed)
    e_seg = _segment_costs(manifest, EDGE_KIND_COST, rng, spread) * edge_s_per_gmac / 1e9 + overhead_s
    c_seg = _segment_costs(manifest, CLOUD_KIND_COST, rng, spread) * cloud_s_per_gmac / 1e9 + overhead_s / 2
    edge = np.concatenate([[0.0], np.cumsum(e_seg)])
    cloud = np.concatenate([np.cumsum(c_seg[::-1])[::-1], [0.0]])
    return {
        "format": PROFILE_FORMAT, "version": PROFILE_VERSION, "model": manifest.name,
        "edge": {"threads": 1, "cut_s": edge.tolist()}, "cloud": {"cut_s": cloud.tolist()},
        "profiling_s": float(10 * (edge.sum() + cloud.sum())), "repeats": 10, "synthetic": True,
        "cuts": [{"boundary_bytes": c.boundary_bytes, "prefix_macs": c.prefix_macs, "suffix_macs": c.suffix_macs,
                  **{k: c.extra[k] for k in ("prefix_macs_by_kind", "suffix_macs_by_kind") if k in c.extra}}
                 for c in manifest.cuts],
    }


def make_world(profile, manifest=None, *, edge_factor=1.0, cloud_speedup=1.0, uplink=None, rtt_s=0.02,
               load=None, slow=None, noise=0.05, stalls=0.0, trace_offset_s=0.0, down_bps=20e6,
               result_bytes=None, hedge_slow=1.0, name="world"):
    """A world from a profile scaled to a board and a cloud.

    Neurosurgeon's profiling time is the measured wall time of ``partnner profile`` (its edge part
    scaled to the board, its cloud part to the cloud) when the profile records it, and never less
    than the per-cut costs on this board run as many times as it repeats them, plus a warm-up.
    The cloud's reply is ``result_bytes`` long: by default the manifest's outputs, when it
    records them.
    """
    profile = load_profile(profile)
    manifest = profile_manifest(profile, manifest)
    edge = np.array(profile["edge"]["cut_s"]) * edge_factor
    cloud = np.array(profile["cloud"]["cut_s"]) / cloud_speedup
    repeats = int(profile.get("repeats", 10)) + 1
    # Neurosurgeon's pre-characterization: the measured profiling wall time when the profile has
    # it (the edge side on this board), else the timed runs alone.
    profiling = repeats * (edge.sum() + cloud.sum())
    e_wall, c_wall = profile["edge"].get("profiling_s"), profile["cloud"].get("profiling_s")
    if e_wall is not None and c_wall is not None:
        profiling = max(profiling, float(e_wall) * edge_factor + float(c_wall) / cloud_speedup)
    elif not profile.get("synthetic") and profile.get("profiling_s"):
        # Only the total is known: what it took on the profiled machine, unscaled (a lower bound).
        profiling = max(profiling, float(profile["profiling_s"]))
    return World(
        manifest=manifest, edge_s=edge, cloud_s=cloud, uplink=uplink or constant(10e6), rtt_s=rtt_s,
        load=Schedule(load, name="load"), slow=Schedule(slow, name="edge slowdown"), noise=noise,
        stalls=float(stalls), hedge_slow=float(hedge_slow),
        trace_offset_s=trace_offset_s, down_bps=down_bps,
        result_bytes=int(result_bytes or manifest.result_bytes or World.result_bytes),
        profiling_s=float(profiling), name=name,
    )
