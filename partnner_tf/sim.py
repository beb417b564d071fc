"""The simulator: replays a world frame by frame for each policy, deterministically (seeded).

Every policy sees the same noise for the same frame index (common random numbers), so their
differences are the policies' own. The per-frame oracle picks, for each frame, the cut that is
best under the true, noise-free conditions at that moment; the best static cut in hindsight is
the fixed cut with the lowest mean, all fixed cuts simulated in lockstep. Through the contract
alone with a harness that gives up after its own deadline, the oracle and the fixed cuts face
that deadline as the policies do (:func:`harness_expected`).

Like the edge runtime, a frame whose cloud leg misses its deadline is finished on the edge, and
the link is then down: frames run edge-only until a ping is answered (:func:`link_up_at`).
"""

import csv
import os
from dataclasses import dataclass, field, replace

import numpy as np

from partnner_tf.constants import (DEADLINE_S, MAX_DEADLINE_S, MIN_DEADLINE_S, PROBE_BACKOFF_S,
                                   PROBE_TIMEOUT_S)
from partnner_tf.errors import PartnnerError
from partnner_tf.selector import Observation, make_selector

#: After a request times out, the edge runtime's frames run edge-only while its probe
#: (runtime/link.py) pings the cloud, until one is answered. A ping is a few dozen bytes.
PING_BYTES = 64
MAX_PROBES = 2000
#: "Within 10% of the oracle" must hold this many frames in a row to count as converged.
STAY = 3
WITHIN = 1.10


@dataclass
class Run:
    """One policy's frames in one world."""

    policy: str
    cut: np.ndarray
    start: np.ndarray
    total: np.ndarray
    edge: np.ndarray
    transfer: np.ndarray
    cloud: np.ndarray
    timed_out: np.ndarray
    ratio: np.ndarray  # expected latency of the chosen cut / the best cut's, at the frame's start
    lead_s: float = 0.0  # time before the first frame (Neurosurgeon's profiling)
    extra: dict = field(default_factory=dict)

    @property
    def mean(self):
        return float(self.total.mean())

    @property
    def p95(self):
        return float(np.percentile(self.total, 95))


def noise_table(world, frames, seed):
    """Per-frame multiplicative noise on (edge, network, cloud), the same for every policy:
    log-normal, times the world's stalls (their own random stream: a world without them draws
    the noise it always did)."""
    rng = np.random.default_rng(seed)
    z = np.exp(rng.normal(0.0, world.noise, (frames, 3))) if world.noise > 0 else np.ones((frames, 3))
    if world.stalls > 0:
        rng = np.random.default_rng([seed, 1])
        for i in np.flatnonzero(rng.random(frames) < world.stalls):
            side = 0 if rng.random() < 0.5 else 2  # the edge's time or the cloud's
            z[i:i + int(rng.integers(1, 4)), side] *= rng.uniform(1.4, 2.0)
    return z


def _deadline(selector, cut):
    d = selector.deadline_s(cut) if selector is not None else None
    d = DEADLINE_S if d is None else d
    return min(max(float(d), MIN_DEADLINE_S), MAX_DEADLINE_S)


def link_up_at(world, t_fail, busy_until):
    """When the runtime's probe finds the link up again after a request failed at ``t_fail``.

    The abandoned payload still crosses the uplink until ``busy_until``, and the pings queue
    behind it. Returns inf if no ping is ever answered.
    """
    delay, t = PROBE_BACKOFF_S[0], t_fail
    for _ in range(MAX_PROBES if np.isfinite(busy_until) else 0):
        t += delay
        sent = max(t, busy_until)
        arrived = sent + world.uplink.transfer_time(world.trace_offset_s + sent, PING_BYTES)
        if not np.isfinite(arrived):  # the link never carries another byte
            return np.inf
        if arrived + world.rtt_s - t <= PROBE_TIMEOUT_S:
            return arrived + world.rtt_s
        busy_until = max(busy_until, arrived)
        t += PROBE_TIMEOUT_S
        delay = min(2 * delay, PROBE_BACKOFF_S[1])
    return np.inf


def _upload_s(world, t, cut):
    return float(world.uplink.transfer_time(world.trace_offset_s + t, world.bytes[cut]))


