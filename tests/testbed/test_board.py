"""Board emulation: detection says what it can do, presets are checked, a cap really limits CPU time."""

import os
import sys
import time

import numpy as np
import pytest

from partnner_tf.errors import PartnnerError, UnknownBoardError
from partnner_tf.testbed import board, procs


def test_detect_explains_itself():
    cap = board.detect()
    assert cap.reason
    if os.geteuid() != 0:
        assert not cap.can_cap and "root" in cap.reason
    else:
        assert cap.method in ("cgroup-v1", "cgroup-v2", None)


def test_presets_resolve_and_bad_ones_are_refused():
    emu = board.emulation_for("rpi4")
    assert emu["cpus"] >= 1 and 0 < emu["quota"] <= 1
    with pytest.raises(UnknownBoardError, match="rpi4"):
        board.emulation_for("no-such-board")
    with pytest.raises(PartnnerError, match="quota"):
        board.emulation_for({"cpus": 1, "quota": 3})


def test_quota_period_keeps_the_kernel_minimum():
    quota, period = board.quota_period(2, 0.03)
    assert quota >= board.MIN_QUOTA_US and quota / period == pytest.approx(0.06, rel=0.02)
    quota, period = board.quota_period(1, 0.5)
    assert period <= 10_000 and quota / period == pytest.approx(0.5, rel=0.02)


