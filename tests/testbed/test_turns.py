"""Runs in turns: each process's link time runs only in its own turns, a turn does not end
while the cloud link is down (the runtime's probe pings in wall time), and the cloud connection
outlives the pauses between turns (its heartbeats run in wall time too)."""

import threading
import time

import pytest
import zmq

from partnner_tf import protocol
from partnner_tf.client import CloudClient
from partnner_tf.errors import PartnnerError
from partnner_tf.manifest import load_manifest
from partnner_tf.testbed.bench import resolve_link
from partnner_tf.testbed.link import LinkProcess
from partnner_tf.testbed.session import edge_command, run_in_turns, turns_heartbeat_timeout_s

#: Link seconds: the uplink all but dies at 0.05 s and comes back at 1.3 s.
DIES, RETURNS = 0.05, 1.3


def test_a_turn_goes_on_while_the_link_is_down_so_the_probe_finds_it_back(converted_tiny, tmp_path):
    from partnner_tf.runtime.cloud.spawn import start_daemon

    out = converted_tiny("chain")
    edge_cut = load_manifest(out).edge_only
    link = resolve_link(f"steps:0=50e6,{DIES}=1e3,{RETURNS}=50e6|const:50e6|1")
    # Two slow edge-only processes take turns of 0.5 s beside the cloud-only one: longer than a
    # ping's timeout, so a probe that had to wait for its process's next turn would miss.
    slow = {"cpus": 1, "quota": 0.0003}
    # The cloud-only process runs for link time past the link's return, not for a number of
    # frames: its edge-only frames take ~1 ms here, and 200 of them ended at 1.26 s of link time,
    # before the link came back.
    cloud = dict(frames=100_000, duration_s=RETURNS + 0.7, emulation={"cpus": 1, "quota": 0.01})
    with start_daemon([out]) as daemon:
        specs = {name: dict(out=out, policy=name.split("_")[0], log_path=tmp_path / f"{name}.jsonl",
                            daemon_endpoint=daemon.endpoint, link=link,
                            **(cloud if name == "cloud" else dict(frames=16, emulation=slow)))
                 for name in ("cloud", "edge_a", "edge_b")}
        got = run_in_turns(specs)
    frames = got["cloud"]
    assert not isinstance(frames, Exception), frames
    timeouts = [i for i, f in enumerate(frames) if f["fallback"] and f["cut"] != edge_cut]
    assert timeouts, "the cloud request across the dead link should have timed out"
    t = timeouts[0]
    back = next((i for i in range(t + 1, len(frames)) if not frames[i]["fallback"]), None)
    assert back is not None, "the cloud link was never found up again"
    # While the link is down every frame runs edge-only; the first one back in the cloud comes
    # soon after the link's rate returns (a ping queued behind the abandoned payload, answered
    # once it drains), in link time, which runs only in this process's turns ("wall").
    assert all(f["cut"] == edge_cut for f in frames[t + 1:back])
    assert back - t > 3
    assert RETURNS <= frames[back]["wall"] < RETURNS + 0.3, frames[back]["wall"]
    assert len(got["edge_a"]) == len(got["edge_b"]) == 16


class PingServer:
    """A ROUTER answering every request with an empty ok, counting the connections it accepts."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.bind_to_random_port('tcp://127.0.0.1')}"
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_ACCEPTED)
        self.accepted, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        while not self.stop.is_set():
            ready = dict(poller.poll(50))
            if self.monitor in ready:
                self.monitor.recv_multipart()
                self.accepted += 1
            if self.sock in ready:
                ident, *frames = self.sock.recv_multipart()
                try:
                    self.sock.send_multipart([ident, *protocol.encode_ok(protocol.decode_request(frames).id)])
                except zmq.ZMQError:
                    pass  # the connection it came on is gone

    def close(self):
        self.stop.set()
        self.thread.join()
        self.monitor.close()
        self.sock.close(linger=0)
        self.ctx.term()


def _settled(get, want, timeout_s=2.0):
    """``get()`` once it equals ``want`` or ``timeout_s`` has passed (a monitor event may trail
    the traffic it came with by a few ms)."""
    end = time.monotonic() + timeout_s
    while get() != want and time.monotonic() < end:
        time.sleep(0.01)
    return get()


def test_a_link_paused_for_other_turns_keeps_its_cloud_connection():
    # The client's heartbeats run on wall time while a link waits for its turn. With the client's
    # own timeout (3 s) a 4.6 s pause dropped the connection (a request sent just after such a
    # pause could be lost with it); with the timeout of runs in turns of two it stays up.
    server = PingServer()
    pause_s = 4.6
    try:
        timeouts = {"client's": None, "turns'": turns_heartbeat_timeout_s(2)}
        links = {k: LinkProcess(server.endpoint, "const:8e6", delay_s=0.01) for k in timeouts}
        clients = {}
        try:
            for k, hb in timeouts.items():
                links[k].restart_clock()
                clients[k] = CloudClient(links[k].endpoint, heartbeat_timeout_s=hb)
                clients[k].ping(2.0)
            assert _settled(lambda: server.accepted, 2) == 2
            for link in links.values():
                link.pause()
            time.sleep(pause_s)
            for k in timeouts:
                links[k].resume()
                clients[k].ping(2.0)
            # One new connection: the client-timeout link's, made again after the heartbeat dropped it.
            assert _settled(lambda: server.accepted, 3) == 3
        finally:
            for c in clients.values():
                c.close()
            for link in links.values():
                link.stop()
    finally:
        server.close()


def test_runs_in_turns_give_their_edges_a_heartbeat_timeout_as_long_as_a_round():
    assert turns_heartbeat_timeout_s(5) == 5 * turns_heartbeat_timeout_s(1) == 15.0
    cmd = [str(x) for x in edge_command("OUT", "partnner", "tcp://127.0.0.1:1", frames=5, log_path="log",
                                        threads=1, emulation="rpi4", heartbeat_timeout_s=15.0)]
    assert cmd[cmd.index("--heartbeat-timeout-s") + 1] == "15.0"
    cmd = edge_command("OUT", "partnner", "tcp://127.0.0.1:1", frames=5, log_path="log", threads=1,
                       emulation="rpi4")
    assert "--heartbeat-timeout-s" not in cmd
    for bad in (0, -3.0, float("nan")):
        with pytest.raises(PartnnerError, match="heartbeat_timeout_s"):
            CloudClient("tcp://127.0.0.1:1", heartbeat_timeout_s=bad)
