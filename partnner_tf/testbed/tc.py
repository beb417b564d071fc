"""Kernel link shaping as root: a network namespace and a veth pair shaped by ``tc tbf``, changed live.

The edge runs inside the namespace (``exec_prefix``) and reaches the host side of the veth
(``host_addr``); uplink is the namespace end's egress, downlink the host end's. The kernel here has
no netem, so the propagation delay stays in user space: :meth:`TcLink.forwarder` relays the host
side to the cloud daemon on loopback with the delay and no rate limit.
"""

import logging
import os
import shutil
import subprocess
import threading
import time

from partnner_tf.errors import EmulationError
from partnner_tf.testbed.link import OpportunityClock, parse_schedule

log = logging.getLogger(__name__)

#: tbf counts Ethernet frames: a full TCP segment is 1514 bytes for 1448 of payload, and the
#: relay (like traces.py) gives 1500 bytes of payload per opportunity, so tc's rate is scaled
#: by this to deliver the same payload rate.
WIRE_PER_PAYLOAD = 1514.0 / 1448.0
#: tbf cannot be told 0: an outage becomes this trickle (bits/s).
MIN_RATE_BPS = 8_000
#: Queue (bytes) tbf holds before it drops: large, like Mahimahi's unbounded queue.
LIMIT_BYTES = 4 << 20


def _run(cmd, what):
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise EmulationError(f"{what} failed: `{' '.join(cmd)}`: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def check_available():
    """Raise EmulationError saying why the tc mode cannot run here."""
    if os.geteuid() != 0:
        raise EmulationError("the tc link mode needs root (network namespaces and tc); "
                             "use the relay mode, which needs none")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise EmulationError(f"the tc link mode needs `{tool}` (iproute2), which is not on PATH")


class TcLink:
    """A namespace + veth pair shaped by tbf that follows ``up``/``down`` schedules."""

    def __init__(self, up, down=None, *, offset_s=0.0, update_s=0.1):
        check_available()
        self.up = parse_schedule(up)
        self.down = parse_schedule(down if down is not None else up)
        self.offset_s, self.update_s = offset_s, update_s
        n = os.getpid() % 200 + 20
        tag = f"{os.getpid() % 100000}"
        self.ns = f"ptb{tag}"
        self.host_if, self.edge_if = f"ptbh{tag}", f"ptbe{tag}"
        self.host_addr, self.edge_addr = f"10.231.{n}.1", f"10.231.{n}.2"
        self._stop = threading.Event()
        self._thread = None
        self._made = []
        try:
            self._setup()
        except EmulationError:
            self.close()
            raise

    def _setup(self):
        _run(["ip", "netns", "add", self.ns], "creating a network namespace")
        self._made.append("ns")
        _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.edge_if], "creating a veth pair")
        self._made.append("veth")
        _run(["ip", "link", "set", self.edge_if, "netns", self.ns], "moving the veth end")
        _run(["ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if], "addressing the host end")
        _run(["ip", "link", "set", self.host_if, "up"], "bringing the host end up")
        ns = ["ip", "netns", "exec", self.ns]
        _run(ns + ["ip", "addr", "add", f"{self.edge_addr}/30", "dev", self.edge_if], "addressing the edge end")
        _run(ns + ["ip", "link", "set", self.edge_if, "up"], "bringing the edge end up")
        _run(ns + ["ip", "link", "set", "lo", "up"], "bringing the namespace loopback up")
        # Segmentation offloads would let tbf see 64 KB super-packets; turn them off on both ends.
        for pre, dev in (([], self.host_if), (ns, self.edge_if)):
            if shutil.which("ethtool"):
                subprocess.run(pre + ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"],
                               capture_output=True)
        self._clocks = (OpportunityClock(self.up, self.offset_s), OpportunityClock(self.down, self.offset_s))
        self._apply(0.0, "replace")

    @property
    def exec_prefix(self):
        """Prefix a command with this to run it inside the edge namespace."""
        return ["ip", "netns", "exec", self.ns]

    def _rate(self, clock, t):
        n = clock.count(t + self.update_s) - clock.count(t)
        bps = n * clock.packet_bytes * 8.0 / self.update_s * WIRE_PER_PAYLOAD
        return max(int(bps), MIN_RATE_BPS)

    def _apply(self, t, verb="change"):
        for clock, pre, dev in ((self._clocks[0], self.exec_prefix, self.edge_if),
                                (self._clocks[1], [], self.host_if)):
            rate = self._rate(clock, t)
            # A burst of a few ms of the rate (at least two frames) keeps tbf smooth at any rate.
            burst = max(int(rate / 8 * 0.004), 3100)
            _run(pre + ["tc", "qdisc", verb, "dev", dev, "root", "tbf", "rate", f"{rate}bit",
                        "burst", str(burst), "limit", str(LIMIT_BYTES)], "setting tbf")

    def start(self):
        """Follow the schedules from now on (link time 0 is now)."""
        t0 = time.monotonic()

        def follow():
            k = 0
            while not self._stop.is_set():
                try:
                    self._apply(k * self.update_s)
                except EmulationError as exc:
                    log.warning("tc link: %s", exc)
                k += 1
                self._stop.wait(max(t0 + k * self.update_s - time.monotonic(), 0))

        self._thread = threading.Thread(target=follow, daemon=True)
        self._thread.start()
        return self

    def forwarder(self, upstream_endpoint, delay_s=0.0):
        """A relay on the host end to the daemon on loopback: delay only, no rate limit."""
        from partnner_tf.testbed.link import LinkProcess

        # The relay listens on loopback only; bind it on the veth address instead.
        return LinkProcess(upstream_endpoint, "const:1e10", "const:1e10", delay_s=delay_s,
                           listen=self.host_addr)

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if "veth" in self._made:
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        if "ns" in self._made:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        self._made = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
