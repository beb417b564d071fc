"""A user-space, trace-driven TCP relay: Mahimahi packet opportunities plus a one-way delay.

The edge connects to the relay's port, the relay connects to the cloud daemon, and the bytes of
each direction wait in their own queue for the schedule's packet opportunities (one packet of
``packet_bytes`` per opportunity, like Mahimahi), then for the propagation delay. Zero capacity
holds data, never drops it. Run it in its own process (``LinkProcess``) so a capped edge or a
busy cloud never slows the link itself.
"""

import argparse
import asyncio
import collections
import json
import math
import os
import socket
import stat
import sys
import time

import numpy as np

from partnner_tf import traces
from partnner_tf.errors import EmulationError, PartnnerError
from partnner_tf.testbed import procs

#: Opportunities generated ahead at a time (a few seconds of a fast link).
_BLOCK = 8192
#: The pacer wakes at most this often while data waits (batches opportunities in between).
_TICK_S = 0.001
#: Bytes a direction reads ahead before it stops reading (and the sender's TCP window fills).
_MAX_QUEUED = 8 << 20


def parse_schedule(spec):
    """A schedule from a spec string, or the schedule object itself.

    Specs: ``const:BPS`` (e.g. ``const:12e6``), ``steps:T=BPS,T=BPS`` (seconds, bits/s), or a
    Mahimahi trace path with an optional ``*SCALE`` suffix (``traces/Verizon-LTE-short.up*0.5``).
    """
    if not isinstance(spec, str):
        if not hasattr(spec, "transfer_time"):
            raise PartnnerError(f"expected a schedule or a spec string, received {spec!r}")
        return spec
    try:
        if spec.startswith("const:"):
            return traces.constant(float(spec[6:]))
        if spec.startswith("steps:"):
            pts = [p.split("=") for p in spec[6:].split(",") if p]
            return traces.steps([(float(t), float(r)) for t, r in pts])
    except ValueError:
        raise PartnnerError(
            f"link schedule {spec!r}: expected const:BPS or steps:T=BPS,T=BPS (numbers)"
        ) from None
    path, _, scale = spec.partition("*")
    return traces.load_trace(path, scale=float(scale) if scale else 1.0)


class OpportunityClock:
    """The times of a schedule's packet opportunities, generated lazily; time only moves forward."""

    def __init__(self, schedule, offset_s=0.0):
        self.schedule = schedule
        self.packet_bytes = float(getattr(schedule, "packet_bytes", traces.PACKET_BYTES))
        self.offset_s = float(offset_s)
        # Opportunities before the offset are not ours: count them once, then skip them.
        self._base = self._count_raw(self.offset_s) if offset_s else 0
        self._j0 = 0  # opportunities (after the base) before the current block
        self._block = self._times(0)

    def _times(self, j0):
        """Link times (offset removed) of opportunities j0+1 .. j0+_BLOCK."""
        idx = self._base + j0 + np.arange(1, _BLOCK + 1, dtype=np.float64)
        t = self.schedule.transfer_time(0.0, idx * self.packet_bytes)
        return np.asarray(t, dtype=np.float64) - self.offset_s

    def _count_raw(self, t):
        """Opportunities at or before ``t`` from 0, by bisecting transfer_time (rarely used)."""
        lo, hi = 0, 1
        while float(self.schedule.transfer_time(0.0, hi * self.packet_bytes)) <= t:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if float(self.schedule.transfer_time(0.0, mid * self.packet_bytes)) <= t:
                lo = mid
            else:
                hi = mid
        return lo

    def _advance_block(self, t):
        while math.isfinite(self._block[-1]) and self._block[-1] <= t:
            self._j0 += _BLOCK
            self._block = self._times(self._j0)

    def count(self, t):
        """Opportunities with link time <= ``t``."""
        self._advance_block(t)
        return self._j0 + int(np.searchsorted(self._block, t, side="right"))

    def time_of(self, j):
        """Link time of opportunity ``j`` (1-based); inf if the link never opens again."""
        if j <= self._j0:
            return float(self.schedule.transfer_time(0.0, (self._base + j) * self.packet_bytes)) - self.offset_s
        while j > self._j0 + _BLOCK and math.isfinite(self._block[-1]):
            self._j0 += _BLOCK
            self._block = self._times(self._j0)
        k = j - self._j0 - 1
        return float(self._block[k]) if k < _BLOCK else math.inf

    def rate_bps(self, t, window_s=1.0):
        """The schedule's capacity around link time ``t`` (for plots)."""
        return float(self.schedule.rate_bps(t + self.offset_s, window_s))


