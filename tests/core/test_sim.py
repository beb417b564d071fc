"""The simulator: determinism, consistency of its static sweep, worlds, profiles and the CLI."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from partnner_tf.cli import cli
from partnner_tf.errors import PartnnerError
from partnner_tf.sim import format_table, link_up_at, run_policy, run_static, simulate
from partnner_tf.sim_world import (Schedule, load_profile, make_world, parse_steps, synthetic_manifest,
                                   synthetic_profile)
from tests.core.test_traces import TRACES, needs_traces
from tests.core.worlds import constant, steps, table_world, world


def test_same_seed_same_frames_other_seed_other_noise():
    w = world(25, seed=4, uplink=steps([(0, 20e6), (5, 1e6)]), load=[(0, 1), (8, 5)])
    a = run_policy(w, "partnner", 200, seed=7)
    b = run_policy(w, "partnner", 200, seed=7)
    c = run_policy(w, "partnner", 200, seed=8)
    np.testing.assert_array_equal(a.cut, b.cut)
    np.testing.assert_array_equal(a.total, b.total)
    assert not np.array_equal(a.total, c.total)


def test_stalls_come_on_their_own_random_stream():
    """Stalls multiply the edge's or the cloud's time by 1.4-2x for 1-3 frames; a world without
    them draws the same noise as before they existed."""
    from partnner_tf.sim import noise_table

    w = world(5, noise=0.05)
    plain = noise_table(w, 2000, seed=3)
    np.testing.assert_array_equal(plain, np.exp(np.random.default_rng(3).normal(0.0, 0.05, (2000, 3))))
    w.stalls = 0.02
    stalled = noise_table(w, 2000, seed=3)
    np.testing.assert_array_equal(stalled, noise_table(w, 2000, seed=3))
    ratio = stalled / plain
    np.testing.assert_array_equal(ratio[:, 1], 1.0)  # the link has its own burstiness
    hit = (ratio[:, [0, 2]] > 1.0).any(axis=1)
    assert 0.025 < hit.mean() < 0.06, hit.mean()  # ~2% of frames start one, 1-3 frames long
    assert ratio.max() < 2.0 ** 2 and ratio[ratio > 1].min() >= 1.4


def test_static_sweep_matches_fixed_policies():
    w = world(10, seed=1, uplink=steps([(0, 8e6), (3, 0), (5, 8e6)]), load=[(0, 1), (4, 3)])
    means, cuts = run_static(w, 150, seed=3)
    for c in (0, 4, 9):
        assert means[c] == pytest.approx(run_policy(w, f"fixed:{c}", 150, seed=3).mean, rel=1e-9)


def test_static_sweep_over_a_span_counts_the_frames_that_start_in_it():
    """Over the world's first seconds only, each fixed cut's mean is that of its own frames that
    start in them (each cut at its own pace); with no span, all its frames."""
    w = world(10, seed=1, uplink=steps([(0, 8e6), (3, 0.3e6), (5, 8e6)]), load=[(0, 1), (4, 3)])
    span = 2.0
    means, _ = run_static(w, 150, seed=3, span_s=span)
    for c in (0, 4, 9):
        run = run_policy(w, f"fixed:{c}", 150, seed=3)
        inside = run.start < span
        assert 0 < inside.sum() < 150
        assert means[c] == pytest.approx(run.total[inside].mean(), rel=1e-9)
    np.testing.assert_array_equal(run_static(w, 150, seed=3, span_s=np.inf)[0], run_static(w, 150, seed=3)[0])


def test_oracle_is_a_lower_envelope():
    w = world(20, seed=3, uplink=steps([(0, 30e6), (10, 0.5e6)]), noise=0.0)
    runs, summary = simulate(w, ["partnner", "edge", "cloud"], frames=300, seed=0)
    assert np.all(runs["oracle"].ratio == 1.0)
    for name in ("partnner", "edge", "cloud", "static"):
        assert summary["policies"][name]["vs_oracle"] >= 1.0 - 1e-9
    assert summary["policies"]["static"]["mean_s"] <= summary["policies"]["edge"]["mean_s"] + 1e-12
    text = format_table(summary)
    assert "oracle" in text and "partnner" in text and f"best static cut in hindsight: {summary['best_static_cut']}" in text


def test_components_of_a_frame():
    w = world(6, seed=2, uplink=constant(8e6), rtt_s=0.05, noise=0.0, down_bps=8e6)
    e, n, k = w.components(0.0)
    assert n[w.edge_cut] == 0 and k[w.edge_cut] == 0
    assert n[0] == pytest.approx(w.bytes[0] / 1e6 + 0.05 + w.result_bytes / 1e6)
    np.testing.assert_allclose(e, w.edge_s)


def test_after_a_timeout_frames_run_edge_only_until_a_ping_is_answered():
    # The uplink nearly dies at 1 s and comes back at 4 s: cloud-only times out once, then runs
    # edge-only (as the runtime does while its link is down) until a ping, queued behind the
    # abandoned payload, is answered; it does not wait out a deadline on every frame.
    w = world(8, seed=5, uplink=steps([(0, 20e6), (1, 20e3), (4, 20e6)]), noise=0.0)
    r = run_policy(w, "cloud", 120, seed=0)
    first = int(np.flatnonzero(r.timed_out)[0])
    assert r.timed_out.sum() == 1
    t0 = r.start[first]
    busy = t0 + w.uplink.transfer_time(t0, w.bytes[w.manifest.cloud_only])  # the payload's last byte
    up = link_up_at(w, t0 + 1.0, busy)  # 1 s: the runtime's default deadline
    assert busy > 4.0 and busy < up < busy + 2.5
    down = (r.start > r.start[first]) & (r.start < up)
    assert down.sum() > 3 and np.all(r.cut[down] == w.edge_cut)
    np.testing.assert_allclose(r.total[down], w.edge_s[w.edge_cut])
    assert np.all(r.cut[r.start >= up] == w.manifest.cloud_only)
    # The best static cut in hindsight is priced the same way.
    means, _ = run_static(w, 120, seed=0)
    assert means[w.manifest.cloud_only] == pytest.approx(r.mean, rel=1e-9)


def test_a_harness_that_never_gives_up_waits_out_the_link():
    # Driven through the contract alone by a harness without a deadline, cloud-only waits out
    # the bad stretch instead of timing out; the static sweep prices the fixed cuts the same way.
    w = world(8, seed=5, uplink=steps([(0, 20e6), (1, 20e3), (4, 20e6)]), noise=0.0)
    waits = run_policy(w, "cloud", 120, seed=0, contract_only=True, harness_deadline_s=np.inf)
    gives_up = run_policy(w, "cloud", 120, seed=0, contract_only=True)
    assert waits.timed_out.sum() == 0 and gives_up.timed_out.sum() == 1
    assert waits.total.max() > 2.0 and np.all(waits.cut == w.manifest.cloud_only)
    means, _ = run_static(w, 120, seed=0, deadline_s=np.inf)
    assert means[w.manifest.cloud_only] == pytest.approx(waits.mean, rel=1e-9)


def test_through_the_contract_alone_the_oracle_faces_the_harness_deadline_too():
    # A 3.5 s edge on a 0.4 Mbit/s link: cloud-only's leg takes ~2.3 s, the best cut for a caller
    # that waits; a harness that gives up after 1 s reruns such a frame on the edge (4.5 s), and
    # its oracle, like the fixed cuts it is compared with, must not count on the wait (it did:
    # 0.64x the best fixed cut, and held-out seed 13 world 22 of the contract-only bench 2.03x
    # its oracle where the best fixed cut was 1.64x).
    w = table_world("slow_edge", [(110592, 0, 4e9), (73728, 3e8, 3.7e9), (8192, 3.6e9, 4e8), (0, 4e9, 0)],
                    edge_s=[0.0, 0.5, 3.2, 3.5], cloud_s=[0.2, 0.18, 0.02, 0.0], uplink=constant(0.4e6),
                    rtt_s=0.02, noise=0.0)
    assert int(np.argmin(w.expected(0.0))) in (0, 1)
    runs, summary = simulate(w, ["partnner"], frames=100, seed=0, contract_only=True, harness_deadline_s=1.0)
    assert set(runs["oracle"].cut.tolist()) <= {2, 3} and not runs["oracle"].timed_out.any()
    assert summary["policies"]["static"]["vs_oracle"] == pytest.approx(1.0, abs=0.01)
    # A harness that never gives up keeps the oracle that waits.
    runs, _ = simulate(w, ["partnner"], frames=100, seed=0, contract_only=True, harness_deadline_s=np.inf)
    assert set(runs["oracle"].cut.tolist()) <= {0, 1}


def test_a_link_that_never_answers_stays_down():
    w = world(4, seed=1, uplink=steps([(0, 20e6), (1, 0)]), noise=0.0)
    assert link_up_at(w, 1.5, 1.5) == np.inf
    assert link_up_at(w, 0.1, 0.1) == pytest.approx(0.15 + w.rtt_s, abs=1e-3)


def test_the_reply_is_the_manifests_outputs(tmp_path):
    from partnner_tf.manifest import manifest_from_dict

    m = synthetic_manifest(5, seed=0)
    raw = dict(m.raw, model=dict(m.raw.get("model", {}), outputs=[
        {"name": "boxes", "shape": [1, 180, 24], "dtype": "float32"}]))
    m2 = manifest_from_dict(raw)
    assert m2.result_bytes == 180 * 24 * 4
    w = make_world(synthetic_profile(m, seed=0), m2, down_bps=2e6)
    assert w.down_s == pytest.approx(180 * 24 * 4 * 8 / 2e6)
    assert make_world(synthetic_profile(m, seed=0), m).result_bytes == 4096


def test_a_hedged_edge_only_run_takes_hedge_slow_times_as_long():
    # The first frame is cloud-only with edge-only beside it; on a dead-slow link the edge wins.
    plain = world(8, seed=5, uplink=constant(0.1e6), noise=0.0)
    slowed = world(8, seed=5, uplink=constant(0.1e6), noise=0.0, hedge_slow=1.5)
    full = plain.edge_s[plain.edge_cut]
    assert run_policy(plain, "partnner", 2).total[0] == pytest.approx(full)
    assert run_policy(slowed, "partnner", 2).total[0] == pytest.approx(1.5 * full)


def test_schedules_and_steps_parsing():
    s = Schedule([(10, 3.0)], name="load")
    assert s(5) == 1.0 and s(10) == 3.0 and s.changes == [10.0]
    assert parse_steps("0:1,30:6", "x") == [(0.0, 1.0), (30.0, 6.0)]
    with pytest.raises(PartnnerError, match="t:value"):
        parse_steps("0-1", "--load-steps")
    with pytest.raises(PartnnerError, match="value > 0"):
        Schedule([(0, 0)], name="load")


def test_profiles_are_checked(tmp_path):
    m = synthetic_manifest(7, seed=1)
    prof = synthetic_profile(m, seed=1)
    assert len(prof["edge"]["cut_s"]) == 7 and prof["edge"]["cut_s"][0] == 0 and prof["cloud"]["cut_s"][-1] == 0
    assert np.all(np.diff(prof["edge"]["cut_s"]) > 0), "prefix time grows with the prefix"
    with pytest.raises(PartnnerError, match="partnner-profile"):
        load_profile({"format": "other"})
    bad = dict(prof, edge={"cut_s": [0, 1]})
    with pytest.raises(PartnnerError, match="equal"):
        load_profile(bad)
    p = tmp_path / "p.json"
    p.write_text("{")
    with pytest.raises(PartnnerError, match="cannot read profile"):
        load_profile(p)
    with pytest.raises(PartnnerError, match="at least 2 cuts"):
        synthetic_manifest(1)
    w = make_world(prof, edge_factor=3)
    assert w.edge_s[-1] == pytest.approx(3 * prof["edge"]["cut_s"][-1])
    assert w.profiling_s > 0


@needs_traces
def test_world_on_a_real_trace_with_outages():
    from partnner_tf.traces import load_trace

    w = world(30, seed=6, uplink=load_trace(TRACES / "ATT-LTE-driving-2016.up", scale=0.5))
    runs, summary = simulate(w, ["partnner", "neurosurgeon"], frames=400, seed=1)
    assert all(np.isfinite(r.total).all() for r in runs.values())
    assert summary["policies"]["partnner"]["vs_static"] < 1.15


def test_cli_sim_writes_csv_summary_and_plot(tmp_path):
    prof = tmp_path / "prof.json"
    res = CliRunner().invoke(cli, ["sim", "--synthetic", "12", "--save-profile", str(prof), "--bandwidth-steps",
                                   "0:20,5:1", "--load-steps", "0:1,8:6", "--edge-factor", "10", "--frames", "120",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "partnner" in res.output and "oracle" in res.output and "static" in res.output
    rows = list(csv.DictReader(open(tmp_path / "o" / "frames.csv")))
    assert {r["policy"] for r in rows} == {"oracle", "partnner", "edge", "cloud", "neurosurgeon", "static"}
    assert sum(r["policy"] == "partnner" for r in rows) == 120
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["policies"]["oracle"]["vs_oracle"] == 1.0
    assert (tmp_path / "o" / "plot.png").stat().st_size > 1000
    # The saved synthetic profile replays the same world.
    again = CliRunner().invoke(cli, ["sim", "--profile", str(prof), "--bandwidth-steps", "0:20,5:1", "--load-steps",
                                     "0:1,8:6", "--edge-factor", "10", "--frames", "120", "--policies", "partnner"])
    assert again.exit_code == 0, again.output
    line = next(li for li in res.output.splitlines() if li.startswith("partnner"))
    assert line in again.output


def test_cli_sim_contract_only_drives_the_policies_as_an_outside_harness():
    args = ["sim", "--synthetic", "12", "--bandwidth-steps", "0:20,5:1", "--edge-factor", "10", "--frames", "120",
            "--policies", "partnner,edge", "--no-plot"]
    runs = [CliRunner().invoke(cli, args + extra) for extra in ([], ["--contract-only"])]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    rows = [{li.split()[0]: li for li in r.output.splitlines() if li.split()} for r in runs]
    # Edge-only asks nothing of its caller; partnner's first frame is a hedged cloud-only
    # frame when it is offered hedging, edge-only when it is not.
    assert rows[0]["edge"] == rows[1]["edge"]
    assert rows[0]["partnner"] != rows[1]["partnner"]


@needs_traces
def test_cli_sim_on_a_trace(tmp_path):
    res = CliRunner().invoke(cli, ["sim", "--synthetic", "20", "--trace", str(TRACES / "Verizon-LTE-short.up"),
                                   "--trace-scale", "0.5", "--rtt-ms", "40", "--frames", "80", "--policies",
                                   "partnner,fixed:3", "--out", str(tmp_path), "--no-plot"])
    assert res.exit_code == 0, res.output
    assert "fixed:3" in res.output and not (tmp_path / "plot.png").exists()


@pytest.mark.parametrize("args, message", [
    ([], "give --profile"),
    (["--synthetic", "5", "--bandwidth", "3", "--bandwidth-steps", "0:1"], "one of --trace"),
    (["--synthetic", "5", "--policies", "bogus"], "unknown policy 'bogus'"),
    (["--synthetic", "5", "--edge-factor", "0"], "expected > 0"),
    (["--synthetic", "5", "--load-steps", "zero"], "t:value"),
    (["--synthetic", "5", "--stalls", "1.5"], "--stalls"),
])
def test_cli_sim_bad_arguments(args, message):
    res = CliRunner().invoke(cli, ["sim", *args])
    assert res.exit_code != 0
    assert message in (res.output + str(res.exception))


def test_cli_help():
    for cmd in (["sim", "--help"], ["profile", "--help"]):
        res = CliRunner().invoke(cli, cmd)
        assert res.exit_code == 0 and "Usage" in res.output
