"""Online estimators the adaptive policies share: a link model and a level-times-shape cost curve."""

import math
# Not numpy's median: its first call imports a numpy submodule, 10-35 ms in the middle of a
# stream (the first level jump; measured in the edge runtime), and these lists are a few numbers.
from statistics import median

import numpy as np

#: A residual outside [1/BAND, BAND] is an outlier; OUTLIERS of them in a row, on the slow side
#: (one more on the fast side), mean a change.
BAND = 1.35
OUTLIERS = 2
#: How many of a cut's latest costs tell its usual range.
HISTORY = 8
#: A cut with fewer than HISTORY costs can still tell a change: after FAR_AFTER costs, one FAR
#: times beyond all of them is no error of its anchor.
FAR = BAND ** 2
FAR_AFTER = 3
#: For this many costs after a level jump, costs that agree with the level before can take it back.
JUDGE = HISTORY
#: For this many costs after a level rise, what is seen of the cuts priced before it may still be
#: the stall that made it: those cuts stay in doubt (CostCurve.doubt).
GRACE = 2
#: A cut's first cost this many times under its estimate (interpolated between cuts seen) may
#: be a fall of the whole board's or cloud's costs that only it saw (``surprise``): a cut seen
#: before tells (``check``; partnner runs one for the cloud, whose load comes and goes). A rise
#: only it saw needs no check: the other cuts, priced low, are run and show it.
SURPRISE = FAR ** 2
#: The link is bursty: only this many transfers in a row outside the band are a change.
SUSTAIN = 3
#: The rtt is refitted only while the last this many transfers have payloads of different sizes.
FIT_RECENT = 16
#: A link unseen for this many frames may be another link now: the next transfer is believed.
STALE = 3
#: The rtt is refitted on every one of the first this many transfers, outliers too.
FIT_FIRST = 8