class ShapedQueue:
    """One direction's bottleneck queue: pure, driven by link times."""

    def __init__(self, clock):
        self.clock = clock
        self.chunks = collections.deque()
        self.head = 0  # bytes of chunks[0] already sent
        self.queued = 0
        self.used = 0  # opportunities consumed or wasted so far
        self.delivered = 0

    def push(self, data, t):
        if not self.queued:
            # Opportunities that passed while the queue was empty are wasted, as in Mahimahi.
            self.used = max(self.used, self.clock.count(t))
        if data:
            self.chunks.append(data)
            self.queued += len(data)

    def next_time(self):
        """Link time of the next opportunity that will carry data, or None when empty."""
        return self.clock.time_of(self.used + 1) if self.queued else None

    def pull(self, t):
        """Bytes that left by link time ``t``, with the time the last of them left."""
        if not self.queued:
            return None
        avail = self.clock.count(t) - self.used
        if avail <= 0:
            return None
        pb = self.clock.packet_bytes
        need = math.ceil(self.queued / pb)
        k = min(avail, need)
        if k == need:
            nbytes = self.queued
        else:
            nbytes = int(math.floor((self.used + k) * pb) - math.floor(self.used * pb))
        data = self._take(nbytes)
        self.used += k
        self.delivered += len(data)
        return self.clock.time_of(self.used), data

    def _take(self, nbytes):
        parts = []
        while nbytes > 0:
            chunk = self.chunks[0]
            n = min(nbytes, len(chunk) - self.head)
            parts.append(chunk[self.head:self.head + n])
            self.head += n
            nbytes -= n
            self.queued -= n
            if self.head == len(chunk):
                self.chunks.popleft()
                self.head = 0
        return b"".join(parts)


class Relay:
    """The asyncio relay: accepts edge connections, shapes both directions to the upstream."""

    def __init__(self, upstream, up, down, delay_s=0.0, offset_s=0.0, host="127.0.0.1"):
        self.upstream = upstream
        self.up_schedule, self.down_schedule = parse_schedule(up), parse_schedule(down)
        if delay_s < 0:
            raise PartnnerError(f"link delay must be >= 0 s, received {delay_s}")
        self.delay_s = float(delay_s)
        self.offset_s = float(offset_s)
        self.host = host
        self.t0 = None  # wall clock when link time 0 was (the first connection)
        self.queues = []
        self._paused_at = None
        self._resumed = None

    def now(self):
        return (time.monotonic() if self._paused_at is None else self._paused_at) - self._m0

    def pause(self):
        """Stop link time (the testbed runs several edges in turns; each link keeps only its edge's time)."""
        if self._paused_at is None:
            self._paused_at = time.monotonic()
            self._resumed = asyncio.Event()

    def resume(self):
        if self._paused_at is not None:
            self._m0 += time.monotonic() - self._paused_at
            self._paused_at = None
            self._resumed.set()

    def restart_clock(self):
        """Link time 0 is now, for every connection (the parent's "restart" when a run really starts)."""
        self._m0 = time.monotonic()
        self.t0 = time.time()
        if self._paused_at is not None:
            self._paused_at = self._m0
        for up, down in self.queues:
            for q, sched in ((up, self.up_schedule), (down, self.down_schedule)):
                q.clock = OpportunityClock(sched, self.offset_s)
                q.used = 0

    async def serve(self, port=0, ready=None):
        self._m0 = time.monotonic()
        server = await asyncio.start_server(self._on_client, self.host, port)
        self.port = server.sockets[0].getsockname()[1]
        if ready:
            ready(self)
        async with server:
            await server.serve_forever()

    async def _on_client(self, edge_r, edge_w):
        if self.t0 is None:
            # The link's clock starts with the first connection so a slow edge start-up does
            # not eat the beginning of the trace.
            self._m0 = time.monotonic()
            self.t0 = time.time()
        try:
            cloud_r, cloud_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            edge_w.close()
            return
        for w in (edge_w, cloud_w):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = ShapedQueue(OpportunityClock(self.up_schedule, self.offset_s))
        down = ShapedQueue(OpportunityClock(self.down_schedule, self.offset_s))
        self.queues.append((up, down))
        tasks = [asyncio.create_task(self._pipe(edge_r, cloud_w, up)),
                 asyncio.create_task(self._pipe(cloud_r, edge_w, down))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (edge_w, cloud_w):
            w.close()

    async def _pipe(self, reader, writer, queue):
        arrived = asyncio.Event()
        line = asyncio.Queue()
        eof = False

        async def read():
            nonlocal eof
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    eof = True
                    arrived.set()
                    return
                queue.push(data, self.now())
                arrived.set()
                # Past a few MB queued, leave the rest in the kernel: TCP back-pressure holds it.
                while queue.queued > _MAX_QUEUED:
                    await asyncio.sleep(_TICK_S * 5)

        async def write():
            while True:
                due, data = await line.get()
                if due is None:
                    return
                wait = due - self.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(read()), asyncio.create_task(write())]
        try:
            while True:
                if self._paused_at is not None:
                    await self._resumed.wait()
                nxt = queue.next_time()
                if nxt is None:
                    if eof:
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                wait = max(nxt - self.now(), _TICK_S) if math.isfinite(nxt) else 0.05
                await asyncio.sleep(wait)
                got = queue.pull(self.now())
                if got:
                    t_left, data = got
                    line.put_nowait((t_left + self.delay_s, data))
            line.put_nowait((None, None))
            await tasks[1]
        finally:
            for t in tasks:
                t.cancel()

    def stats(self):
        t = self.now() if self.t0 is not None else 0.0
        up = sum(q[0].delivered for q in self.queues)
        down = sum(q[1].delivered for q in self.queues)
        return {
            "t": t,
            "wall": time.time(),
            "up_bps": float(self.up_schedule.rate_bps(t + self.offset_s, 1.0)),
            "down_bps": float(self.down_schedule.rate_bps(t + self.offset_s, 1.0)),
            "up_bytes": up,
            "down_bytes": down,
            "up_queued": sum(q[0].queued for q in self.queues),
        }