class ContractOnly:
    """A selector seen through the contract alone, as an outside harness drives it: choose()
    and observe(), no hedged frames offered, no deadline asked (the harness gives up after its
    own, ``harness_deadline_s`` in run_policy and simulate, inf for never)."""

    def __init__(self, selector):
        self._selector = selector

    def choose(self):
        return self._selector.choose()

    def observe(self, obs):
        self._selector.observe(obs)


def harness_expected(world, t, deadline_s):
    """Noise-free latency per cut at ``t`` for a harness that gives up on the cloud after
    ``deadline_s`` and reruns the frame edge-only: a cut whose link + cloud time exceeds it costs
    its prefix, the wait and the rerun. The oracle of such a harness chooses by these."""
    e, n, k = world.components(t)
    return np.where(n + k > deadline_s, e + deadline_s + e[world.edge_cut], e + n + k)


def run_policy(world, policy, frames, seed=0, selector=None, profile=None, contract_only=False,
               harness_deadline_s=DEADLINE_S, **options):
    """Simulate ``frames`` frames of ``policy`` (a name, or "oracle") in ``world``.
    ``contract_only``: drive the selector as an outside harness does (:class:`ContractOnly`),
    which gives up on the cloud after ``harness_deadline_s``."""
    z = noise_table(world, frames, seed)
    oracle = policy == "oracle"
    if selector is None and not oracle:
        if policy == "neurosurgeon":
            options.setdefault("profile", profile or world_profile(world))
        selector = make_selector(policy, world.manifest, **options)
    if contract_only and selector is not None:
        selector = ContractOnly(selector)
    lead = world.profiling_s if policy == "neurosurgeon" else 0.0
    cols = {k: np.zeros(frames) for k in ("start", "total", "edge", "transfer", "cloud", "ratio")}
    cuts = np.zeros(frames, dtype=np.int64)
    tout = np.zeros(frames, dtype=bool)
    e_full = world.edge_s[world.edge_cut]
    offer = getattr(selector, "offer_hedge", None)
    if offer is not None:
        offer()  # like the edge runtime: it runs hedged frames
    hedge_end, news = -np.inf, None  # a hedge the cloud beat: when it ends, its edge-only time
    up_at = -np.inf  # after a timeout the link is down, and frames run edge-only, until then
    t = 0.0
    given_up = contract_only and np.isfinite(harness_deadline_s)
    for i in range(frames):
        exp_all = harness_expected(world, t, harness_deadline_s) if given_up else world.expected(t)
        c = int(np.argmin(exp_all)) if oracle else int(selector.choose())
        if t < up_at and not world.is_edge[c]:
            c = world.edge_cut
        e, n, k = (float(v[0]) for v in world.components(t, [c], z[i]))
        timed_out = False
        hedged = not oracle and not contract_only and not world.is_edge[c] and selector.hedge(c)
        # The edge-only interpreter runs one thing at a time: a frame that needs it waits for a
        # hedge still running (the prefixes and the cloud leg do not).
        wait = max(hedge_end - t, 0.0) if hedged or world.is_edge[c] else 0.0
        if hedged:
            # The edge-only run goes alongside the cloud request; the first result ends the frame.
            full = e_full * world.slow(t) * z[i, 0] * world.hedge_slow
            d = min(full, _deadline(selector, c))
            if n + k > d:
                timed_out = True
                total, obs = e + d, Observation(cut=c, edge_s=e, transfer_s=d, bytes_sent=int(world.bytes[c]),
                                                timed_out=True, edge_only_s=full)
            else:
                total, obs = e + n + k, Observation(
                    cut=c, edge_s=e, transfer_s=n, cloud_s=k, bytes_sent=int(world.bytes[c]))
                hedge_end, news = t + wait + e + full, full
        elif not world.is_edge[c]:
            d = harness_deadline_s if contract_only else np.inf if oracle else _deadline(selector, c)
            if n + k > d:
                timed_out = True
                fallback = e_full * world.slow(t) * z[i, 0]
                total, obs = e + d + fallback, Observation(
                    cut=c, edge_s=e, transfer_s=d, bytes_sent=int(world.bytes[c]), timed_out=True)
                up_at = link_up_at(world, t + e + d, t + e + _upload_s(world, t + e, c))
            else:
                total, obs = e + n + k, Observation(
                    cut=c, edge_s=e, transfer_s=n, cloud_s=k, bytes_sent=int(world.bytes[c]))
        else:
            total, obs = e, Observation(cut=c, edge_s=e)
        total += wait
        if news is not None and t + total >= hedge_end and not obs.edge_only_s:
            obs = replace(obs, edge_only_s=news)
            news = None
        if selector is not None:
            selector.observe(obs)
        cols["start"][i], cols["total"][i], cols["edge"][i] = t, total, e
        cols["transfer"][i], cols["cloud"][i] = obs.transfer_s, obs.cloud_s
        cols["ratio"][i] = exp_all[c] / exp_all.min()
        cuts[i], tout[i] = c, timed_out
        t += total
    return Run(
        policy, cuts, cols["start"], cols["total"], cols["edge"], cols["transfer"], cols["cloud"],
        tout, cols["ratio"], lead_s=lead)