@pytest.mark.skipif(not board.detect().can_cap, reason=board.detect().reason)
def test_cap_limits_cpu_time_share():
    # A high priority so that a busy host cannot starve it below the cap: the cap is then the limit.
    loop = ["nice", "-n", "-15", sys.executable, "-c", "while True: pass"]
    proc, cap = board.spawn_capped(loop, {"cpus": 1, "quota": 0.3})
    try:
        time.sleep(0.3)
        c0, t0 = board.cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2.0)
        share = (board.cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
    finally:
        procs.terminate(proc)
        cap.close()
    assert 0.2 <= share <= 0.36
    assert cap.path is None  # the cgroup was removed


def test_an_emulated_board_gets_its_own_prefix_cache_budget():
    # The bench passed the board's {"cpus", "quota"} dict, whose memory nobody knows, so every
    # emulated board ran with the runtime's 256 MB default: ResNet50's three prefixes (294 MB)
    # evicted each other, and a Pi 4 sent frames cloud-only over 3G while cut 2 reloaded.
    from partnner_tf.testbed.session import edge_command

    def budget(emulation):
        cmd = [str(x) for x in edge_command("OUT", "partnner", "tcp://127.0.0.1:1", frames=5, log_path="log",
                                            threads=2, emulation=emulation)]
        return float(cmd[cmd.index("--budget-mb") + 1]) if "--budget-mb" in cmd else None

    assert budget("rpi4") == pytest.approx(board.board_budget_mb("rpi4")) and budget("rpi4") > 512
    assert budget("coral-dev-board") == pytest.approx(board.board_budget_mb("coral-dev-board"))
    assert budget({"cpus": 1, "quota": 0.5}) is None  # unknown memory: the runtime's default
    cmd = [str(x) for x in edge_command("OUT", "edge", "none", frames=5, log_path="log", threads=1, emulation="rpi4")]
    assert cmd[cmd.index("--slowdown") + 1] == str(board.dilation(board.emulation_for("rpi4"))[1])
    assert "--stretch-frame-work" not in cmd
    cmd = [str(x) for x in edge_command("OUT", "edge", "none", frames=5, log_path="log", threads=1, emulation="rpi4",
                                        board_mode="dilate-all")]
    assert "--slowdown" in cmd and "--stretch-frame-work" in cmd


def test_a_dilated_board_runs_one_thread_stretched_to_its_speed():
    threads, slowdown = board.dilation(board.emulation_for("rpi4"))
    assert threads == 1 and slowdown == pytest.approx(board.DILATE_CORE_SHARE / board.emulation_for("rpi4")["quota"])
    # Slower boards are stretched more; a board as fast as this host is not stretched at all and
    # keeps its cores.
    assert board.dilation(board.emulation_for("rpi3b"))[1] > slowdown
    assert board.dilation({"cpus": 2, "quota": 1.0}) == (min(2, os.cpu_count()), 1.0)
    from partnner_tf.testbed.session import edge_command

    cmd = edge_command("OUT", "edge", "none", frames=5, log_path="log", threads=2, emulation={"cpus": 2, "quota": 1.0})
    assert "--slowdown" not in [str(x) for x in cmd]


def test_dilation_stretches_a_host_hiccup_no_further_than_a_usual_run(converted_tiny):
    # A prefix run that took several times its usual CPU time here (the host's doing, not the
    # board's) is stretched from HICCUP times the median of the prefix's last runs.
    from partnner_tf.runtime.edge import EdgeRuntime
    from partnner_tf.testbed.edge_proc import Dilation

    rt = EdgeRuntime(converted_tiny("chain"), cloud=None, selector="edge", threads=1)
    spec = rt.manifest.input
    x = np.zeros(tuple(int(d) for d in spec.shape), dtype=spec.dtype)
    dilation = Dilation(2.0)
    slept = []
    dilation._sleep = lambda s: slept.append(s) or (0.0, 0.0)
    try:
        with dilation.priming():  # warming before the clock starts: counted, not stretched
            for _ in range(3):
                rt.infer(x)
        assert slept == []
        for _ in range(2):
            rt.infer(x)
        assert len(slept) == 2
        prefix = rt.cache.get(rt.edge_cut)
        runs = list(dilation._runs[prefix])
        assert len(runs) == 5 and all(r > 0 for r in runs)  # every real run was counted
        usual = float(np.median(runs))
        assert dilation._usual(prefix, 10 * usual) == pytest.approx(Dilation.HICCUP * usual)
        assert dilation._usual(prefix, 0.9 * usual) == 0.9 * usual  # a usual run: as it took
        assert len(dilation._runs[prefix]) == 7  # the hiccup is remembered: a lasting change moves the median

        class Other:
            pass

        other = Other()
        assert [dilation._usual(other, s) for s in (1.0, 1.0, 1.0, 9.0)] == [1.0, 1.0, 1.0, Dilation.HICCUP]
        assert dilation._usual(Other(), 9.0) == 9.0  # nothing known of a prefix before its third run
    finally:
        dilation.close()
        rt.close()


def test_dilation_stretches_prefix_runs_and_the_rest_of_each_frame(converted_tiny):
    # Dilated, a board ran only its prefixes slowly: the runtime's and the selector's own Python
    # ran at this host's speed, several times faster than the board would run it. With
    # frame_work ("dilate-all"), a frame's other work is owed (factor - 1) times over too, slept
    # after the frame and added to its latency; prefix runs, stretched where they ran, are not
    # charged again.
    from partnner_tf.runtime.edge import EdgeRuntime
    from partnner_tf.runtime.interpreter import Prefix
    from partnner_tf.testbed.edge_proc import Dilation

    factor, burn_s = 4.0, 0.002
    rt = EdgeRuntime(converted_tiny("chain"), cloud=None, selector="edge", threads=1)
    spec = rt.manifest.input
    x = np.zeros(tuple(int(d) for d in spec.shape), dtype=spec.dtype)
    inner = []

    def infer(frame):  # the runtime's frame plus 2 ms of Python, as a selector's plan would add
        c = time.thread_time()
        while time.thread_time() - c < burn_s:
            pass
        inner.append(rt.infer(frame))
        return inner[-1]

    plain = [rt.infer(x).edge_s for _ in range(9)]
    dilation = Dilation(factor, frame_work=True)
    cpu = 0.0
    try:
        assert Prefix.run is not dilation._run
        results = []
        for _ in range(20):
            c = time.thread_time()
            results.append(dilation.frame(infer, x))
            cpu += time.thread_time() - c
    finally:
        dilation.close()
        rt.close()
    assert Prefix.run is dilation._run
    slept = sum(r.total_s - i.total_s for r, i in zip(results, inner))
    # Owed: the frame thread's CPU outside prefix runs, (factor - 1) times; slept, all of it but
    # what is still owed (or lent: a sleep overshoots). The prefix runs' CPU is not in it.
    assert dilation._not_work > 0
    owed = (factor - 1) * (cpu - dilation._not_work)
    assert owed > (factor - 1) * 20 * burn_s
    assert slept + dilation.owed_s == pytest.approx(owed, rel=0.05)
    assert all(r.total_s >= i.total_s for r, i in zip(results, inner))
    # The prefix runs themselves took longer than undilated ones.
    assert np.median([r.edge_s for r in results]) > 2 * np.median(plain)
    # Without frame_work only the prefix runs are stretched.
    only = Dilation(factor)
    try:
        rt = EdgeRuntime(converted_tiny("chain"), cloud=None, selector="edge", threads=1)
        r = only.frame(rt.infer, x)
        rt.close()
    finally:
        only.close()
    assert only.owed_s == 0.0 and r.total_s < 5 * r.edge_s + 0.05