class LinkEstimator:
    """transfer_s ~= rtt + bytes * s_per_byte, learned from (bytes, transfer_s) pairs.

    The fixed part (``rtt``) moves slowly and is fitted over many frames by weighted least squares
    (relative errors, exponential forgetting). The per-byte part is an EWMA of the mean (a bursty
    link's expected transfer includes its bursts), weighted by how much of the transfer the bytes
    explain, that restarts from the recent figures when SUSTAIN transfers in a row fall outside
    the band on the same side. A timeout is a censored sample: the link was slower than that.
    """

    def __init__(self, bps=5e6, rtt_s=0.03, alpha=0.3, keep=0.93, window=40):
        self.s_per_byte = 8.0 / bps
        self.rtt = rtt_s
        self.alpha = alpha
        self.window = window
        self._forget = keep ** np.arange(window - 1, -1, -1)  # the rtt fit's weights by age
        self.history = []  # (bytes, transfer_s) of recent completed transfers
        self.recent = []  # (side of the band, s/byte) of the last few transfers
        self.observed = 0
        self.changes = 0  # shifts of the per-byte cost: sustained, or seen by a fresh transfer
        self._last_y = None  # the per-byte cost of the last completed transfer
        self.timeouts = 0
        self.since = 0  # frames since the link was last observed

    def predict(self, nbytes):
        """Transfer seconds of ``nbytes`` (a number or a numpy array of them)."""
        return self.rtt + nbytes * self.s_per_byte

    def tick(self):
        self.since += 1

    def observe(self, nbytes, transfer_s, trust=False):
        """Take one completed transfer; returns whether it was news that replaced the per-byte
        estimate (first sight, ``trust``, or a link unseen for STALE frames)."""
        nbytes = max(float(nbytes), 1.0)
        transfer_s = max(float(transfer_s), 1e-5)
        ratio = transfer_s / self.predict(nbytes)
        # First sight, a probe, or news of a link unseen for a while: the per-byte estimate
        # describes a link that may be gone, so this transfer replaces it (a recovered link is
        # noticed on its first transfer). The rtt fit keeps its history: propagation persists.
        fresh = self.observed == 0 or trust or self.since >= STALE
        side = 1 if ratio > BAND else (-1 if ratio < 1 / BAND else 0)
        self.history = (self.history + [(nbytes, transfer_s)])[-self.window:]
        # An outlier may be the first of a shift: fitted at once, it moves the rtt towards
        # itself and the next ones fall inside the band, a shift never seen (a link 5x faster
        # read as an rtt of 22 ms for 54, pricing a 600 KB payload 2x too high). Not in the
        # first FIT_FIRST transfers: their outliers are against the prior, which the fit leaves.
        self._fit_rtt(fit=not side or self.observed < FIT_FIRST)
        wire = max(transfer_s - self.rtt, 0.05 * transfer_s)
        share = wire / transfer_s  # how much the bytes explain: little for a tiny payload
        y = wire / nbytes
        self.recent = (self.recent + [(side, y)])[-SUSTAIN:]
        if fresh:
            # Far from the last completed transfer (not from an estimate timeouts pushed up):
            # the link itself changed.
            if self._last_y and not 1 / FAR <= y / self._last_y <= FAR:
                self.changes += 1
            self.s_per_byte = y
        elif side and len(self.recent) == SUSTAIN and all(sd == side for sd, _ in self.recent):
            # A sustained shift, not a burst: restart from the recent figures.
            self.s_per_byte = median([v for _, v in self.recent])
            self.recent = []
            self.changes += 1
        else:
            # The mean (not the median): a bursty link's expected transfer includes its bursts.
            a = self.alpha * max(share, 0.1)
            self.s_per_byte = (1 - a) * self.s_per_byte + a * y
        self._last_y = y
        self.observed += 1
        self.since = 0
        return fresh

    def timeout(self, nbytes, waited_s):
        """The transfer took longer than ``waited_s``: the link is slower than that, likely much."""
        nbytes = max(float(nbytes or 1), 1.0)
        y = 2.0 * max(waited_s - self.rtt, waited_s / 2) / nbytes
        # At most 3x per timeout: on a small payload a timeout is mostly an outage, which ends;
        # timeouts in a row still drive the estimate as far as they need.
        self.s_per_byte = max(self.s_per_byte, min(0.5 * self.s_per_byte + 0.5 * y, 3.0 * self.s_per_byte))
        self.recent = (self.recent + [(1, y)])[-SUSTAIN:]
        self.timeouts += 1
        self.since = 0

    def _fit_rtt(self, fit=True):
        history = self.history
        recent = [b for b, _ in history[-FIT_RECENT:]]
        # Only payloads of different sizes sent lately tell the split: when the policy has
        # settled on one cut, the sizes in the window are old, maybe from another link (a step
        # of bandwidth), and a line through them and today's transfers puts the rtt anywhere.
        if fit and len(history) >= 3 and max(recent) > 1.5 * min(recent):
            # t = rtt + b * s_per_byte by weighted least squares (relative errors, the latest
            # weighing most), solved in closed form: it runs on every transfer.
            h = np.array(history)
            b, t = h[:, 0], h[:, 1]
            w = self._forget[-len(h):] / t ** 2
            s0, s1, s2 = w.sum(), (w * b).sum(), (w * b * b).sum()
            t0, t1 = (w * t).sum(), (w * b * t).sum()
            det = s0 * s2 - s1 * s1
            if det <= 0:
                return
            rtt, spb = (s2 * t0 - s1 * t1) / det, (s0 * t1 - s1 * t0) / det
            if rtt >= 0 and spb > 0:
                self.rtt = 0.7 * self.rtt + 0.3 * float(rtt)
        # The fixed part can never exceed the fastest transfer seen lately.
        self.rtt = min(self.rtt, min(t for _, t in history))