def run_static(world, frames, seed=0, deadline_s=DEADLINE_S, span_s=np.inf):
    """Mean latency of every fixed cut, each with the runtime's default deadline (or
    ``deadline_s``; inf: none), in lockstep. ``span_s``: the mean over the frames that start in
    the world's first ``span_s`` seconds only (each cut runs ``frames`` frames at its own pace, so
    over all of them a slower cut sees more of the world)."""
    z = noise_table(world, frames, seed)
    n_cuts = len(world.manifest.cuts)
    t = np.zeros(n_cuts)
    tot = np.zeros(n_cuts)
    counted = np.zeros(n_cuts)
    cuts = np.arange(n_cuts)
    e_full = world.edge_s[world.edge_cut]
    up_at = np.full(n_cuts, -np.inf)
    for i in range(frames):
        e = world.edge_s * world.slow(t) * z[i, 0]
        up = world.uplink.transfer_time(world.trace_offset_s + t + e, world.bytes)
        n = (up + world.rtt_s + world.down_s) * z[i, 1]
        k = world.cloud_s * world.load(t) * z[i, 2]
        down = (t < up_at) & ~world.is_edge
        late = (n + k > deadline_s) & ~world.is_edge & ~down
        fallback = e_full * world.slow(t) * z[i, 0]
        lat = np.where(world.is_edge, e, np.where(down, fallback, np.where(
            late, e + deadline_s + fallback, e + n + k)))
        for c in np.flatnonzero(late):
            up_at[c] = link_up_at(world, t[c] + e[c] + deadline_s, t[c] + e[c] + up[c])
        inside = t < span_s
        tot += np.where(inside, lat, 0.0)
        counted += inside
        t += lat
    return tot / np.maximum(counted, 1), cuts


def world_profile(world):
    """What a perfect pre-characterization of this board and cloud measures: the unloaded costs."""
    return {"format": "partnner-profile", "version": 1, "model": world.manifest.name,
            "edge": {"threads": 1, "cut_s": world.edge_s.tolist()}, "cloud": {"cut_s": world.cloud_s.tolist()},
            "profiling_s": world.profiling_s}


def frames_to_within(ratio, start=0, within=WITHIN, stay=STAY):
    """Frames from ``start`` until the ratio is within bounds for ``stay`` frames in a row (None: never)."""
    ok = ratio[start:] <= within
    run = 0
    for j, good in enumerate(ok):
        run = run + 1 if good else 0
        if run >= stay:
            return j - stay + 1
    return None


def convergence_time(run):
    """Wall seconds from power-on until the first good frame of a converged stretch ends."""
    j = frames_to_within(run.ratio)
    if j is None:
        return float("inf")
    return run.lead_s + run.start[j] + run.total[j]


def recovery_frames(run, changes):
    """Frames needed to get back within 10% after each change (a change with no frame: skipped)."""
    out = []
    for tc in changes:
        i0 = int(np.searchsorted(run.start, tc, side="left"))
        if i0 >= len(run.start) - STAY:
            continue
        j = frames_to_within(run.ratio, i0)
        out.append(len(run.start) - i0 if j is None else j)
    return out


