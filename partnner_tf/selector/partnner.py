"""The PArtNNer policy: online cut selection from the manifest's MACs and bytes and what frames show.

Latency of cut c = edge(c) + link(bytes_c) + cloud(c). Edge and cloud are level x shape curves
over prefix / suffix MACs (estimators.CostCurve), the link is rtt + bytes x s/byte
(estimators.LinkEstimator). It runs the cut with the lowest estimate, and explores a cut only
when an optimistic estimate could beat the best and a regret budget (a small share of the
latency so far) pays for it. docs/selector.md explains the design.
"""

import math
from statistics import median

import numpy as np

from partnner_tf.errors import PartnnerError
from partnner_tf.selector.base import Observation, Selector
from partnner_tf.selector.estimators import BAND, SUSTAIN, CostCurve, LinkEstimator


#: A MAC's relative cost by layer kind on CPUs (memory-bound kinds cost more per MAC); only a
#: prior that shapes interpolation between observed cuts, which measurements then correct.
KIND_WEIGHTS = {"conv": 1.0, "dense": 2.0, "depthwise": 4.0, "elementwise": 4.0}
#: An edge-only time known from hedged runs alone (beside a cloud request, sharing the CPU) may
#: be this many times the edge's own: it is worth one plain edge-only frame to find out. The
#: doubt grows by HEDGE_DOUBT_GROWTH a frame while that frame has not come, up to HEDGE_DOUBT_MAX:
#: on the testbed, first-frame hedges took 1.4-1.5x and, inferred from when a fixed doubt of 1.5
#: let edge-only be checked (never, or at frame 65), ~1.9-3x in CI runs.
HEDGE_DOUBT = 1.5
HEDGE_DOUBT_GROWTH = 0.04
HEDGE_DOUBT_MAX = 3.0
#: The extra edge time hedged probes cost (their edge-only run slowed by the request beside it)
#: is held to this share of the edge-only frames between them, or to HEDGE_GAIN_SHARE of what
#: those frames would save were the link as good as optimism says, whichever allows more.
HEDGE_PROBE_SHARE = 0.02
HEDGE_GAIN_SHARE = 0.03
#: Per frame, how much of the unspent start allowance stays (0.93: half of it after 10 frames).
START_FADE = 0.93
#: The budget holds at most this many frames' worth once the start's allowance has faded.
BUDGET_CAP = 2.0
#: A plan (the cut to run, nothing to explore) is kept for this much frame time while frames
#: bring no news: conditions worth another cut do not come and go faster, and planning costs
#: 50-200 us a frame in Python, 1-5% of a 4 ms model's frame. Frames this long or longer are
#: planned every time (docs/selector.md, "Keeping a plan over short frames").
PLAN_S = 0.02
#: A caller that gives up on the cloud after a wait of its own, never asking deadline_s() (an
#: outside harness): its last MISSES remote frames price what giving up costs it (_late_priced).
MISSES = 20


def _work(cuts, side, weights):
    """Per cut, prefix or suffix MACs weighted by kind when the manifest has them, else raw."""
    weights = weights or KIND_WEIGHTS
    raw = np.array([getattr(c, f"{side}_macs") for c in cuts], dtype=np.float64)
    by_kind = [c.extra.get(f"{side}_macs_by_kind") for c in cuts]
    if not all(isinstance(k, dict) for k in by_kind):
        return raw
    try:
        out = np.array([sum(float(v) * weights.get(k, 2.0) for k, v in d.items()) for d in by_kind])
    except (TypeError, ValueError):
        return raw
    # Work the kinds do not account for (pooling, reshapes) still counts, at the raw rate.
    return out + np.maximum(raw - np.array([sum(float(v) for v in d.values()) for d in by_kind]), 0.0)