class CostCurve:
    """Per-cut costs as level x shape: a shared level (board throttling, cloud load) times per-cut
    anchors, interpolated in MAC space between observed cuts.

    ``x`` is each cut's MAC count (prefix MACs for the edge, suffix MACs for the cloud); costs are
    monotone in it, which bounds every unobserved cut between its observed neighbours.
    """

    def __init__(self, x, zero_at=None, alpha=0.1, refine=0.2):
        self.x = np.asarray(x, dtype=np.float64)
        self.n = len(self.x)
        self.anchor = np.full(self.n, np.nan)  # cost / level when observed
        self.count = np.zeros(self.n, dtype=np.int64)
        self.created = np.full(self.n, -1, dtype=np.int64)  # observation index of first sight
        self.t = 0
        self.suspect_since = 0
        self.seen = np.full(self.n, -1, dtype=np.int64)  # observation index of each cut's last cost
        self.jumped = (0, 1.0)  # (observation index, level before) of the last level jump
        self.level = 1.0
        self.alpha = alpha
        self.refine = refine
        self.outliers = 0
        self.changes = 0  # level jumps: the whole board or cloud changed speed
        self.undone = 0  # level jumps taken back: the costs after them agreed with the level before
        self._undo = None  # what a jump changed, while the costs after it may still take it back
        self.version = 0  # bumped by every change, so predict() can reuse its last answer
        self._predicted = (None, None)
        self.surprise = None  # (cut, observation index) of a first cost far under its estimate
        self._shape = (None, None)  # the level-free pieces of the curve, per version
        self._slack = (None, 1.0)  # (version, slack()) : read by long shots alone, so built lazily
        self._known = None  # what _layout() built from the observed cuts (and a zero_at stand-in)
        self._rate = self._unobserved = (None, None)
        self._run = []  # the ratios of the current run of outliers
        self._recent = [[] for _ in range(self.n)]  # each cut's latest costs / level
        # Per cut with fewer than HISTORY costs spread over FAR, the lowest / level (else inf):
        # what such a cut may cost when its few costs include a stall (lowest_seen()).
        self._low = np.full(self.n, np.inf)
        self.zero_at = zero_at  # a cut whose cost is 0 by construction (no prefix / no suffix)
        order = np.argsort(self.x, kind="stable")
        # Strictly increasing interpolation abscissa even where cuts share a MAC count.
        self._xs = np.empty(self.n)
        self._xs[order] = self.x[order] + np.arange(self.n) * 1e-6 * max(self.x.max(), 1.0)

    @property
    def observed(self):
        return np.flatnonzero(~np.isnan(self.anchor))

    def observe(self, cut, cost, trust=False):
        """Take one measured cost of ``cut``. ``trust``: the first news after a stretch in which
        nothing was seen (a probe from edge-only): a surprise then moves the level outright."""
        cost = max(float(cost), 1e-6)
        self.version += 1
        self.t += 1
        self.count[cut] += 1
        self.seen[cut] = self.t
        anchor = float(self.anchor[cut])  # Python floats from here: the same IEEE sums, faster
        if math.isnan(anchor):
            # Its first cost is taken at the level of the moment. Far under its estimate, it
            # may be a fall the cut alone saw, on that very frame: taken into its own anchor,
            # the level stays up, and every other cut stays priced too high to be run again (a
            # DenseNet121 world, explored with looser bounds, whose load went back down as a new
            # cut was first seen: cloud-only priced at 4.5x its cost for 1,173 frames). A cut
            # seen before tells (check()).
            guess = self._predicted[1]
            if guess is not None and len(self.observed) >= 2 and guess[0][cut] > 0:
                if cost < float(guess[0][cut]) / SURPRISE:
                    self.surprise = (cut, self.t)
            self.anchor[cut] = cost / self.level
            self.created[cut] = self.t
            self._known = None
            self._recent[cut].append(cost / self.level)
            return 1.0
        ratio = cost / (anchor * self.level)
        if self._undo is not None:
            if self._verdict(cut, cost, ratio, 1 if trust else OUTLIERS):
                return ratio  # held: it speaks for the level before the last jump
            ratio = cost / (anchor * self.level)  # (the jump may have been taken back)
        if trust and not 1 / BAND <= ratio <= BAND:
            # The level describes a board or cloud that may be gone (a load step that ended
            # while frames ran edge-only): this cost replaces it, as a probe does the link's.
            self._jump(ratio, since=self.t)
            return ratio
        recent = self._recent[cut]
        # A cost within the range this cut has shown lately is noise it is known to have (a
        # throttled board runs short prefixes either at full speed or throttled), not a change.
        # A cut seen only a few times has a rough anchor: a surprise there is its own error, so
        # only cuts with a history can tell that the whole board or cloud changed.
        established = len(recent) >= HISTORY
        usual = established and min(recent) <= cost / self.level <= max(recent)
        # ... unless it is far outside all of the few costs the cut has shown: a load step caught
        # by a cut seen a few times (every cut is, for HISTORY frames after a change) must not
        # vanish into that cut's anchor while the level, which prices every other cut, stays.
        # It takes HISTORY of them in a row, as a run as long as a range would have told.
        far = len(recent) >= FAR_AFTER and not min(recent) / FAR <= cost / self.level <= max(recent) * FAR
        rough = not established and not far
        outlier = not (usual or rough or 1 / BAND <= ratio <= BAND)
        if not outlier:
            self._end_run()
            recent.append(cost / self.level)
            self._note(cut)
        else:
            # A change moves every frame the same way; bimodal noise flips sides and must not
            # add up. The run's costs join the usual range only if it ends without a change.
            if self.outliers and (ratio > 1) != (self._run[-1][1] > 1):
                self._end_run()
            if self.outliers == 0:
                self.suspect_since = self.t
            self.outliers += 1
            self._run.append((cut, ratio, cost / self.level))
        del recent[:-HISTORY]
        # Slower is acted on sooner than faster: staying on a cut that got slower costs every
        # frame, while a faster board or cloud is only a missed gain.
        # (A run's costs are pending, so its cuts' ranges stay as they were when it began.)
        young = any(len(self._recent[c]) < HISTORY for c, _, _ in self._run)
        needed = HISTORY if young else (OUTLIERS if ratio > 1 else OUTLIERS + 1)
        if self.outliers >= needed:
            # Several outliers in a row on one side: the whole board or cloud changed speed.
            # Jump by the run's typical ratio, and fix the cuts first seen since it began: they
            # were normalised by the old level.
            factor = math.exp(median(np.log([r for _, r, _ in self._run]).tolist()))
            self.anchor[self.created >= self.suspect_since] /= factor
            self._jump(factor, since=self.suspect_since)
            outlier = False
        elif 1 / BAND <= ratio <= BAND:
            # Slow drift that all cuts share (a board warming up, a cloud filling up); a
            # surprise the cut is known for leaves the shared level alone.
            self.level *= ratio ** self.alpha
        if outlier:
            # Pending: a change moves the level, noise joins the usual range; neither is the
            # cut's own cost (absorbing it would count a change twice once the level jumps).
            return ratio
        # The cut's own anchor absorbs its noise (a running mean, then an EWMA), so the shared
        # level moves only for what all cuts share. The mean is arithmetic: latency is what is
        # minimised, and a geometric mean would let rare fast frames hide the usual slow ones.
        w = max(1.0 / int(self.count[cut]), self.refine)
        anchor = float(self.anchor[cut])  # (a jump or the end of a run may have moved it)
        self.anchor[cut] = anchor + w * (cost / self.level - anchor)
        return ratio

    def check(self, cut, cost):
        """Take the cost of ``cut``, seen before the last surprise (``surprise``), as its check:
        under 1/BAND of its price, the whole board or cloud got faster, and the level falls by
        it, the surprising cut's anchor with it; otherwise that cut is just cheap. Returns
        whether the level fell."""
        _, t = self.surprise
        self.surprise = None
        if not 0 <= self.created[cut] < t:
            return False
        ratio = cost / (float(self.anchor[cut]) * self.level)
        if ratio >= 1 / BAND:
            return False
        self.version += 1
        self.anchor[self.created >= t] /= ratio
        self._jump(ratio, since=t)
        return True

    def _jump(self, factor, since):
        """The whole board or cloud changed speed by ``factor``: move the level, drop any pending
        run and the cuts' usual ranges (seen at the old level). Cuts first seen from ``since`` on
        were priced during the change; until JUDGE costs of the others have come, they may
        still take the jump back (_verdict)."""
        self._undo = {"t": self.t, "since": since, "level": self.level, "factor": factor, "streak": 0,
                      "recent": self._recent, "low": self._low.copy(), "jumped": self.jumped}
        self.jumped = (self.t, self.level)
        self.level *= factor
        self.changes += 1
        self.outliers, self._run = 0, []
        self._recent = [[] for _ in range(self.n)]
        self._low[:] = np.inf

    def _verdict(self, cut, cost, ratio, needed):
        """Whether a cost after a level jump speaks for the level before it: closer to what the
        cut cost then than to its price now, and within BAND of it. ``needed`` such costs in a
        row (of cuts priced before the change) take the jump back: it was a stall of two or three
        frames, not a change (a cloud-only frame at 40 and one at 50 ms among 28s lifted the
        cloud 1.6x; the costs after were back at 28, but cut 3, which ran next, absorbed them
        into its own anchor, and cloud-only stayed priced 1.6x for the 41 frames left). OUTLIERS
        are needed, or one trusted cost (the first news after a stretch unseen). Those before the
        last are held out of the cut's anchor; a cost that does not speak for the level before
        ends the streak. Returns whether held."""
        u = self._undo
        if self.t - u["t"] > JUDGE:
            self._undo = None
            return False
        if not 0 <= self.created[cut] < u["since"]:
            return False  # priced during or after the change: it cannot tell
        before = cost / (self.anchor[cut] * u["level"])
        if not (1 / BAND <= before <= BAND and abs(math.log(before)) < abs(math.log(ratio))):
            u["streak"] = 0
            return False
        u["streak"] += 1
        if u["streak"] < needed:
            return True
        self._undo = None
        self.undone += 1
        self.level = u["level"]
        # Cuts first seen since the change began were priced by the jumped level: their anchors
        # keep what they were seen to cost.
        self.anchor[self.created >= u["since"]] *= u["factor"]
        self._recent, self._low, self.jumped = u["recent"], u["low"], u["jumped"]
        self.outliers, self._run = 0, []
        return False

    def forget(self, cut):
        """Drop what was seen of ``cut``: its next cost anchors it afresh."""
        self.version += 1
        self.anchor[cut], self.count[cut], self.created[cut] = np.nan, 0, -1
        self._recent[cut] = []
        self._low[cut] = np.inf
        self._run = [r for r in self._run if r[0] != cut]
        self.outliers = len(self._run)
        self._known = None

    def cap(self, cut, cost):
        """``cut`` costs at most ``cost`` (an upper bound seen beside it): its anchor comes down to
        it if it was above."""
        anchor = cost / self.level
        if anchor < self.anchor[cut]:
            self.anchor[cut] = anchor
            self.version += 1

    def _end_run(self):
        """A run of outliers ended without a change: its costs are part of the usual range, and
        of the cuts' own costs, each held within BAND of the range the cut has shown. A host
        stall of 3x on one frame, taken whole into a running mean at weight 0.2, put edge-only
        45% dearer; the policy left it for a cut that looked cheaper, and as edge-only then ran
        no more, nothing brought its price back (51 frames at 1.3x its time)."""
        for cut, _, normalised in self._run:
            recent = self._recent[cut]
            if len(recent) >= FAR_AFTER:
                normalised = min(max(normalised, min(recent) / BAND), max(recent) * BAND)
            recent.append(normalised)
            del recent[:-HISTORY]
            self._note(cut)
            self.anchor[cut] += max(1.0 / self.count[cut], self.refine) * (normalised - self.anchor[cut])
        self.outliers, self._run = 0, []

    def _note(self, cut):
        """Keep ``_low`` for ``cut`` after a cost joined its range."""
        recent = self._recent[cut]
        low = min(recent)
        self._low[cut] = low if len(recent) < HISTORY and max(recent) > FAR * low else np.inf

    def usual(self, cut):
        """(lowest, highest) cost ``cut`` has shown in its last HISTORY costs, at the level now;
        None before it has that many. A cost in it is noise the cut is known to have."""
        recent = self._recent[cut]
        if len(recent) < HISTORY:
            return None
        return min(recent) * self.level, max(recent) * self.level

    def lowest_seen(self):
        """Per cut seen fewer than HISTORY times whose costs spread over more than FAR, the
        lowest it has shown at the level now; inf for the others. A young cut's mean can hold one
        stall at a large weight (edge-only seen at 58 then 196 ms was priced 127 on the testbed),
        and a cut priced too high is not run again, so nothing corrects it: its optimistic
        estimate is what it has shown it can cost."""
        return self._low * self.level

    def predict(self, prior_per_x):
        """(estimate, lower bound) for every cut; ``prior_per_x`` prices MACs beyond all anchors.

        The curve runs once per frame on the edge, so its MAC-space shape is built once per
        change (``_pieces``) and level and prior are applied to it here.
        """
        base, dx, own_rate, small, lower = self._pieces()
        rate = prior_per_x if own_rate is None else own_rate
        if small:
            rate = min(rate, prior_per_x)
        key = (self.version, rate)  # the same answer (object) while neither changes
        if self._predicted[0] != key:
            est = base if dx is None else base + dx * rate
            self._predicted = (key, (est * self.level, np.minimum(lower, est) * self.level))
        return self._predicted[1]

    def _pieces(self):
        """At level 1: the estimate without the part beyond the largest anchor (``base``), each
        cut's MACs beyond it (``dx``, priced per MAC by predict; None if no cut has any), that
        anchor's own cost per MAC (None if it has none), whether it is under half the largest
        workload, and the monotone lower bound."""
        if self._shape[0] == self.version:
            return self._shape[1]
        lay = self._layout()
        if lay is None:
            pieces = (np.zeros(self.n), self.x, None, False, np.zeros(self.n))
        else:
            known, stand_in, xs, below, seen, dx, small = lay
            # [0, the known cuts' costs in MAC order, made monotone]: the abscissa ``xs`` starts
            # at no MACs (cost 0) when the smallest known cut has some.
            vals = np.zeros(len(known) + 1)
            vals[1:] = self.anchor[known]
            if stand_in is not None:
                vals[stand_in] = 0.0  # zero_at, not observed: no MACs, no cost
            np.maximum.accumulate(vals, out=vals)
            top_x, top_v = xs[-1], vals[-1]
            # Monotone bound: a cut costs at least what its nearest observed smaller neighbour costs.
            lower = vals[below]
            # Interpolated in MAC space; flat (the top anchor's cost) beyond it.
            base = np.interp(self._xs, xs, vals if len(xs) > len(known) else vals[1:])
            # An observed cut costs what it was seen to cost: real prefixes and suffixes are not
            # monotone in MACs (an elementwise layer, a pad the converter leaves unfused), and
            # a neighbour's cost must not hide a cut that is cheaper than its MACs suggest.
            np.copyto(base, self.anchor, where=seen)
            own = top_v / top_x if top_x > 0 and top_v > 0 else None
            pieces = (base, dx, own, small, lower)
        self._shape = (self.version, pieces)
        return pieces

    def _layout(self):
        """What the curve's shape takes from which cuts are known, not from their costs (so it is
        built once per newly observed or forgotten cut, not per cost): the known cuts in MAC
        order, where the zero_at stand-in sits among _pieces' costs (None if there is none), the
        interpolation abscissa, each cut's nearest known smaller neighbour, the observed mask,
        each cut's MACs beyond the largest known (None if none has any) and whether that one is
        under half the largest workload. None while nothing is known."""
        if self._known is not None:
            return self._known
        known = list(self.observed)
        stand_in = None
        if self.zero_at is not None and np.isnan(self.anchor[self.zero_at]):
            known.append(self.zero_at)  # a stand-in at cost 0 (_pieces)
            stand_in = self.zero_at
        if not known:
            self._known = None
            return None
        known = np.array(sorted(known, key=lambda c: self._xs[c]), dtype=np.int64)
        if stand_in is not None:
            stand_in = 1 + int(np.flatnonzero(known == stand_in)[0])
        xs = self._xs[known]
        below = np.searchsorted(xs, self._xs, side="right")  # index into [0, known costs...]
        top_x = xs[-1]
        if xs[0] > 0:
            # Below the smallest anchor: its cost per MAC, down to nothing at no MACs.
            xs = np.concatenate(([0.0], xs))
        # A small workload's cost is mostly fixed overhead: its per-MAC figure would price far
        # bigger ones many times too high (predict then prices them no dearer than the prior).
        small = bool(top_x < 0.5 * self.x.max())
        dx = np.maximum(self._xs - top_x, 0.0)
        self._known = (known, stand_in, xs, below, ~np.isnan(self.anchor), dx if dx.any() else None, small)
        return self._known

    def slack(self):
        """How many times under the monotone envelope a cut seen has come: how far a lower bound
        from a smaller cut's cost may overstate an unseen cut's (1.0 while costs are monotone)."""
        if self._slack[0] != self.version:
            lay = self._layout()
            slack = 1.0
            if lay is not None:
                # The known cuts' costs in MAC order (a zero_at stand-in at 0), and their envelope.
                raw = np.nan_to_num(self.anchor[lay[0]])
                env = np.maximum.accumulate(raw)
                costed = raw > 0  # the stand-in at 0 divides nothing
                if costed.any():
                    slack = float((env[costed] / raw[costed]).max())
            self._slack = (self.version, slack)
        return self._slack[1]

    def rate(self):
        """Observed cost per MAC at the level now (None before any non-trivial anchor)."""
        if self._rate[0] != self.version:
            lay = self._layout()
            rate = None
            for c in (lay[0][::-1] if lay is not None else ()):  # the largest observed workload with a cost
                if self.x[c] > 0 and self.anchor[c] > 0:
                    rate = float(self.anchor[c] * self.level / self.x[c])
                    break
            self._rate = (self.version, rate)
        return self._rate[1]

    def doubt(self):
        """Per cut, how much cheaper it may be than estimated because it has not been seen since
        the level last went up: the jump was read off other cuts, or off a run of this one's
        that a board's noise can fake (two edge-only frames of 95 ms among 70s on a dilated Pi
        3B, and partnner left edge-only for a 96 ms cut for good). 1.0 for cuts seen since (for
        a cut priced before the jump, more than GRACE costs after it); None when no cut is in
        doubt, as after a fall."""
        t, before = self.jumped
        if before >= self.level:
            return None
        # A cut priced before the jump and seen only up to GRACE costs after it may have been
        # seen in the same stall (the third frame of a three-frame stall of edge-only agrees
        # with the jump it made). (A cut seen by the jump was created by then.)
        doubted = (self.seen >= 0) & (self.seen <= t + GRACE) & (self.created <= t)
        return np.where(doubted, self.level / before, 1.0)

    def unobserved(self):
        """1.0 for each cut not observed yet, else 0.0 (per set of known cuts)."""
        lay = self._layout()
        if self._unobserved[0] is not lay or lay is None:
            self._unobserved = (lay, np.isnan(self.anchor).astype(np.float64))
        return self._unobserved[1]