def simulate(world, policies, frames=1000, seed=0, neurosurgeon_profile=None, contract_only=False,
             harness_deadline_s=DEADLINE_S):
    """Run every policy plus the oracle and the best static cut; returns (runs, summary dict).
    ``contract_only``: the policies are driven through the contract alone (:class:`ContractOnly`)
    by a harness that gives up after ``harness_deadline_s``, on the fixed cuts too."""
    if frames < 1:
        raise PartnnerError(f"frames: expected >= 1, received {frames}")
    # Through the contract alone the oracle faces the harness's deadline too, as the fixed cuts do.
    runs = {"oracle": run_policy(world, "oracle", frames, seed, contract_only=contract_only,
                                 harness_deadline_s=harness_deadline_s)}
    for p in policies:
        runs[p] = run_policy(world, p, frames, seed, profile=neurosurgeon_profile, contract_only=contract_only,
                             harness_deadline_s=harness_deadline_s)
    deadline = harness_deadline_s if contract_only else DEADLINE_S
    static_means, _ = run_static(world, frames, seed, deadline_s=deadline)
    best_static = int(np.argmin(static_means))
    runs["static"] = run_policy(world, f"fixed:{best_static}", frames, seed, contract_only=contract_only,
                                harness_deadline_s=deadline)
    o = runs["oracle"].mean
    rows = {}
    for name, r in runs.items():
        rows[name] = {"mean_s": r.mean, "p95_s": r.p95, "vs_oracle": r.mean / o,
                      "vs_static": r.mean / runs["static"].mean, "timeouts": int(r.timed_out.sum()),
                      "switches": int(np.count_nonzero(np.diff(r.cut))),
                      "converge_s": convergence_time(r), "recovery": recovery_frames(r, world.changes)}
    return runs, {"world": world.name, "best_static_cut": best_static, "policies": rows}


def format_table(summary):
    """A plain-text table of mean/p95 latency per policy."""
    lines = [f"world {summary['world']}  (best static cut in hindsight: {summary['best_static_cut']})",
             f"{'policy':<14}{'mean ms':>10}{'p95 ms':>10}{'x oracle':>10}{'x static':>10}"
             f"{'timeouts':>10}{'converge s':>12}{'max recov':>10}"]
    for name, r in summary["policies"].items():
        rec = max(r["recovery"]) if r["recovery"] else "-"
        lines.append(f"{name:<14}{r['mean_s'] * 1e3:>10.1f}{r['p95_s'] * 1e3:>10.1f}{r['vs_oracle']:>10.3f}"
                     f"{r['vs_static']:>10.3f}{r['timeouts']:>10d}{r['converge_s']:>12.2f}{rec!s:>10}")
    return "\n".join(lines)


def write_csv(runs, path):
    """One row per policy and frame."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["policy", "frame", "start_s", "cut", "total_s", "edge_s", "transfer_s", "cloud_s",
                    "timed_out", "vs_best_expected"])
        for name, r in runs.items():
            for i in range(len(r.total)):
                w.writerow([name, i, f"{r.start[i]:.6f}", int(r.cut[i]), f"{r.total[i]:.6f}", f"{r.edge[i]:.6f}",
                            f"{r.transfer[i]:.6f}", f"{r.cloud[i]:.6f}", int(r.timed_out[i]), f"{r.ratio[i]:.4f}"])
    os.replace(tmp, path)


def plot(runs, path, title=""):
    """Latency over time and the chosen cut, one row per policy (matplotlib loaded here only)."""
    from partnner_tf.lazy import require

    mpl = require("matplotlib", "testbed")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", "testbed")
    names = list(runs)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        r = runs[name]
        ax.plot(r.start, r.total * 1e3, lw=0.7, color="tab:blue")
        ax.set_ylabel(f"{name}\nms", fontsize=8)
        ax.set_yscale("log")
        ax2 = ax.twinx()
        ax2.step(r.start, r.cut, where="post", lw=0.7, color="tab:orange")
        ax2.set_ylabel("cut", fontsize=8, color="tab:orange")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title or "latency (blue, log) and chosen cut (orange)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
