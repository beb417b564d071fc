"""One edge process over its own emulated link, run whole or in turns with others.

This host's vCPUs change speed by up to ~40% for seconds at a time (another tenant: the 96x96
MobileNetV2 edge-only model takes 1.6 ms or 2.3 ms of CPU in stretches of 3-6 s), and a board
emulated on it inherits that. Two policies run one after the other are then measured on two
different boards: the same edge-only cell measured 12.6 ms a frame in one minute and 17.2 ms in
the next, more than the 5% the bench's goals are about. :func:`run_in_turns` runs the policies
of a cell side by side, a few frames each in turn, so that every policy sees the same stretches
of the host; each link's time stops while its edge waits for its turn, so each policy still
sees the trace as it would alone (and ``partnner sim`` can replay the same world).
"""

import json
import logging
import os
import random
import subprocess
import time
from pathlib import Path

from partnner_tf.client import HEARTBEAT_TIMEOUT_MS
from partnner_tf.errors import EmulationError, PartnnerError
from partnner_tf.testbed import procs
from partnner_tf.testbed.board import CpuCap, board_budget_mb, dilation, emulation_for
from partnner_tf.testbed.link import LinkProcess
from partnner_tf.testbed.load import LoadProcess

log = logging.getLogger(__name__)

#: How an edge process is made as slow as its board. "dilate": every prefix run, on one thread,
#: is stretched to the board's speed (board.dilation; smooth, like a slower CPU; no root
#: needed). "cgroup": a CFS quota (root). The kernel's 1 ms minimum quota forces periods of
#: 15 ms and more for the slow boards, and within a period a short prefix runs at full host speed
#: while a long one is throttled: MobileNetV2's block_6 prefix measured 2 ms or 107 ms on one
#: "rpi3b", a bimodal board no real Pi is.
#: "dilate-all": the rest of each frame's work in the edge process (the runtime's and the
#: selector's Python) is stretched as well, as a board would run it; see docs/testbed.md.
BOARD_MODES = ("dilate", "dilate-all", "cgroup")
#: A turn: this many frames, or this many seconds, whichever ends first.
TURN_FRAMES = 4
TURN_S = 0.5