class Partnner(Selector):
    """Adaptive, profiling-free cut selection.

    Args:
        manifest: the model's manifest.
        budget: share of the expected latency that exploration and link probes may cost.
        start_budget: exploration allowance after the first frame, in edge-only frames.
        hysteresis: a new cut must be estimated this much better to replace the current one.
        deadline_slack: a frame waits this many times its link+cloud estimate (plus one
            edge-only frame) before the runtime finishes it on the edge.
        bps, rtt_s: the link prior before anything is measured.
        cloud_speedup: the prior of how much faster the cloud runs a MAC than the edge.
        optimism: how far an unobserved cut's optimistic estimate leans to its lower bound (0-1).
        min_probe_every, max_probe_every: while edge-only, probe the link after this many frames,
            the wait growing by half after each probe, up to the maximum.
        kind_weights: relative cost of a MAC per layer kind, used when the manifest gives
            ``prefix_macs_by_kind``/``suffix_macs_by_kind`` (default :data:`KIND_WEIGHTS`).
    """

    name = "partnner"

    def __init__(self, manifest, budget=0.01, start_budget=8.0, hysteresis=0.03, bps=5e6, rtt_s=0.03,
                 cloud_speedup=4.0, optimism=0.75, deadline_slack=8.0, min_probe_every=4, max_probe_every=64,
                 kind_weights=None):
        super().__init__(manifest)
        cuts = manifest.cuts
        if len(cuts) < 2 and (manifest.edge_only is None):
            raise PartnnerError(f"model {manifest.name!r}: partnner needs an edge-only cut")
        self.E = manifest.edge_only if manifest.edge_only is not None else len(cuts) - 1
        self.bytes = np.array([c.boundary_bytes for c in cuts], dtype=np.float64)
        self.is_edge = np.array([c.is_edge_only for c in cuts])
        self._remote_mask = (~self.is_edge).astype(np.float64)  # 0 where nothing leaves the edge
        self.pmacs = _work(cuts, "prefix", kind_weights)
        self.smacs = _work(cuts, "suffix", kind_weights)
        zero_edge = manifest.cloud_only
        self.edge = CostCurve(self.pmacs, zero_at=zero_edge)
        self.cloud = CostCurve(self.smacs, zero_at=self.E)
        self.link = LinkEstimator(bps=bps, rtt_s=rtt_s)
        self.budget = budget
        self.start_budget = start_budget
        self.hysteresis = hysteresis
        self.cloud_speedup = cloud_speedup
        self.optimism = optimism
        self.deadline_slack = deadline_slack
        self.tokens = 0.0
        self.frames = 0
        self.changes = 0  # changes the estimators have seen (board, cloud, link)
        self.jumps = 0  # of them, the board's or the cloud's level jumps
        self.current = self.E
        self.exploring = None
        self.last_seen = np.zeros(len(cuts))
        self.recheck = 0.1
        self.asked_deadline = False  # the caller asks deadline_s(), so it gives up when told
        self._waits = []  # a caller that does not ask: its own waits, seen in its timeouts
        self._misses = []  # and its latest remote frames: (cut, link + cloud time, timed out)
        self.min_probe_every = min_probe_every
        self.max_probe_every = max_probe_every
        self.probe_every = min_probe_every
        self.probe_cost = 0.0  # what the last unhedged probe cost beyond an edge-only frame (_plan)
        self.hedging = False  # set once the caller asks hedge(): it runs probes hedged
        self.edge_only_hedged = False  # edge-only is known from hedged runs only
        self.hedged_at = 0  # the frame edge-only was first known from a hedged run
        self.hedge_slow = 1.0  # a hedged edge-only run's time over a plain one's, as seen
        self._est = None
        self._opt_x = None  # estimates(): the optimistic estimates explorations go by
        self._e_now = None  # estimates(): the edge part of each cut's estimate
        self._lowest = None  # estimates(): the lowest estimate
        self._likely = (None, None)  # likely_cuts(): (the optimistic estimates, the answer)
        self._terms = (None, None, None)  # _remote_terms: (cloud estimate, link estimate, terms)
        self._far = (None, None, None)  # _far_from_sent: (history, payload sizes in it, answer)
        self._lean = (None, None)  # estimates(): (edge.unobserved(), optimism x it, or None if all 0)
        self._bound_parts = None  # estimates(): what _long_shot needs to bound unobserved cuts
        self._planned = None  # the cut the last plan ran with nothing to explore, while kept
        self._plan_s = 0.0  # frame time since that plan
        self._kept = False  # the next choose() keeps the plan (observe() decides)
        self._expect = None  # what the plan expects of its cut (_parts)
        self._checking = None  # the cut run to check a surprising first cloud cost (_check_cut)
        self._held = []  # the kept plan's frames not observed yet (_take_held)
        self._held_s = 0.0  # their frame time

    # -- estimates ------------------------------------------------------------------------------

    def estimates(self):
        """(estimate, optimistic estimate) of every cut's latency, seconds, as of the last plan
        (computed once per plan: every frame, except while a plan is kept, see PLAN_S)."""
        if self._est is not None:
            return self._est
        e_rate = self.edge.rate() or 1e-9
        e_est, e_lo = self.edge.predict(e_rate)
        remote, fixed, wire, cloud = self._remote_terms(e_rate / self.cloud_speedup)
        link = self.link
        # A link not seen for a while may have recovered: optimism about it grows with time.
        # So may the cloud's load: seen only through the same frames, it grows as optimistic.
        unseen = 1e3 if link.observed + link.timeouts == 0 else min(2.0 ** min(link.since / 8.0, 10.0), 1e3)
        # The rtt / per-byte split is only known near the payloads seen lately: far from all of
        # them the per-byte cost may be lower than it looks.
        stale = np.maximum(unseen, self._far_from_sent())
        est = e_est + remote
        self._e_now = e_est
        if self._waits and self._misses:
            est = e_est + self._late_priced(remote, float(est[self.E]))
        # Unobserved cuts lean towards their monotone bounds; observed ones are known up to noise.
        unobs = self.edge.unobserved()
        if self._lean[0] is not unobs:
            self._lean = (unobs, self.optimism * unobs if unobs.any() else None)
        e_opt = e_est if self._lean[1] is None else e_est - self._lean[1] * (e_est - e_lo)
        doubt = self.edge.doubt()
        if doubt is not None:
            e_opt = e_opt / doubt
        e_opt = np.minimum(e_opt, self.edge.lowest_seen())
        remote_opt = fixed + wire / stale + cloud / unseen
        opt = e_opt + remote_opt
        self._bound_parts = (unobs, e_lo, remote_opt)  # for _long_shot
        # What was seen of a cut long ago may no longer hold: let near-ties be checked again.
        aged = 1.0 - (self.recheck / 200.0) * np.minimum(self.frames - self.last_seen, 200.0)
        opt *= aged
        # For a caller that does not hedge, explorations go by the same without the optimism
        # about a cloud unseen for a while: only its probes chase that, spaced out (_plan). One
        # that hedges probes every few frames, which keeps that optimism small; there, taking it
        # from explorations too cost three benchmark worlds 0.4-1.5% (docs/selector-log.md).
        opt_x = None if self.hedging else (e_opt + fixed + wire / stale + cloud) * aged
        if self.edge_only_hedged:
            waited = self.frames - self.hedged_at
            doubted = opt[self.E] / min(HEDGE_DOUBT + HEDGE_DOUBT_GROWTH * waited, HEDGE_DOUBT_MAX)
            opt[self.E] = max(doubted, min(opt[self.E], self._plain_floor()))
        self._est = (est, np.minimum(opt, est))
        if opt_x is not None:
            opt_x[self.E] = opt[self.E]
        self._opt_x = self._est[1] if opt_x is None else np.minimum(opt_x, est)
        self._lowest = float(est.min())
        return self._est

    def _plain_floor(self):
        """What edge-only costs at least, by the prefixes seen plainly: it runs each of them and
        more, so it costs about as much as the dearest (up to BAND: real prefixes are not quite
        monotone in MACs). The doubt about a hedged edge-only time goes no lower: on the testbed,
        a Pi 3B whose prefix of 99.7% of ResNet50's MACs took 424 ms plainly checked edge-only
        (411 ms) against 180 ms cloud-only frames, doubting its hedged 429 ms 2.6x."""
        anchors = np.delete(self.edge.anchor, self.E)
        seen = anchors[~np.isnan(anchors)]
        return float(seen.max()) * self.edge.level / BAND if seen.size else 0.0

    def _remote_terms(self, cloud_prior):
        """Per cut (zero for edge-only), the estimated link + cloud time, and its parts that
        optimism scales: the link's fixed and per-byte parts and the cloud's optimistic cost.
        Built again only when the link's or the cloud's estimate moved (not on an edge-only frame)."""
        k = self.cloud.predict(cloud_prior)
        link, cached = self.link, self._terms
        if cached[0] is k and cached[1] == (link.rtt, link.s_per_byte):
            return cached[2]
        k_est, k_lo = k
        if self.cloud.rate() is None:
            k_lo = 0.0  # nothing seen of the cloud: it might be very fast
        k_opt = k_est - self.optimism * self.cloud.unobserved() * (k_est - k_lo)
        rm = self._remote_mask
        wire = self.bytes * link.s_per_byte * rm
        terms = ((link.rtt + wire + k_est) * rm, link.rtt * rm, wire, k_opt * rm)
        self._remote_s = terms[0]
        self._terms = (k, (link.rtt, link.s_per_byte), terms)
        return terms

    # -- the contract ---------------------------------------------------------------------------

    def choose(self):
        if not self._kept:
            # The held frames, observed now one by one, say whether the plan is still kept, as
            # they would have frame by frame (their time, summed in another order, can differ).
            self._take_held()
        if self._kept:
            return self.current
        c = self._plan()
        # A plan to run the current cut and explore nothing holds while frames bring no news
        # (observe() says), for up to PLAN_S of frame time.
        self._planned, self._plan_s = (c if self.exploring is None and c == self.current else None), 0.0
        if self._planned is not None:
            self._expect = self._parts(c)
        return c

    def _parts(self, cut):
        """What a frame at ``cut`` may cost and bring no news, per part (edge, transfer, cloud):
        a (low, high) range around the estimate, widened to what the cut has shown lately (a
        cost there is no outlier; a throttled board runs a prefix at one of two speeds); nan
        for a part never seen."""
        def around(curve):
            x = float(curve.anchor[cut] * curve.level)
            low, high = x / BAND, x * BAND
            usual = curve.usual(cut)
            return (min(low, usual[0]), max(high, usual[1])) if usual else (low, high)

        none = (0.0, 0.0)
        edge = none if cut == self.edge.zero_at else around(self.edge)
        if self.is_edge[cut]:
            return edge, none, none
        wire = float(self.link.predict(self.bytes[cut]))
        return edge, (wire / BAND, wire * BAND), around(self.cloud)

    def _plan(self):
        if math.isnan(self.edge.anchor[self.E]):
            return self._first_frames()
        est, opt = self.estimates()
        best = int(est.argmin())
        if best != self.current and est[self.current] <= est[best] * (1 + self.hysteresis):
            best = self.current
        self.current = best
        self.exploring = None
        if self.cloud.surprise is not None:
            c = self._check_cut(est)
            if c is not None:
                self.exploring = (c, float(est[best]), False)
                return c
        cand = (opt < est[best] * (1 - self.hysteresis)).nonzero()[0]
        if not cand.size:
            return self._long_shot(best, est)
        if self.is_edge[best]:
            # Edge-only: the link is unseen, so probe it with the cheapest promising cut. A
            # hedged probe costs its prefix and what the request slows the edge-only run beside
            # it, so it goes every few frames or as far apart as that slowdown needs (less far
            # when what the link could save is large: HEDGE_GAIN_SHARE). An unhedged probe costs
            # what the last one did beyond an edge-only frame, and goes as far apart as that
            # needs, and on a backoff schedule (soon after the link went bad, rarely once it
            # stays bad): a caller that asks no deadline gives up after its own, and there one
            # probe of a dead link cost 20 edge-only frames (a 1 s wait, 50 ms frames).
            e_full = float(est[best])
            gain = e_full - float(opt[cand].min())
            extra = (self.hedge_slow - 1.0) * e_full if self.hedging else self.probe_cost
            spacing = extra / max(HEDGE_PROBE_SHARE * e_full, HEDGE_GAIN_SHARE * gain)
            if self.link.since >= max(self.probe_every, spacing):
                if not self.hedging:
                    self.probe_every = min(1.5 * self.probe_every, self.max_probe_every)
                c = self._cheapest_probe(cand, est)
                self.exploring = (c, float(est[best]), True)
                return c
        else:
            self.probe_every = self.min_probe_every
        if self._change_pending():
            return best
        # Explorations test guesses about cuts. For a caller that does not hedge, whether a cloud
        # unseen for a while got less loaded is the probes' question, spaced by what they cost:
        # explorations chasing it too went to cloud-only every 25-30 frames while edge-only,
        # unhedged, and left no budget for the cut an 8x loaded cloud made best (through the
        # contract, ResNet50 224x224, held-out seed 7: 1,039 frames to recover; 142 now).
        opt_x = self._opt_x
        cand = cand[opt_x[cand] < est[best] * (1 - self.hysteresis)]
        if self.tokens > 0 and cand.size:
            # The most promising by the middle of estimate and optimism, if the expected cost
            # (bounded by the deadline) fits the budget; what it really cost is charged after.
            c = int(cand[(est[cand] + opt_x[cand]).argmin()])
            expected = min(0.5 * (est[c] + opt_x[c]), self._loss_if_late(c, est)) - est[best]
            if expected <= self.tokens:
                self.exploring = (c, float(est[best]), False)
                return c
        return best

    def _check_cut(self, est):
        """A cut's first cloud cost was far under its estimate (CostCurve.surprise): the remote
        cut seen before it with the lowest estimate, to run next and tell whether the cloud got
        faster; None (and no check) if there is none."""
        cut, t = self.cloud.surprise
        before = (self.cloud.created >= 0) & (self.cloud.created < t) & ~self.is_edge
        before[cut] = False
        if not before.any():
            self.cloud.surprise = None
            return None
        self._checking = int(np.where(before, est, np.inf).argmin())
        return self._checking

    def _change_pending(self):
        """A run of outliers is pending on the edge or the cloud: a change may be under way, and
        a cut first seen now would be priced by the level about to move (a cloud 8x faster made
        a new cut look 8x cheaper than the rest). Exploring waits the frame or two it takes."""
        return bool(self.edge.outliers or self.cloud.outliers)

    def _long_shot(self, best, est):
        """Nothing looks promising and the budget has sat full (two frames' worth, the start's
        allowance gone): try the unobserved cut with the lowest lower bound that beats the best
        and whose estimate the budget pays for. Interpolation in MAC space can price a cut far
        above what it costs (a tail that costs 40x per MAC what the head did), and the lean of
        its optimistic estimate towards the bound is not enough to earn a look."""
        if self.is_edge[best] or self.start_budget * START_FADE ** self.frames > BUDGET_CAP:
            return best
        if self.tokens < 0.95 * BUDGET_CAP * float(est[best]) or self._change_pending():
            return best
        unobs, e_lo, remote_lo = self._bound_parts
        if not unobs.any():
            return best
        # Each unobserved cut's lower bound; the edge's loosened by how far under the monotone
        # envelope seen cuts have come (measured prefixes are not monotone in MACs).
        slack = min(self.edge.slack(), BAND)
        bound = np.where(unobs > 0, e_lo / slack + remote_lo, np.inf)
        ok = (bound < est[best] * (1 - self.hysteresis)) & (est - est[best] <= self.tokens)
        if not ok.any():
            return best
        c = int(np.where(ok, bound, np.inf).argmin())
        if min(float(est[c]), self._loss_if_late(c, est)) - est[best] > self.tokens:
            return best
        self.exploring = (c, float(est[best]), False)
        return c

    def _first_frames(self):
        """Before the edge-only time is known. A caller that hedges gets cloud-only with the
        edge-only run beside it: the frame costs the faster of the two, and shows both. Until the
        edge-only run's time comes back (the cloud won), cloud-only goes on; otherwise the first
        frame is edge-only: safe, and it prices the whole model on this edge."""
        self.exploring = None
        C = self.manifest.cloud_only
        if not self.hedging or C is None:
            return self.E
        if self.frames == 0:
            self.exploring = (C, float("inf"), True)
            return C
        # (A hedge that never reports, e.g. one that failed, ends this after a while.)
        return C if self.link.observed > 0 and self.frames < self.max_probe_every else self.E

    def offer_hedge(self):
        self.hedging = True

    def hedge(self, cut):
        """Probes are hedged: the edge-only run goes alongside, so a probe on a link still bad
        costs only its prefix. A caller that asks this honours it, which makes probes cheap
        enough to send every few frames."""
        self.hedging = True
        return self.exploring is not None and self.exploring[0] == cut and self.exploring[2]

    def observe(self, obs: Observation):
        # A frame of a kept plan that is as expected is held, not observed: held frames are
        # observed in a batch, in order, when the plan ends. The estimators learn the same, and
        # for less: each frame's interpreter run leaves the caches cold, and observing a frame
        # in the edge runtime cost 3-5x what it does in a loop.
        if self._kept and self._quiet(obs):
            self._held.append(obs)
            self._held_s += obs.edge_s + obs.transfer_s + obs.cloud_s
            self._kept = self._plan_s + self._held_s < PLAN_S
            return
        self._take_held()
        self._observe(obs)

    def _quiet(self, obs):
        """Whether a frame of the kept plan can be held: it ran the planned cut, seen before,
        nothing timed out, no hedged time came with it, and each of its costs is in the range
        the plan expected (_parts): no outlier, so no estimator could have seen a change in it,
        news that would end the plan."""
        c = obs.cut
        if c != self._planned or obs.timed_out or obs.edge_only_s or self.last_seen[c] == 0:
            return False
        for seen, (low, high) in zip((obs.edge_s, obs.transfer_s, obs.cloud_s), self._expect):
            if not low <= seen <= high:
                return False
        return True

    def _take_held(self):
        """Observe the held frames, in order, as if each had come alone (see _quiet)."""
        if self._held:
            held, self._held, self._held_s = self._held, [], 0.0
            for obs in held:
                self._observe(obs)

    def _observe(self, obs):
        self.frames += 1
        edge_unknown = math.isnan(self.edge.anchor[self.E])
        c = obs.cut
        if not 0 <= c < len(self.bytes):
            raise PartnnerError(f"observation for cut {c}: model {self.manifest.name!r} has cuts 0..{len(self.bytes) - 1}")
        first = self.last_seen[c] == 0  # the cut's first frame (edge-only's first plain one)
        self.last_seen[c] = self.frames
        edge_s = obs.edge_s
        if c == self.E and edge_s > 0 and self.edge_only_hedged:
            # Hedged runs share the edge's CPU with the cloud request (on the testbed's boards
            # they took 1.1-2.1x as long): the first plain edge-only frame replaces them, unless
            # it was slower still. Then it was disturbed (a prefix loading beside it, a stall of
            # the host), and the hedged time, an upper bound, stays as the edge-only anchor.
            hedged = float(self.edge.anchor[self.E] * self.edge.level)
            self.edge_only_hedged = False
            if edge_s <= hedged:
                self.edge.forget(self.E)
            else:
                edge_s = hedged
        # A prefix of no MACs (a pad, a rescaling) still costs time: only cloud-only has none.
        if edge_s > 0 and c != self.edge.zero_at:
            self.edge.observe(c, edge_s)
        if obs.edge_only_s and (edge_unknown or self.edge_only_hedged):
            # A hedged run's time, biased high, stands for edge-only only until a plain one.
            self.edge.observe(self.E, obs.edge_only_s)
            if not self.edge_only_hedged:
                self.edge_only_hedged, self.hedged_at = True, self.frames
        elif obs.edge_only_s:
            # Beside a plain edge-only time, a hedged one tells what hedging costs the edge.
            ratio = obs.edge_only_s / float(self.edge.anchor[self.E] * self.edge.level)
            self.hedge_slow = 0.7 * self.hedge_slow + 0.3 * min(max(ratio, 1.0), 3.0)
            if ratio < 1 / BAND:
                # ... and, far below edge-only's price, what edge-only costs at most: a plain run
                # is no slower than one sharing the CPU. Two stalled edge-only frames read as
                # the board slowing 2.6x priced it at 60 ms; a hedge beside the next frame took
                # 27, ignored, and partnner ran 29-30 ms cuts for the 50 frames left (testbed,
                # yolo_tiny on the Jetson Nano over WiFi: 1.17x edge-only's 22.6 ms).
                self.edge.cap(self.E, obs.edge_only_s)
        if edge_unknown and not math.isnan(self.edge.anchor[self.E]):
            self.tokens = self.start_budget * max(float(self.edge.anchor[self.E] * self.edge.level), 1e-4)
        if not (self.is_edge[c] or self.asked_deadline or self.hedging):
            self._note_miss(c, obs)
        if self.is_edge[c]:
            self.link.tick()
        elif obs.timed_out:
            self.link.timeout(obs.bytes_sent if obs.bytes_sent is not None else self.bytes[c], obs.transfer_s)
        else:
            nbytes = obs.bytes_sent if obs.bytes_sent is not None else self.bytes[c]
            probe = self.exploring is not None and self.exploring[0] == c and self.exploring[2]
            # A probe is the only news of a link unseen for a while: believe it outright.
            news = self.link.observe(nbytes, obs.transfer_s, trust=probe)
            if news:
                self._misses = []  # frames of another link
            # Queueing and slower compute both scale with load: one level covers both. A suffix
            # of no MACs still has the server's own overhead. The cloud, seen through the same
            # frames, is as stale as the link, and news of it is believed the same way.
            if c == self._checking and self.cloud.surprise is not None:
                self.cloud.check(c, obs.cloud_s)
            self.cloud.observe(c, obs.cloud_s, trust=news)
        if c == self._checking:
            self._checking = None
            self.cloud.surprise = None
        spent = obs.edge_s + obs.transfer_s + obs.cloud_s
        if self.exploring is not None and self.exploring[0] == c:
            if obs.timed_out and not obs.edge_only_s:
                spent += float(self.edge.anchor[self.E] * self.edge.level)  # the edge redid it all
            self.tokens -= max(0.0, spent - self.exploring[1])
            if self.exploring[2] and not self.hedging:
                self.probe_cost = max(0.0, spent - self.exploring[1])
        self.exploring = None
        changes = self.edge.changes + self.cloud.changes + self.link.changes + self.edge.undone + self.cloud.undone
        self._keep_plan(c, spent, news=first or obs.timed_out or bool(obs.edge_only_s) or changes != self.changes)
        if changes != self.changes:
            # A debt run up exploring (or probing a bad link) bought knowledge of conditions
            # that have just changed: it must not keep the selector from exploring the new ones.
            self.changes, self.tokens = changes, max(self.tokens, 0.0)
        self.estimates()
        best = self._lowest
        jumps = self.edge.changes + self.cloud.changes
        if jumps != self.jumps:
            # The board or the cloud changed speed: the best cut may now be one never seen, priced
            # by interpolation that can be far off (a cloud 8x slower, and the best cut was a mid
            # one whose prefix costs half what its MACs say). The budget starts full, two frames'
            # worth, so the new best is found in a few frames, not after the hundreds that a
            # refill at 1% a frame takes. (Not on a link change: bursty links make them often.)
            self.jumps, self.tokens = jumps, max(self.tokens, BUDGET_CAP * best)
        # The budget refills with a share of what frames cost; exploring spends it. What the
        # start allowed and the start did not need fades (to two frames' worth): spent dozens of
        # frames later, it would be a burst of explorations nothing asked for.
        cap = max(self.start_budget * START_FADE ** self.frames, BUDGET_CAP)
        self.tokens = min(self.tokens + self.budget * best, cap * best)

    def _keep_plan(self, cut, spent, news):
        """Whether the next frame keeps the plan: this one ran the planned cut and brought no
        news (no cut seen for the first time, no timeout, no hedged time, no change, no run of
        outliers under way), and the plan is younger than PLAN_S of frame time. If not, the
        estimates are made again from what this frame showed."""
        self._plan_s += spent
        self._kept = (cut == self._planned and not news and not self._change_pending()
                      and self._plan_s < PLAN_S)
        if not self._kept:
            self._planned, self._est = None, None

    def deadline_s(self, cut):
        """How long to wait for the cloud. Giving up costs a whole edge-only run and cellular
        links are bursty, so a frame waits ``deadline_slack`` times its estimate plus one
        edge-only frame; an exploration 4 times its estimate, a probe only until it has lost
        to edge-only."""
        self.asked_deadline = True
        return self._deadline(cut)

    def _deadline(self, cut):
        if np.isnan(self.edge.anchor[self.E]) or self.is_edge[cut]:
            return None
        est, _ = self.estimates()
        e_full = float(est[self.E])
        remote = self._remote(cut)
        exploring = self.exploring is not None and self.exploring[0] == cut
        if exploring and self.exploring[2] and self.hedging:
            return float(2.0 * e_full + 0.02)  # the edge-only run beside it ends the wait
        if exploring and self.exploring[2]:
            e_cut = float(self._e_now[cut])
            return float(max(1.2 * max(e_full - e_cut, 0.0) + 0.01, 0.02))
        if exploring:
            # An exploration tests a guess: the answer is known once the frame has lost to the
            # best cut; waiting on costs no more than giving up would (an edge-only rerun).
            e_cut = float(self._e_now[cut])
            lost = max(self.exploring[1] - e_cut, 0.0)
            return float(max(min(4.0 * remote, lost) + e_full, 0.02))
        return float(max(self.deadline_slack * remote + e_full, 0.02))

    def likely_cuts(self):
        """Cuts the next frames may ask for (the runtime preloads them)."""
        if math.isnan(self.edge.anchor[self.E]):
            return [self.E]
        opt = self.estimates()[1]
        if self._likely[0] is not opt:
            self._likely = (opt, opt.argsort()[:3].tolist())
        return self._likely[1]

    # -- helpers --------------------------------------------------------------------------------

    def _far_from_sent(self):
        """Per cut, 1 when its payload is within 2x of a recent transfer's, else the root of the
        ratio to the nearest one, clipped to 1.5-10: how much lower its per-byte cost may be than
        the estimate learnt there (cached per set of payload sizes)."""
        history = self.link.history
        if self._far[0] is history:
            return self._far[2]
        sizes = sorted({b for b, _ in history})  # a new transfer seldom brings a new size
        if sizes == self._far[1]:
            self._far = (history, sizes, self._far[2])
            return self._far[2]
        far = np.ones(len(self.bytes))
        if sizes:
            # How far (as a ratio) each cut's payload is from the nearest one sent lately:
            # the further, the less the rtt/per-byte split learnt there says about it.
            d = np.abs(np.log(self.bytes[:, None] / np.array(sizes)[None, :] + 1e-12)).min(axis=1)
            far = np.where(d <= np.log(2.0), 1.0, np.clip(np.exp(d / 2), 1.5, 10.0))
        self._far = (history, sizes, far)
        return far

    def _note_miss(self, c, obs):
        """A remote frame of a caller that gives up after a wait of its own: a timeout tells the
        wait (its ``transfer_s``). SUSTAIN timeouts in a row are no burst but a link gone bad, which
        the link's estimate, pushed up by them, prices alone: the frames before them go."""
        if obs.timed_out and obs.transfer_s > 0:  # a wait of 0 says nothing of the caller's
            self._waits = (self._waits + [float(obs.transfer_s)])[-5:]
        self._misses = (self._misses + [(c, obs.transfer_s + obs.cloud_s, bool(obs.timed_out))])[-MISSES:]
        if len(self._misses) >= SUSTAIN and all(m[2] for m in self._misses[-SUSTAIN:]):
            self._misses = []

    def _late_priced(self, remote, e_full):
        """Per cut, its link + cloud time under the caller's wait, from the latest remote frames:
        each one's time, scaled from its cut's estimate to this cut's, and past the wait the wait
        plus the edge-only rerun. The estimate alone prices a cut by its mean time, under the
        wait, while the frames that cross it cost the wait and the rerun (ResNet50 through the
        contract over a 3G trace: an 8 KB cut estimated below edge-only, 1.24x edge-only's mean)."""
        wait = median(self._waits)
        cut = np.array([m[0] for m in self._misses])
        got = np.array([m[1] for m in self._misses])
        t = (got / np.maximum(remote[cut], 1e-9))[:, None] * remote[None, :]
        # A timeout (its time is the wait) is late for every cut estimated as dear or dearer.
        cost = np.where(t >= wait * 0.999, wait + e_full, t).mean(axis=0)
        return np.where(self._remote_mask, cost, 0.0)

    def _remote(self, cut):
        """The estimated link + cloud time of ``cut`` (computed with the estimates)."""
        self.estimates()
        return float(self._remote_s[cut])

    def _cheapest_probe(self, cand, est):
        """The candidate whose probe costs least: one that should finish within its deadline
        costs its extra latency; one that would not costs its prefix plus, hedged, the slowed
        edge-only run's extra, unhedged, the wait."""
        e_full = float(est[self.E])
        self.estimates()
        remote = self._remote_s[cand]
        e_cut = self._e_now[cand]
        wait = 1.2 * np.maximum(e_full - e_cut, 0.0) + 0.01
        if self._waits:
            wait = np.minimum(wait, median(self._waits))  # the caller gives up sooner
        # Lost: hedged, the edge-only run beside it answers, as slowed as hedges are seen to be;
        # unhedged, the edge reruns the frame after the wait.
        lost = e_cut + ((self.hedge_slow - 1.0) * e_full if self.hedging else wait)
        cost = np.where(remote <= wait, est[cand] - e_full, lost)
        return int(cand[np.argmin(cost)])

    def _loss_if_late(self, cut, est):
        """What a frame at ``cut`` costs at worst: the deadline passes and the edge redoes it all."""
        d = self._deadline(cut)
        if d is None:
            return est[cut]
        return float(self._e_now[cut] + d + est[self.E])
