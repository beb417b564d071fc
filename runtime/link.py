"""The edge's view of its cloud link: up or down, and a background ping probe with backoff."""

import logging
import threading

from partnner_tf.constants import PROBE_BACKOFF_S, PROBE_TIMEOUT_S

log = logging.getLogger(__name__)


class Link:
    """Owns the cloud client's up/down state.

    While the link is up only the frame thread touches the client; when a request fails the frame
    thread calls :meth:`down` and stops using the client, and a probe thread pings it with
    exponential backoff until the cloud answers, then marks the link up again. The client is thus
    never used by two threads at once (ZeroMQ sockets are not thread-safe).

    Args:
        client: an object with ``ping(timeout_s)`` (a :class:`partnner_tf.client.CloudClient`).
        probe_timeout_s: deadline of one ping.
        backoff_s: (first, largest) wait between probes, seconds.
    """

    def __init__(self, client, probe_timeout_s=PROBE_TIMEOUT_S, backoff_s=PROBE_BACKOFF_S):
        self.client = client
        self.probe_timeout_s = float(probe_timeout_s)
        self.backoff_s = (float(backoff_s[0]), float(backoff_s[1]))
        self._up = threading.Event()
        self._up.set()
        self._stop = threading.Event()
        self._thread = None
        self.downs = 0
        self.probes = 0
        self.last_error = None

    @property
    def is_up(self):
        return self._up.is_set()

    def down(self, error):
        """Stop using the cloud after ``error`` and start probing it in the background."""
        if not self._up.is_set():
            return
        self.downs += 1
        self.last_error = error
        log.warning("cloud link down (%s); running frames on the edge, probing with backoff", error)
        self._up.clear()
        self._thread = threading.Thread(target=self._probe, name="cloud-probe", daemon=True)
        self._thread.start()

    def warm(self):
        """Connect now, not on the first frame: a first request pays the TCP and ZeroMQ
        handshakes (several round trips), which would read as a slow link. Best effort: a cloud
        that does not answer is found out by the first frame, as ever."""
        try:
            rtt = self.client.ping(timeout_s=self.probe_timeout_s)
        except Exception as exc:  # not fatal here
            log.info("cloud did not answer the start-up ping (%s)", exc)
            return None
        log.info("cloud answered the start-up ping in %.1f ms", rtt * 1e3)
        return rtt

    def wait_up(self, timeout_s):
        """Block until the link is up again (for tests and tools); True when it is."""
        return self._up.wait(timeout_s)

    def _probe(self):
        delay = self.backoff_s[0]
        while not self._stop.wait(delay):
            self.probes += 1
            try:
                rtt = self.client.ping(timeout_s=self.probe_timeout_s)
            except Exception as exc:  # any failure means: not yet; the reason is only logged
                log.debug("probe failed: %s", exc)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            log.warning("cloud link up again (ping %.1f ms)", rtt * 1e3)
            self._up.set()
            return

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.probe_timeout_s + 5)