class EdgeSession:
    """An edge process, slowed like its board, over one emulated link, ready to run frames.

    ``link_mode`` "relay" shapes in the user-space relay; "tc" runs the edge in a namespace whose
    veth is shaped by tbf (root), with the delay in a rate-unlimited relay on the host side.
    """

    def __init__(self, out, policy, *, frames, log_path, emulation, daemon_endpoint, link, profile=None,
                 load=None, stats_path=None, duration_s=0.0, link_mode="relay", board_mode="dilate",
                 heartbeat_timeout_s=None):
        emu = emulation_for(emulation)
        if board_mode not in BOARD_MODES:
            raise PartnnerError(f"board mode: expected one of {BOARD_MODES}, received {board_mode!r}")
        if link_mode not in ("relay", "tc"):
            raise PartnnerError(f"link mode: expected relay or tc, received {link_mode!r}")
        self.policy, self.frames, self.log_path, self.duration_s = policy, frames, Path(log_path), duration_s
        self.load, self.daemon_endpoint, self.out = load, daemon_endpoint, out
        # Only the cgroup mode needs a cgroup (and root); dilation happens inside the edge process.
        self.cap = CpuCap(emu["cpus"], emu["quota"]) if board_mode == "cgroup" else None
        if self.cap is not None:
            threads = self.cap.cpus
        elif board_mode in ("dilate", "dilate-all"):
            threads = dilation(emu)[0]
        else:
            threads = min(int(emu["cpus"]), os.cpu_count() or 1)
        self.relay = self.loadp = self.proc = self.tclink = None
        self._err = open(str(log_path) + ".stderr", "wb")
        self.finished = False
        try:
            prefix = []
            if link_mode == "tc":
                from partnner_tf.testbed.tc import TcLink

                self.tclink = TcLink(link.up, link.down, offset_s=link.offset_s)
                self.relay = self.tclink.forwarder(daemon_endpoint, delay_s=link.delay_s)
                prefix = self.tclink.exec_prefix
            else:
                self.relay = LinkProcess(daemon_endpoint, link.up, link.down, delay_s=link.delay_s,
                                         offset_s=link.offset_s, stats=stats_path)
            cmd = prefix + edge_command(out, policy, self.relay.endpoint, frames=frames, log_path=log_path,
                                        threads=threads, emulation=emulation, profile=profile,
                                        board_mode=board_mode, duration_s=duration_s,
                                        heartbeat_timeout_s=heartbeat_timeout_s)
            self.proc = procs.spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err)
            info = procs.read_ready_line(self.proc, f"edge process ({policy})", timeout_s=180)
            # Capped only now: set-up is not what a board is measured on (and `ip netns exec`
            # hides /sys/fs/cgroup from the child, so the parent moves it).
            if self.cap is not None:
                self.cap.join(info.get("pid", self.proc.pid))
        except BaseException:
            self.close()
            raise

    def start_clocks(self):
        """Link (and load) time 0 is now."""
        self.relay.restart_clock()
        if self.tclink is not None:
            self.tclink.start()
        if self.load:
            self.loadp = LoadProcess(self.daemon_endpoint, self.out, self.load)

    def run(self, on_frame=None):
        """Run every frame now (the link's and the load's clocks start with the first)."""
        self.start_clocks()
        self._send("go")
        timeout = 60 + (self.duration_s * 1.5 if self.duration_s else 10.0 * self.frames)
        try:
            _wait(self.proc, timeout, self.log_path, on_frame)
        except subprocess.TimeoutExpired:
            raise EmulationError(f"edge process ({self.policy}) did not finish {self.frames} frames in time") from None
        self._check_exit()
        self.finished = True

    def turn(self, frames=TURN_FRAMES, seconds=TURN_S):
        """Run up to ``frames`` frames or ``seconds`` with the link's time running; False once finished."""
        self.relay.resume()
        try:
            self._send(f"step {frames} {seconds}")
            # A turn ends within ``seconds`` plus one frame; a frame can wait a few seconds on a slow link.
            reply = procs.read_ready_line(self.proc, f"edge process ({self.policy})", timeout_s=seconds + 120)
        finally:
            self.relay.pause()
        if "error" in reply:
            raise EmulationError(f"edge process ({self.policy}): {reply['error']}")
        if reply.get("done"):
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self._check_exit()
            self.finished = True
        return not self.finished

    def frames_run(self):
        return [json.loads(x) for x in self.log_path.read_text().splitlines() if x.strip()]

    def _send(self, line):
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._check_exit(wait=True)
            raise EmulationError(f"edge process ({self.policy}) is gone") from None

    def _check_exit(self, wait=False):
        if wait:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return
        if self.proc.returncode not in (0, None):
            tail = Path(str(self.log_path) + ".stderr").read_text(errors="replace")[-1500:]
            raise EmulationError(f"edge process ({self.policy}) exited with code {self.proc.returncode}: {tail}")

    def close(self):
        if self.proc is not None:
            procs.terminate(self.proc)
        for p in (self.loadp, self.relay, self.tclink):
            if p is not None:
                p.close() if p is self.tclink else p.stop()
        if self.cap is not None:
            self.cap.close()
        self._err.close()


def edge_command(out, policy, cloud, *, frames, log_path, threads, emulation, profile=None, board_mode="dilate",
                 duration_s=0.0, heartbeat_timeout_s=None):
    """The edge process's command line; ``emulation`` a board name (whose memory sets the
    prefix cache budget, as on the board) or an ``{"cpus", "quota"}`` dict."""
    cmd = procs.python_cmd("partnner_tf.testbed.edge_proc", out, "--cloud", cloud, "--policy", policy,
                           "--frames", frames, "--log", log_path, "--threads", threads)
    if profile:
        cmd += ["--profile", str(profile)]
    slowdown = dilation(emulation_for(emulation))[1] if board_mode in ("dilate", "dilate-all") else 1.0
    if slowdown > 1.0:
        cmd += ["--slowdown", str(slowdown)]
    if board_mode == "dilate-all" and slowdown > 1.0:
        cmd += ["--stretch-frame-work"]
    budget_mb = board_budget_mb(emulation)
    if budget_mb:
        cmd += ["--budget-mb", str(budget_mb)]
    if duration_s:
        cmd += ["--duration-s", str(duration_s)]
    if heartbeat_timeout_s:
        cmd += ["--heartbeat-timeout-s", str(heartbeat_timeout_s)]
    return cmd


