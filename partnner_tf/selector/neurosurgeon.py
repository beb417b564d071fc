"""Neurosurgeon-style baseline: per-cut latencies profiled in advance, bandwidth learned online."""

import json
from pathlib import Path

import numpy as np

from partnner_tf.errors import PartnnerError
from partnner_tf.selector.base import Observation, Selector
from partnner_tf.selector.estimators import LinkEstimator


def _profile(profile, n_cuts):
    if isinstance(profile, (str, Path)):
        try:
            profile = json.loads(Path(profile).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PartnnerError(f"neurosurgeon: cannot read profile {profile}: {exc}") from exc
    if not isinstance(profile, dict):
        raise PartnnerError(
            f"neurosurgeon needs profile= (a partnner-profile dict or path), received {type(profile).__name__}"
        )
    try:
        edge = np.array(profile["edge"]["cut_s"], dtype=np.float64)
        cloud = np.array(profile["cloud"]["cut_s"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise PartnnerError(f"neurosurgeon: profile needs edge.cut_s and cloud.cut_s lists ({exc!r})") from None
    if edge.shape != (n_cuts,) or cloud.shape != (n_cuts,):
        raise PartnnerError(
            f"neurosurgeon: the model has {n_cuts} cuts; the profile has {edge.size} edge and "
            f"{cloud.size} cloud entries"
        )
    return edge, cloud


class Neurosurgeon(Selector):
    """Pre-characterization: the edge and cloud cost of every cut measured on the target first.

    Online it learns only the link (the same estimator as partnner) and a cloud load factor from
    the server's reported time; edge costs stay as profiled. While edge-only it re-checks its best
    partitioned cut every ``recheck`` frames, or it would never see a link come back.
    """

    name = "neurosurgeon"

    def __init__(self, manifest, profile=None, bps=5e6, rtt_s=0.03, recheck=50):
        super().__init__(manifest)
        n = len(manifest.cuts)
        self.edge_s, self.cloud_s = _profile(profile, n)
        self.bytes = np.array([c.boundary_bytes for c in manifest.cuts], dtype=np.float64)
        self.is_edge = np.array([c.is_edge_only for c in manifest.cuts])
        self.link = LinkEstimator(bps=bps, rtt_s=rtt_s)
        self.load = 1.0
        self.recheck = recheck
        self.since_remote = 0

    def _estimates(self):
        remote = self.link.predict(self.bytes) + self.cloud_s * self.load
        return self.edge_s + np.where(self.is_edge, 0.0, remote)

    def choose(self):
        est = self._estimates()
        best = int(np.argmin(est))
        if self.is_edge[best] and self.since_remote >= self.recheck:
            est[self.is_edge] = np.inf
            return int(np.argmin(est))
        return best

    def observe(self, obs: Observation):
        c = obs.cut
        if self.is_edge[c]:
            self.since_remote += 1
            return
        self.since_remote = 0
        nbytes = obs.bytes_sent if obs.bytes_sent is not None else self.bytes[c]
        if obs.timed_out:
            self.link.timeout(nbytes, obs.transfer_s)
            return
        self.link.observe(nbytes, obs.transfer_s)
        if self.cloud_s[c] > 0:
            self.load = 0.5 * self.load + 0.5 * obs.cloud_s / self.cloud_s[c]

    def deadline_s(self, cut):
        if self.is_edge[cut]:
            return None
        remote = float(self.link.predict(self.bytes[cut]) + self.cloud_s[cut] * self.load)
        return 2.0 * remote + float(self.edge_s[self.is_edge].max(initial=0.0)) + 0.01
