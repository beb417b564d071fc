"""Request counts, errors and latencies the daemon reports through the stats request."""

import threading
import time
from collections import Counter, deque

import numpy as np

#: Latency samples kept for percentiles (a ring: memory stays bounded).
WINDOW = 2048


class Stats:
    """Thread-safe counters; workers record completions, the front end requests and errors."""

    def __init__(self):
        self._lock = threading.Lock()
        self.t0 = time.time()
        self.requests = Counter()
        self.errors = Counter()
        self.per_cut = Counter()
        self.dropped = 0
        self._queue = deque(maxlen=WINDOW)
        self._compute = deque(maxlen=WINDOW)

    def request(self, kind):
        with self._lock:
            self.requests[kind] += 1

    def error(self, code):
        with self._lock:
            self.errors[code] += 1

    def done(self, model, cut, queue_s, compute_s):
        with self._lock:
            self.per_cut[f"{model}:{cut}"] += 1
            self._queue.append(queue_s)
            self._compute.append(compute_s)

    def totals(self):
        with self._lock:
            return {
                "requests": sum(self.requests.values()),
                "errors": sum(self.errors.values()),
                "dropped": self.dropped,
            }

    def snapshot(self):
        with self._lock:
            q, c = np.array(self._queue), np.array(self._compute)
            return {
                "uptime_s": round(time.time() - self.t0, 3),
                "requests": dict(self.requests),
                "errors": dict(self.errors),
                "replies_dropped": self.dropped,
                "completed": dict(self.per_cut),
                "latency": {
                    "window": int(len(c)),
                    "queue_s": _pct(q),
                    "compute_s": _pct(c),
                    "total_s": _pct(q + c) if len(c) else _pct(c),
                },
            }


def _pct(a):
    if not len(a):
        return {}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max())}
