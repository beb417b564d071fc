"""Hedged frames: the edge-only model runs beside a cloud request and the first result ends the frame."""

import os
import threading
import time

import numpy as np
import pytest
import zmq

from partnner_tf.runtime.edge import EdgeRuntime
from partnner_tf.selector import Observation
from partnner_tf.selector.base import Selector
from tests.runtime.edge_fixtures import (  # noqa: F401 (fixtures)
    assert_matches, daemon, frames, reference, residual_out)


class HedgeEveryFrame(Selector):
    """Cloud-only, every frame hedged; keeps what it observed."""

    def __init__(self, manifest):
        super().__init__(manifest)
        self.seen = []

    def choose(self):
        return 0

    def hedge(self, cut):
        return True

    def deadline_s(self, cut):
        return 5.0

    def observe(self, obs: Observation):
        self.seen.append(obs)


def test_a_silent_cloud_costs_a_hedged_frame_only_its_edge_run(residual_out, frames, reference):
    # A real ROUTER socket that takes requests and never answers: the edge must win every frame,
    # long before the 5 s deadline, with the right result.
    ctx = zmq.Context.instance()
    sink = ctx.socket(zmq.ROUTER)
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    try:
        with EdgeRuntime(residual_out, cloud=f"tcp://127.0.0.1:{port}", selector="edge") as rt:
            rt.selector = sel = HedgeEveryFrame(rt.manifest)
            t = time.perf_counter()
            results = [rt.infer(f) for f in frames[:5]]
            wall = time.perf_counter() - t
            assert rt.stats["hedged"] == 5
        assert wall < 2.5, f"5 hedged frames took {wall:.2f} s: the 5 s deadline was waited for"
        assert sink.poll(1000), "the requests did go to the cloud"
    finally:
        sink.close(linger=0)
    for i, r in enumerate(results):
        # The edge answering first is the hedge working, not a fallback.
        assert not r.fallback and r.hedged == "edge" and r.error is None and r.cut == 0
        assert_matches(r, reference, i)
    assert all(o.timed_out and o.edge_only_s > 0 and o.transfer_s < 2.0 for o in sel.seen)


def test_a_fast_cloud_wins_the_hedge_and_the_next_frame_waits_for_the_edge_run(residual_out, daemon, frames,
                                                                                reference, monkeypatch):
    # A board 0.3 s slower per run (the real interpreter runs, then sleeps, as the testbed's
    # dilated boards do): the loopback daemon answers first.
    from partnner_tf.runtime.interpreter import Prefix

    run = Prefix.run
    monkeypatch.setattr(Prefix, "run", lambda self, inputs: (run(self, inputs), time.sleep(0.3))[0])
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector="edge") as rt:
        rt.infer(frames[0])  # connect and warm the daemon's suffix (the edge wins this one)
        rt.selector = sel = HedgeEveryFrame(rt.manifest)
        t = time.perf_counter()
        results = [rt.infer(f) for f in frames[1:5]]
        wall = time.perf_counter() - t
    for i, r in enumerate(results, start=1):
        assert_matches(r, reference, i)
        assert not r.fallback and r.cut == 0 and r.hedged == "cloud"
    assert all(not o.timed_out and o.cloud_s > 0 for o in sel.seen)
    # The edge-only run the cloud beat still reports its time, with the next frame's observation.
    assert not sel.seen[0].edge_only_s
    assert all(o.edge_only_s >= 0.3 for o in sel.seen[1:]), [o.edge_only_s for o in sel.seen]
    # ... and the frame's log line carries it too.
    assert [r.edge_only_s for r in results] == [o.edge_only_s for o in sel.seen]
    # Each frame after the first waited for the previous frame's edge run (one interpreter).
    assert wall >= 3 * 0.3


class HedgeThenCut1(HedgeEveryFrame):
    """Frame 1: a hedged cloud-only try; then cut 1 (whose prefix is not loaded yet)."""

    def choose(self):
        return 0 if not self.seen else 1


def test_after_the_edge_wins_a_hedge_a_deferred_swap_runs_edge_only(residual_out, frames, reference):
    # What ran was edge-only, so a swap that waits for a prefix load keeps running edge-only,
    # not the cloud-only try (over 3G that sent a ResNet50 testbed run cloud-only for 10 frames).
    ctx = zmq.Context.instance()
    sink = ctx.socket(zmq.ROUTER)
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    try:
        with EdgeRuntime(residual_out, cloud=f"tcp://127.0.0.1:{port}", selector="edge", budget_bytes=1) as rt:
            rt.selector = HedgeThenCut1(rt.manifest)
            first = rt.infer(frames[0])
            second = rt.infer(frames[1])
    finally:
        sink.close(linger=0)
    assert first.hedged == "edge" and first.cut == 0
    assert second.cut == rt.edge_cut and second.chosen == 1 and not second.fallback
    assert_matches(second, reference, 1)


def test_a_wakeup_ends_the_wait_for_a_silent_cloud_without_looking_at_it_in_a_loop(monkeypatch):
    # With a plain Event looked at only every 10 s, the wait would run into its 3 s deadline;
    # a Wakeup set from another thread ends it (as a hedge's finished edge run does).
    import partnner_tf.client as client_mod
    from partnner_tf.client import CloudClient, Wakeup
    from partnner_tf.errors import Abandoned

    monkeypatch.setattr(client_mod, "CANCEL_POLL_S", 10.0)
    ctx = zmq.Context.instance()
    sink = ctx.socket(zmq.ROUTER)
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    client = CloudClient(f"tcp://127.0.0.1:{port}")
    wake = Wakeup()
    timer = threading.Timer(0.2, wake.set)
    try:
        timer.start()
        with pytest.raises(Abandoned):
            client.infer("m", 0, [np.zeros(4, np.float32)], 3.0, cancel=wake)
        assert sink.poll(1000), "the request did go to the cloud"
    finally:
        timer.cancel()
        client.close()
        sink.close(linger=0)
        wake.close()
    wake.set()  # after close: nothing to write to, no error


def test_hedged_frames_leave_no_file_descriptor_open(residual_out, frames):
    ctx = zmq.Context.instance()
    sink = ctx.socket(zmq.ROUTER)
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    try:
        with EdgeRuntime(residual_out, cloud=f"tcp://127.0.0.1:{port}", selector="edge") as rt:
            rt.selector = HedgeEveryFrame(rt.manifest)
            rt.infer(frames[0])
            rt.settle()
            before = len(os.listdir("/proc/self/fd"))
            for f in frames[1:6]:
                rt.infer(f)
            rt.settle()
            after = len(os.listdir("/proc/self/fd"))
            assert rt.stats["hedged"] == 6
    finally:
        sink.close(linger=0)
    assert after == before, (before, after)
