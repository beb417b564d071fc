"""Uplink capacity over time: Mahimahi packet traces and constant/step schedules.

Every schedule answers the same questions: ``rate_bps(t)``, ``transfer_time(t_start, nbytes)``
(exact: the time until ``nbytes`` have left, waiting through zero-capacity outages),
``mean_bps`` and ``duration_s``. ``transfer_time`` accepts arrays of sizes (or start times), so a
simulator can price every cut of a frame in one call.
"""

import math
import os
from pathlib import Path

import numpy as np

from partnner_tf.errors import PartnnerError

def traces_dir():
    """Where the real traces are: $PARTNNER_TRACES, else ../shared/traces beside the checkout."""
    env = os.environ.get("PARTNNER_TRACES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "traces"


#: Bytes one Mahimahi packet opportunity carries.
PACKET_BYTES = 1500


class Trace:
    """A Mahimahi uplink trace: one 1500-byte opportunity per line, ms timestamps, repeating.

    ``scale`` multiplies the capacity (each opportunity carries ``1500 * scale`` bytes), which
    keeps the trace's timing of bursts and outages while moving its mean.
    """

    def __init__(self, timestamps_ms, scale=1.0, name="trace"):
        ts = np.sort(np.asarray(timestamps_ms, dtype=np.int64))
        if ts.size == 0:
            raise PartnnerError(f"trace {name!r}: expected at least one packet opportunity, received none")
        if ts[0] < 0:
            raise PartnnerError(f"trace {name!r}: timestamps must be >= 0 ms, received {int(ts[0])}")
        if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
            raise PartnnerError(f"trace {name!r}: scale must be a finite number > 0, received {scale!r}")
        self.name = name
        self.scale = float(scale)
        self._ts = ts
        # Mahimahi repeats the trace with a period equal to its last timestamp (at least 1 ms).
        self.period_ms = max(int(ts[-1]), 1)
        self._n = int(ts.size)
        self.packet_bytes = PACKET_BYTES * self.scale

    @property
    def duration_s(self):
        return self.period_ms / 1000.0

    @property
    def mean_bps(self):
        return self._n * self.packet_bytes * 8.0 / self.duration_s

    def _index_at(self, t_ms):
        """Global index of the first opportunity at or after ``t_ms`` (counted over repeats)."""
        t_ms = np.maximum(np.asarray(t_ms, dtype=np.float64), 0.0)
        cycle = np.floor(t_ms / self.period_ms).astype(np.int64)
        offset = t_ms - cycle * self.period_ms
        return cycle * self._n + np.searchsorted(self._ts, offset, side="left")

    def _time_of(self, index):
        cycle, i = np.divmod(index, self._n)
        return (cycle * self.period_ms + self._ts[i]) / 1000.0

    def transfer_time(self, t_start, nbytes):
        """Seconds from ``t_start`` until ``nbytes`` have been sent (0 for 0 bytes)."""
        t_start = np.asarray(t_start, dtype=np.float64)
        nbytes = np.asarray(nbytes, dtype=np.float64)
        packets = np.ceil(nbytes / self.packet_bytes).astype(np.int64)
        first = self._index_at(t_start * 1000.0)
        done = self._time_of(first + np.maximum(packets, 1) - 1)
        out = np.where(packets > 0, np.maximum(done - t_start, 0.0), 0.0)
        return float(out) if out.ndim == 0 else out

    def rate_bps(self, t, window_s=1.0):
        """Capacity averaged over ``[t, t + window_s)``, bits per second."""
        a = self._index_at(np.asarray(t, dtype=np.float64) * 1000.0)
        b = self._index_at((np.asarray(t, dtype=np.float64) + window_s) * 1000.0)
        out = (b - a) * self.packet_bytes * 8.0 / window_s
        return float(out) if np.ndim(out) == 0 else out

    def __repr__(self):
        return f"Trace({self.name!r}, scale={self.scale:g}, mean={self.mean_bps / 1e6:.2f} Mbit/s)"


class Steps:
    """A piecewise-constant rate: ``[(t_s, bps), ...]``; the last rate holds forever.

    A rate of 0 is an outage: a transfer started in it waits for the next non-zero step.
    """

    def __init__(self, schedule, name="steps"):
        pts = sorted((float(t), float(r)) for t, r in schedule)
        if not pts:
            raise PartnnerError(f"{name}: expected at least one (t_s, bps) step, received none")
        bad = [(t, r) for t, r in pts if not (math.isfinite(t) and math.isfinite(r) and t >= 0 and r >= 0)]
        if bad:
            raise PartnnerError(f"{name}: steps must be (t_s >= 0, bps >= 0) finite pairs, received {bad[0]}")
        if pts[0][0] > 0:
            pts.insert(0, (0.0, pts[0][1]))
        self.name = name
        self._t = np.array([t for t, _ in pts])
        self._r = np.array([r for _, r in pts])
        seg = np.diff(self._t) * self._r[:-1]
        self._c = np.concatenate([[0.0], np.cumsum(seg)])  # bits sent by each breakpoint

    @property
    def duration_s(self):
        """Time of the last step (0 for a constant rate): the schedule is constant after it."""
        return float(self._t[-1])

    @property
    def mean_bps(self):
        """Mean over [0, last step], or the last rate when the schedule has one step."""
        if self._t[-1] <= 0:
            return float(self._r[-1])
        return float(self._c[-1] / self._t[-1])

    def _bits_at(self, t):
        j = np.searchsorted(self._t, t, side="right") - 1
        return self._c[j] + (t - self._t[j]) * self._r[j]

    def rate_bps(self, t, window_s=None):
        """Rate in force at ``t`` (or averaged over ``[t, t + window_s)``)."""
        t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
        if window_s:
            out = (self._bits_at(t + window_s) - self._bits_at(t)) / window_s
        else:
            out = self._r[np.searchsorted(self._t, t, side="right") - 1]
        return float(out) if np.ndim(out) == 0 else out

    def transfer_time(self, t_start, nbytes):
        """Seconds from ``t_start`` until ``nbytes`` have been sent (inf if never)."""
        t_start = np.maximum(np.asarray(t_start, dtype=np.float64), 0.0)
        bits = np.asarray(nbytes, dtype=np.float64) * 8.0
        target = self._bits_at(t_start) + bits
        j = np.clip(np.searchsorted(self._c, target, side="left") - 1, 0, len(self._t) - 1)
        rate = self._r[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_end = np.where(rate > 0, self._t[j] + (target - self._c[j]) / rate, np.inf)
        out = np.where(bits > 0, np.maximum(t_end - t_start, 0.0), 0.0)
        return float(out) if out.ndim == 0 else out

    def __repr__(self):
        return f"Steps({self.name!r}, {len(self._t)} steps, mean={self.mean_bps / 1e6:.2f} Mbit/s)"


def constant(bps):
    """A link of ``bps`` bits per second forever."""
    return Steps([(0.0, bps)], name=f"constant {bps / 1e6:g} Mbit/s")


def steps(schedule):
    """A rate that changes at given times: ``steps([(0, 10e6), (30, 1e6), (60, 0), (65, 5e6)])``."""
    return Steps(schedule)


def load_trace(path, scale=1.0):
    """Read a Mahimahi uplink/downlink trace file.

    Raises:
        PartnnerError: the file is missing, empty or holds something other than ms timestamps.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise PartnnerError(f"cannot read trace {path}: {exc}") from exc
    try:
        ts = np.array(text.split(), dtype=np.int64)
    except ValueError:
        bad = next(w for w in text.split() if not w.lstrip("-").isdigit())
        raise PartnnerError(
            f"trace {path}: expected one integer ms timestamp per line (Mahimahi), received {bad!r}"
        ) from None
    return Trace(ts, scale=scale, name=path.name)