async def _stats_loop(relay, path, every_s=0.25):
    with open(path, "a", encoding="utf-8") as f:
        while True:
            await asyncio.sleep(every_s)
            if relay.t0 is not None:
                f.write(json.dumps(relay.stats()) + "\n")
                f.flush()


def main(argv=None):
    """``python -m partnner_tf.testbed.link``: run one relay; prints a JSON ready line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--upstream", required=True, help="HOST:PORT of the cloud daemon")
    p.add_argument("--up", required=True, help="uplink schedule spec")
    p.add_argument("--down", required=True, help="downlink schedule spec")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way propagation delay")
    p.add_argument("--offset-s", type=float, default=0.0, help="start this far into the trace")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--listen", default="127.0.0.1", help="address to accept the edge on")
    p.add_argument("--stats", help="append a JSON line of link state every 0.25 s here")
    a = p.parse_args(argv)
    host, _, port = a.upstream.rpartition(":")
    relay = Relay((host, int(port)), a.up, a.down, a.delay_ms / 1000.0, a.offset_s, host=a.listen)

    def ready(r):
        print(json.dumps({"port": r.port}), flush=True)

    async def run():
        loop = asyncio.get_running_loop()
        commands = None
        if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            commands = loop.create_task(_commands(relay, loop))
        if a.stats:
            asyncio.get_running_loop().create_task(_stats_loop(relay, a.stats))
        try:
            await relay.serve(a.port, ready)
        finally:
            if commands is not None:
                commands.cancel()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


async def _commands(relay, loop):
    """The parent's clock commands, a line each on stdin, applied in the order sent. (Signals
    were not: a pause sent right before a resume could land after it, and leave the link
    stopped through the next turn, its frame in flight timing out.)"""
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    actions = {b"restart": relay.restart_clock, b"pause": relay.pause, b"resume": relay.resume}
    while line := await reader.readline():
        act = actions.get(line.strip())
        if act is None:
            print(f"link relay: unknown command {line.strip()!r} (expected restart, pause or resume)",
                  file=sys.stderr, flush=True)
        else:
            act()


class LinkProcess:
    """A relay in its own process group; ``.endpoint`` is what the edge connects to."""

    def __init__(self, upstream_endpoint, up, down=None, *, delay_s=0.0, offset_s=0.0, stats=None,
                 listen="127.0.0.1"):
        if not upstream_endpoint.startswith("tcp://"):
            raise EmulationError(f"the relay needs a tcp:// upstream endpoint, received {upstream_endpoint!r}")
        hostport = upstream_endpoint[len("tcp://"):]
        down = up if down is None else down
        for s in (up, down):
            if not isinstance(s, str):
                raise PartnnerError(f"LinkProcess takes schedule spec strings, received {s!r}")
            parse_schedule(s)  # fail here, with a clear message, not in the child
        self.up, self.down, self.delay_s, self.stats_path = up, down, delay_s, stats
        cmd = procs.python_cmd("partnner_tf.testbed.link", "--upstream", hostport, "--up", up,
                               "--down", down, "--delay-ms", delay_s * 1000.0, "--offset-s", offset_s,
                               "--listen", listen)
        if stats:
            cmd += ["--stats", str(stats)]
        import subprocess

        self.proc = procs.spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            # The link must keep time when the host is busy; it needs little CPU, so a higher
            # priority costs the others little (root only; otherwise it runs at the default).
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, -5)
        except OSError:
            pass
        info = procs.read_ready_line(self.proc, "link relay")
        self.port = info["port"]
        self.endpoint = f"tcp://{listen}:{self.port}"
        self.pid = self.proc.pid

    def restart_clock(self):
        """Start the schedules over from link time 0 now (the edge is about to send its first frame)."""
        self._command(b"restart")
        self.t0 = time.time()

    def pause(self):
        """Stop link time until :meth:`resume` (data in flight waits with it)."""
        self._command(b"pause")

    def resume(self):
        self._command(b"resume")

    def _command(self, word):
        try:
            self.proc.stdin.write(word + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise EmulationError(
                f"the link relay (pid {self.proc.pid}) is gone; exit code {self.proc.poll()}") from None

    def stop(self):
        procs.terminate(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