def run_edge(out, policy, *, on_frame=None, **kwargs):
    """One edge process run whole; returns its per-frame dicts. Arguments as :class:`EdgeSession`."""
    session = EdgeSession(out, policy, **kwargs)
    try:
        session.run(on_frame)
    finally:
        session.close()
    return session.frames_run()


def turn_order(names, rounds):
    """The order of round ``rounds`` of turns: ``names`` shuffled, seeded by the round, so what
    runs just before a process varies (a turn may find the host still busy with the one before:
    the cloud daemon's threads, the relay) the same way for every process, and a bench is
    repeatable."""
    order = list(names)
    random.Random(rounds).shuffle(order)
    return order


def turns_heartbeat_timeout_s(n):
    """The cloud client's heartbeat timeout for one of ``n`` edge processes run in turns.

    The client's ZMTP heartbeats run on wall time, but a link stands still while its edge waits for
    its turn: a pause longer than the timeout (3 s) dropped the connection, and a request sent
    right after the pause, before the peer's answer to the queued heartbeat came back, was lost
    with it: in the paper table at 556b540, one ResNet50 frame waited its whole 1.59 s deadline
    for a reply the daemon could no longer route ("reply dropped reason=Host unreachable"), and
    over a relay paused 2.9-3.9 s, 9 of 102 pings sent right after the pause were lost. Each link
    runs about 1/n of the wall time, so the timeout is n times the client's
    (tests/testbed/test_turns.py shows the connection kept over a pause).
    """
    return n * HEARTBEAT_TIMEOUT_MS / 1000.0


def run_in_turns(specs):
    """Run several edge processes in turns (:data:`TURN_FRAMES` frames each); ``specs`` maps a name to
    :class:`EdgeSession` arguments. Returns ``{name: frames or EmulationError}``; a failed process
    does not stop the others.
    """
    if any(kw.get("load") for kw in specs.values()):
        raise PartnnerError("a cloud load schedule runs on wall time: runs with a load go one after the other")
    sessions, results = {}, {}
    heartbeat = {"heartbeat_timeout_s": turns_heartbeat_timeout_s(len(specs))}
    try:
        for name, kw in specs.items():
            try:
                sessions[name] = EdgeSession(**{**heartbeat, **kw})
            except (PartnnerError, OSError) as exc:
                results[name] = exc
        for s in sessions.values():
            s.start_clocks()
            s.relay.pause()
        live, rounds = dict(sessions), 0
        while live:
            for name in turn_order(list(live), rounds):
                try:
                    if not live[name].turn():
                        del live[name]
                except (PartnnerError, OSError) as exc:
                    results[name] = exc
                    del live[name]
            rounds += 1
        for name, s in sessions.items():
            results.setdefault(name, s.frames_run())
    finally:
        for s in sessions.values():
            s.close()
    return results


def _wait(proc, timeout_s, log_path, on_frame):
    """Wait for the edge process, handing each new log line to ``on_frame`` as it appears."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        try:
            proc.wait(timeout=0.25)
            done = True
        except subprocess.TimeoutExpired:
            done = False
        if on_frame is not None:
            try:
                lines = Path(log_path).read_text().splitlines()
            except OSError:
                lines = []
            # A line is complete once the next one starts or the process has finished.
            usable = lines if done else lines[:-1]
            for line in usable[seen:]:
                on_frame(json.loads(line))
            seen = max(seen, len(usable))
        if done:
            return
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
