"""Selector contract and every policy on synthetic worlds whose best cuts are known."""

import copy
from pathlib import Path

import numpy as np
import pytest

from partnner_tf.errors import PartnnerError
from partnner_tf.selector import POLICIES, Observation, make_selector
from partnner_tf.selector.estimators import GRACE
from partnner_tf.sim import frames_to_within, run_policy, run_static, world_profile
from partnner_tf.sim_world import make_world, manifest_from_table, synthetic_manifest
from partnner_tf.traces import load_trace
from tests.core.test_traces import TRACES, needs_traces
from tests.core.worlds import constant, steps, table_world, world


def test_make_selector_knows_every_policy_and_rejects_the_rest():
    m = synthetic_manifest(5)
    assert {"partnner", "edge", "cloud", "neurosurgeon"} <= set(POLICIES)
    assert make_selector("edge", m).choose() == m.edge_only == 4
    assert make_selector("cloud", m).choose() == m.cloud_only == 0
    assert make_selector("fixed:2", m).choose() == 2
    with pytest.raises(PartnnerError, match="unknown policy 'magic'.*partnner"):
        make_selector("magic", m)
    with pytest.raises(PartnnerError, match="fixed:<cut id>"):
        make_selector("fixed:x", m)
    with pytest.raises(PartnnerError, match="cuts 0..4"):
        make_selector("fixed:9", m)
    with pytest.raises(PartnnerError, match="expected a manifest"):
        make_selector("edge", [1, 2])
    with pytest.raises(PartnnerError, match="neurosurgeon needs profile"):
        make_selector("neurosurgeon", m)
    with pytest.raises(PartnnerError, match="has 5 cuts; the profile has 2"):
        make_selector("neurosurgeon", m, profile={"edge": {"cut_s": [0, 1]}, "cloud": {"cut_s": [1, 0]}})


def test_make_selector_accepts_a_manifest_dict():
    m = synthetic_manifest(4)
    assert make_selector("partnner", m.raw).choose() == 3


def test_partnner_starts_edge_only_and_learns_from_the_four_fields_alone():
    m = synthetic_manifest(20, seed=3)
    sel = make_selector("partnner", m)
    assert sel.choose() == m.edge_only
    assert sel.deadline_s(0) is None  # nothing known yet: the runtime's default
    sel.observe(Observation(cut=m.edge_only, edge_s=0.5))
    c = sel.choose()
    assert 0 <= c < 20
    sel.observe(Observation(cut=c, edge_s=0.1, transfer_s=0.05, cloud_s=0.01) if c != m.edge_only
                else Observation(cut=c, edge_s=0.5))
    d = sel.deadline_s(0)
    assert d is not None and 0.02 <= d < 10.0
    with pytest.raises(PartnnerError, match="cuts 0..19"):
        sel.observe(Observation(cut=25, edge_s=0.1))


@pytest.mark.parametrize("name,value", [("edge_s", float("nan")), ("edge_s", -0.1), ("transfer_s", float("inf")),
                                        ("cloud_s", "late"), ("edge_only_s", float("nan")), ("cut", 2.0), ("cut", True)])
def test_an_observation_that_is_not_a_time_is_refused_by_name(name, value):
    # One NaN edge time taken in had partnner choose cut 0 for good, without a word.
    fields = {"cut": 3, "edge_s": 0.1, name: value}
    with pytest.raises(PartnnerError, match=f"Observation.{name} must be"):
        Observation(**fields)
    Observation(cut=np.int64(3), edge_s=np.float32(0.1), transfer_s=0, cloud_s=0.0)  # numpy numbers are fine


def _settled(w, policy, frames=300, **kw):
    """The run, and the median over its last 100 frames of chosen-cut / best-cut latency (the
    median: an occasional link probe is the policy's job, not a failure to settle)."""
    run = run_policy(w, policy, frames, seed=1, **kw)
    return run, float(np.median(run.ratio[-100:]))


@pytest.mark.parametrize("n_cuts", [2, 30, 120])
@pytest.mark.parametrize("bps, expect", [(200e6, "remote"), (0.05e6, "edge")])
def test_partnner_finds_the_best_cut(n_cuts, bps, expect):
    w = world(n_cuts, seed=n_cuts, uplink=constant(bps))
    best = int(np.argmin(w.expected(0.0)))
    assert (best != w.edge_cut) == (expect == "remote"), "the world is built so that this is the best"
    run, late = _settled(w, "partnner")
    assert late < 1.05, f"partnner settles within 5% of the best cut ({late:.3f})"
    static = run_policy(w, f"fixed:{best}", 300, seed=1)
    # 300 frames include the cold start's exploration: over thousands (the benchmark) it is <5%.
    assert run.mean < 1.10 * static.mean


@pytest.mark.parametrize("policy", ["partnner", "neurosurgeon"])
def test_step_change_of_bandwidth_and_load_is_followed(policy):
    w = world(40, seed=5, cloud_speedup=0.2, uplink=steps([(0, 100e6), (20, 0.3e6), (40, 100e6)]),
              load=[(0, 1), (60, 30)])
    run = run_policy(w, policy, 700, seed=2)
    for tc in (20, 40, 60):
        i0 = int(np.searchsorted(run.start, tc))
        assert i0 < len(run.start) - 20, "the run reaches past every change"
        before = int(np.argmin(w.expected(tc - 2.0)))
        after = int(np.argmin(w.expected(tc + 1.0)))
        assert before != after, "each change moves the best cut"
        j = frames_to_within(run.ratio, i0)
        # Partnner sees a change on the link or cloud it uses at once. A link that comes back
        # while it runs edge-only is found by probes whose spacing grows while the link stays
        # bad (here ~50 frames), which bounds what probing costs on a link that never returns.
        bound = (10 if tc != 40 else 25) if policy == "partnner" else 60
        assert j is not None and j <= bound, f"change at {tc}s: {j} frames"


def test_outage_then_recovery():
    w = world(30, seed=7, uplink=steps([(0, 100e6), (10, 0), (25, 100e6)]))
    run = run_policy(w, "partnner", 600, seed=3)
    during = (run.start > 11) & (run.start < 24)
    after = run.start > 35
    assert during.any() and after.any()
    # Partitioned frames during the outage time out and fall back to the edge; the policy soon
    # stops trying and runs edge-only, then finds the link again once it is back.
    assert np.mean(run.cut[during] == w.edge_cut) > 0.7
    assert run.timed_out[during].sum() <= 6
    assert np.median(run.ratio[after]) < 1.05
    assert np.all(np.isfinite(run.total))


def test_through_the_contract_alone_probes_of_a_dead_link_are_spaced_by_what_they_cost():
    # An outside harness that calls only choose() and observe() runs no hedged probes and
    # applies its own 1 s deadline: a probe of a dead link costs ~20 edge-only frames here, so
    # probes every 4-64 frames cost 10% (1.104x edge-only before); spaced by what the last one
    # cost, 2% of the frames between them.
    dead = world(30, seed=7, uplink=constant(0.05e6), edge_factor=3.0)
    assert int(np.argmin(dead.expected(0.0))) == dead.edge_cut
    edge = run_policy(dead, "edge", 1000, seed=3)
    run = run_policy(dead, "partnner", 1000, seed=3, contract_only=True)
    assert run.mean < 1.05 * edge.mean
    # ... and a link that comes back is still found, later than with cheap probes.
    back = world(30, seed=7, uplink=steps([(0, 0.05e6), (20, 100e6)]), edge_factor=3.0)
    run = run_policy(back, "partnner", 1500, seed=3, contract_only=True)
    i0 = int(np.searchsorted(run.start, 20))
    j = frames_to_within(run.ratio, i0)
    assert j is not None and j < 0.8 * (len(run.start) - i0), j


def test_a_hedged_probe_that_loses_to_the_edge_costs_what_the_slowed_edge_only_run_adds():
    # DenseNet121's early cuts send 3.2 MB (5x the input) after a prefix of a few ms. A hedged
    # probe of one loses to the edge-only run beside it, which hedges slow; priced at its prefix
    # alone it looked cheaper than a cloud-only probe a few ms slower than edge-only, so after
    # the link got 10x faster the probes went to the 3.2 MB cut and timed out every ~25 frames,
    # and cloud-only, the best cut, was never looked at again (seed 4: 31 such probes, 1.053x the
    # best fixed cut; the world is benchmarks/results/selector_bench_profiles_unseen.md's tune
    # seed 13 world 21).
    profile = Path(__file__).resolve().parents[2] / "benchmarks" / "profiles_unseen" / "densenet121_224_all.json"
    w = make_world(profile, edge_factor=2.0, cloud_speedup=12.0, uplink=steps([(0, 9.5e6), (8.1, 100e6)]),
                   rtt_s=0.0085, hedge_slow=1.55, noise=0.06, load=[(0, 1), (9.8, 5.87), (14.3, 1)])
    fat = w.bytes > 4 * w.bytes[0]
    assert fat.sum() >= 8 and int(np.argmin(w.expected(20.0))) == 0
    for seed in range(8):
        run = run_policy(w, "partnner", 1000, seed=seed)
        means, _ = run_static(w, 1000, seed)
        lost = int((run.timed_out & fat[run.cut]).sum())
        assert lost <= 3 and run.mean < 1.03 * means.min(), (seed, lost, run.mean / means.min())


def test_edge_slowdown_moves_work_to_the_cloud():
    w = world(40, seed=9, uplink=constant(8e6), slow=[(0, 1), (30, 6)])
    before, after = int(np.argmin(w.expected(29))), int(np.argmin(w.expected(31)))
    assert before != after
    run = run_policy(w, "partnner", 600, seed=4)
    i0 = int(np.searchsorted(run.start, 30))
    j = frames_to_within(run.ratio, i0)
    assert j is not None and j <= 10, f"{j} frames to follow the slowdown"


def test_baselines_are_what_they_say():
    w = world(12, seed=2, uplink=constant(5e6))
    assert set(run_policy(w, "edge", 50).cut) == {w.edge_cut}
    assert set(run_policy(w, "cloud", 50).cut) == {0}
    assert set(run_policy(w, "fixed:5", 50).cut) == {5}
    ns = run_policy(w, "neurosurgeon", 200, profile=world_profile(w))
    assert np.mean(ns.ratio[-50:]) < 1.05  # a perfect profile and a steady link: it finds the best


def test_neurosurgeon_reads_a_profile_file(tmp_path):
    import json

    w = world(8, seed=1)
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(world_profile(w)))
    sel = make_selector("neurosurgeon", w.manifest, profile=str(p))
    assert 0 <= sel.choose() < 8
    with pytest.raises(PartnnerError, match="cannot read profile"):
        make_selector("neurosurgeon", w.manifest, profile=str(tmp_path / "missing.json"))


def test_cost_curve_ignores_bimodal_noise_but_follows_a_real_slowdown():
    """A CPU-quota-throttled board runs a short prefix either at full speed or throttled: such
    flips must not move the shared level, while a real 3x slowdown on every frame must."""
    from partnner_tf.selector.estimators import CostCurve

    curve = CostCurve([0.0, 50.0, 300.0], zero_at=0)
    curve.observe(2, 0.150)
    rng = np.random.default_rng(0)
    for _ in range(60):
        curve.observe(1, 0.003 if rng.random() < 0.5 else 0.080)
    est, _ = curve.predict(1e-9)
    assert 0.1 < est[2] < 0.3, est  # edge-only stays near what it was seen to cost
    for _ in range(4):
        curve.observe(2, 0.450)
    est, _ = curve.predict(1e-9)
    assert 0.35 < est[2] < 0.6, est


def test_one_stall_far_beyond_a_cuts_usual_range_moves_its_price_little():
    """On the testbed (MobileNetV2, Pi 3B, LTE) one edge-only frame of 213 ms among 45-95 ms ones
    put edge-only at 95 ms, partnner left it for a cut of 87 ms, and ran that cut for 51 frames:
    edge-only ran no more, so nothing brought its price back. A stall counts as at most BAND
    beyond the range the cut has shown."""
    from partnner_tf.selector.estimators import BAND, CostCurve

    curve = CostCurve([0.0, 50.0, 300.0], zero_at=0)
    rng = np.random.default_rng(4)
    costs = rng.uniform(0.045, 0.085, 30)
    for cost in costs:
        curve.observe(2, cost)
    before = curve.predict(1e-9)[0][2]
    curve.observe(2, 0.213)
    curve.observe(2, 0.065)
    after = curve.predict(1e-9)[0][2]
    assert after < before + 0.2 * (0.085 * BAND - before) + 1e-3, (before, after)
    assert after < 1.15 * costs.mean(), (before, after)
    # A cut that keeps showing such costs is not held down for long: each one widens the range.
    for _ in range(12):
        curve.observe(2, 0.213)
        curve.observe(2, 0.065)
    assert curve.predict(1e-9)[0][2] > 1.3 * costs.mean()


def test_a_stall_in_a_young_cuts_few_costs_does_not_price_it_out_for_good():
    """On the testbed (MobileNetV2, Pi 3B, LTE) edge-only was timed at 58 ms, then stalled at
    196: its mean of two, 127 ms, lost to a 90 ms cut, which partnner then ran for 77 frames,
    and edge-only, not run again, kept its price. A young cut's optimistic estimate is the
    lowest cost it has shown when its costs spread that far."""
    w = table_world("stall", [(110592, 0, 58_000_000), (9216, 24_000_000, 35_000_000), (0, 58_000_000, 0)],
                    [0.0, 0.030, 0.065], [0.008, 0.007, 0.0], uplink=constant(1.8e6), rtt_s=0.04, noise=0.0)
    x = w.expected(0.0)
    assert int(np.argmin(x)) == 2 and x[1] < 0.127
    sel = make_selector("partnner", w.manifest)

    def frame(c, edge_s=None):
        e, n, k = (float(v[0]) for v in w.components(0.0, [c]))
        sel.observe(Observation(cut=c, edge_s=e if edge_s is None else edge_s, transfer_s=n, cloud_s=k))

    frame(2, 0.058)
    frame(1)
    frame(2, 0.196)
    assert sel.estimates()[0][2] > x[1]  # the stall prices edge-only above cut 1
    ran = []
    for _ in range(60):
        ran.append(sel.choose())
        frame(ran[-1])
    assert np.mean([x[c] for c in ran]) < 1.05 * x[2], ran


def test_a_change_seen_by_a_cut_with_few_costs_moves_the_level():
    """For HISTORY frames after a level jump every cut is young. A load step that only such a cut
    sees must still move the level, which prices every other cut, and not vanish into that
    cut's own anchor (the cloud stayed priced 8x too high for 600 frames that way)."""
    from partnner_tf.selector.estimators import HISTORY, CostCurve

    curve = CostCurve([0.0, 50.0, 300.0], zero_at=2)
    for _ in range(HISTORY):
        curve.observe(1, 0.400)
    for _ in range(4):
        curve.observe(0, 0.800)  # young: 4 costs, fewer than HISTORY
    for _ in range(HISTORY):
        curve.observe(0, 0.100)  # the load falls 8x
    est, _ = curve.predict(1e-9)
    assert est[0] == pytest.approx(0.100, rel=0.15)
    assert est[1] == pytest.approx(0.050, rel=0.3), est  # priced by the new level, unseen since


@pytest.mark.parametrize("slow, after, level", [((0.040, 0.050), 0.019, 1.0), ((0.058, 0.060), 0.040, 2.1)])
def test_a_jump_read_off_a_stall_is_taken_back_by_the_costs_after_it(slow, after, level):
    """On the testbed (EfficientNetB0, Pi 3B, WiFi) two cloud-only frames at 40 and 50 ms among
    ~28 ms ones lifted the cloud's level 1.6x; cut 3, which ran next at its usual ~19 ms,
    absorbed that into its own anchor, and cloud-only stayed priced 1.6x too high for the 41
    frames left (1.07x cloud-only). Costs after a jump that agree with the level before take it
    back; costs that agree with the jump (a real load step) leave it."""
    from partnner_tf.selector.estimators import CostCurve

    curve = CostCurve([100.0, 40.0, 20.0, 0.0], zero_at=3)
    rng = np.random.default_rng(2)
    for i in range(30):
        c = 1 if i % 8 == 0 else 0
        curve.observe(c, (0.019 if c else 0.028) * float(rng.uniform(0.85, 1.15)))
    for cost in slow:
        curve.observe(0, cost)
    assert curve.level > 1.3  # read as the cloud slowing down
    curve.observe(2, 0.012)  # first seen after the jump: priced by the level now, either way
    for _ in range(4):
        curve.observe(1, after)
    est, _ = curve.predict(1e-9)
    assert est[0] == pytest.approx(0.028 * level, rel=0.15), est
    assert est[2] == pytest.approx(0.012, rel=0.05), est
    assert curve.undone == (level == 1.0)


def test_stalls_of_the_host_do_not_price_the_best_cut_out():
    """The simulator's stalls (1-3 frames of the edge or the cloud at 1.4-2x, as a shared host
    has them) in a near-tie like the testbed's EfficientNetB0 / Pi 3B / WiFi: cloud-only 4% ahead
    of a cut with a small suffix. Before jumps could be taken back, a stall of cloud-only lifted
    the cloud's level, and the other cut ran for a hundred frames or more: 1.028 of the best
    static cut over these seeds, 1.048 at worst (1.007 and 1.013 since)."""
    from partnner_tf.sim import run_static

    cuts = [(110592, 0, 400_000_000), (5120, 40_000_000, 360_000_000), (0, 400_000_000, 0)]
    ratios = []
    for seed in range(8):
        w = table_world("near-tie", cuts, [0.0, 0.038, 0.120], [0.028, 0.019, 0.0], uplink=constant(32e6),
                        rtt_s=0.002, noise=0.05, stalls=0.02)
        static, _ = run_static(w, 300, seed)
        assert int(np.argmin(static)) == 0 and static[1] > 1.03 * static[0]
        ratios.append(run_policy(w, "partnner", 300, seed=seed).mean / static.min())
    assert np.exp(np.mean(np.log(ratios))) < 1.015 and max(ratios) < 1.03, ratios


@pytest.mark.parametrize("seed,edge_factor", [(2, 3.0), (10, 2.0)])
def test_a_stall_of_three_edge_only_frames_does_not_price_edge_only_out_for_good(seed, edge_factor):
    """Edge-only is best; at frame 200 the host stalls it 1.8x for three frames. Two make a level
    jump; the third agrees with it, and edge-only, just seen, was no longer in doubt: partnner
    ran the cuts it explored next, first seen after the jump and so unable to take it back, and
    never looked at edge-only again (1.207 and 1.469 of the best static cut here; in the selector
    benchmark with stalls, a held-out world at 1.239). Seen within GRACE costs of the jump, a cut
    priced before it stays in doubt."""
    from partnner_tf.sim import run_static

    plain = world(20, seed=seed, edge_factor=edge_factor, uplink=constant(30e6), noise=0.03)
    static, _ = run_static(plain, 50, 0)
    assert int(np.argmin(static)) == plain.edge_cut
    frame = static[plain.edge_cut]
    stall = [(0, 1.0), (200.5 * frame, 1.8), (200.5 * frame + 2.9 * 1.8 * frame, 1.0)]
    w = world(20, seed=seed, edge_factor=edge_factor, uplink=constant(30e6), noise=0.03, slow=stall)
    static, _ = run_static(w, 600, 0)
    run = run_policy(w, "partnner", 600, seed=0)
    assert run.mean < 1.05 * static.min(), (run.mean / static.min(), np.bincount(run.cut[250:]).nonzero())


def test_a_cut_not_seen_since_the_level_rose_may_still_cost_what_it_did():
    """A board whose CPU quota makes a prefix's time bimodal can fake a slowdown: a run of slow
    frames on one cut moves the shared level, and edge-only, not run since, is priced by it (a
    demo run priced it at 224 ms against 140 ms true, and ran a slower cut for 80 frames). Until
    it is seen again, its optimistic estimate keeps its price from before the jump."""
    w = table_world("bimodal", [(602112, 0, 300_000_000), (100352, 100_000_000, 200_000_000),
                                (0, 300_000_000, 0)], [0.0, 0.06, 0.14], [0.05, 0.01, 0.0])
    sel = make_selector("partnner", w.manifest)
    sel.observe(Observation(cut=2, edge_s=0.140))
    for i in range(40):
        sel.observe(Observation(cut=1, edge_s=0.054 if i % 2 else 0.080, transfer_s=0.08, cloud_s=0.01))
    for _ in range(3):
        sel.observe(Observation(cut=1, edge_s=0.150, transfer_s=0.08, cloud_s=0.01))
    assert sel.edge.level > 1.5  # the run moved the level
    est, opt = sel.estimates()
    assert est[2] > 0.2 and opt[2] < 1.1 * 0.140, (est[2], opt[2])
    for _ in range(2):  # seen again at its own cost: the jump is taken back
        sel.observe(Observation(cut=2, edge_s=0.140))
    est, opt = sel.estimates()
    assert est[2] == pytest.approx(0.140, rel=0.05) and opt[2] == pytest.approx(est[2], rel=0.05)


def test_a_cut_whose_own_slow_frames_raised_the_level_may_still_cost_what_it_did():
    """Two edge-only frames 1.4x slow (host noise on a dilated Pi 3B) read as the board slowing
    1.4x; partnner then ran a partitioned cut at 96 ms where edge-only took ~70, and as edge-only
    was priced by the new level it was never run again (the CI matrix missed twice, 1.19 and
    1.34x edge-only). The cut the jump was read off is in doubt as well as those not seen: its
    optimistic estimate keeps its price from before the jump until it is seen again."""
    w = table_world("noisy", [(150528, 0, 300_000_000), (8192, 30_000_000, 270_000_000),
                              (0, 300_000_000, 0)], [0.0, 0.010, 0.070], [0.010, 0.009, 0.0])
    sel = make_selector("partnner", w.manifest)
    rng = np.random.default_rng(5)
    sel.observe(Observation(cut=1, edge_s=0.010, transfer_s=0.072, cloud_s=0.009))
    for _ in range(30):
        sel.observe(Observation(cut=2, edge_s=0.070 * float(rng.uniform(0.9, 1.1))))
    for stall in (0.097, 0.095):
        sel.observe(Observation(cut=2, edge_s=stall))
    assert sel.edge.level > 1.3  # read as the board slowing down
    est, opt = sel.estimates()
    assert est[2] > 0.09 and opt[2] < 1.1 * 0.070, (est[2], opt[2])
    assert est[1] < est[2]  # cut 1 now looks best: edge-only needs its doubt to be looked at
    slow = copy.deepcopy(sel)
    for _ in range(2):  # seen again at its own cost: the jump is taken back
        sel.observe(Observation(cut=2, edge_s=0.071))
    est, opt = sel.estimates()
    assert est[2] == pytest.approx(0.071, rel=0.05) and opt[2] == pytest.approx(est[2], rel=0.05)
    # The board did slow down: seen at the new level past the costs a stall may last, no doubt left.
    for _ in range(GRACE + 1):
        slow.observe(Observation(cut=2, edge_s=0.096))
    est, opt = slow.estimates()
    assert est[2] > 0.09 and opt[2] == pytest.approx(est[2], rel=0.05)


def test_a_load_step_that_ends_while_edge_only_is_noticed():
    """The cloud's load rises 9x, which makes edge-only best; 30 s later it falls back. Edge-only
    frames never see the cloud, so its load, like the link, must grow stale: a probe goes, and
    what it shows replaces the old level. Before, the cloud stayed priced 9x too high, nothing
    looked worth probing, and the selector stayed edge-only for good (1182 frames of a held-out
    world: ResNet50 96x96, whose cuts this copies)."""
    from partnner_tf.sim import recovery_frames

    cuts = [(110592, 0, 1_000_000_000), (73728, 800_000_000, 200_000_000),
            (8192, 900_000_000, 100_000_000), (0, 1_000_000_000, 0)]
    w = table_world("r50", cuts, [0.0, 0.300, 0.320, 0.365], [0.155, 0.040, 0.002, 0.0],
                    uplink=constant(20e6), rtt_s=0.07, load=[(0, 1), (30, 9), (60, 1)], hedge_slow=1.36)
    assert [int(np.argmin(w.expected(t))) for t in (0, 45)] == [0, 3]
    run = run_policy(w, "partnner", 600, seed=3)
    assert max(recovery_frames(run, w.changes)) <= 30, recovery_frames(run, w.changes)
    assert np.mean(run.cut[-100:] == 0) > 0.9


def test_a_payload_far_bigger_than_any_sent_lately_is_worth_a_look():
    """Only an 8 KB payload has crossed the link for minutes: its transfers are mostly rtt, so the
    per-byte cost learnt from them says little about a 600 KB one. When the link gets 16x faster,
    cloud-only (600 KB) becomes best by 2x; its optimism must grow with how far its payload is
    from those sent (it was a flat 1.5x, and the selector stayed on the 8 KB cut for good: a
    held-out world, ResNet50 224x224, 1.135x the best static cut). Before the step edge-only
    is best: its hedged time (1.8x) is checked by a plain frame, and the probes from edge-only,
    1.8x each, find the faster link within 18 frames (10 when the 8 KB cut, 1.16x edge-only's
    time, ran up to the step because the hedged time was never checked)."""
    from partnner_tf.sim import recovery_frames

    cuts = [(602112, 0, 4_000_000_000), (8192, 3_990_000_000, 10_000_000), (0, 4_000_000_000, 0)]
    w = table_world("tiny-tail", cuts, [0.0, 1.15, 1.10], [0.25, 0.001, 0.0], rtt_s=0.077, hedge_slow=1.8,
                    uplink=steps([(0, 1.5e6), (100, 24e6)]))
    assert [int(np.argmin(w.expected(t))) for t in (0, 150)] == [2, 0]
    run = run_policy(w, "partnner", 400, seed=17)
    before = run.cut[20:int(np.searchsorted(run.start, 100))]
    assert np.mean(before == 2) > 0.85, before
    assert max(recovery_frames(run, w.changes)) <= 18, recovery_frames(run, w.changes)
    assert np.mean(run.cut[-100:] == 0) > 0.9


def _recovery_after_bad_link(bad_bps, seed, hedged):
    w = world(30, seed=7, uplink=steps([(0, bad_bps), (60, 100e6)]))
    sel = make_selector("partnner", w.manifest)
    if not hedged:
        sel.hedge = lambda cut: False  # a caller that never hedges: probes back off
        sel.offer_hedge = lambda: None
    run = run_policy(w, "partnner", 900, seed=seed, selector=sel)
    j = frames_to_within(run.ratio, int(np.searchsorted(run.start, 60)))
    return w, run, (len(run.ratio) if j is None else j)


def test_a_long_bad_link_costs_little_and_hedged_probes_find_its_recovery_sooner():
    # 60 s of a link too slow to use, then a fast one. Hedged probes (the simulator, like the
    # runtime, runs the edge-only model alongside them) cost only their prefix, so they go
    # every few frames; probes go when the link's growing staleness makes a cut look promising
    # (docs/selector.md), so how soon depends on how bad the link was.
    hedged, unhedged = [], []
    for bad_bps in (0.5e6, 1e6, 2e6):
        edge = run_policy(world(30, seed=7, uplink=steps([(0, bad_bps), (60, 100e6)])), "edge", 900, seed=5)
        for seed in (5, 6, 7):
            w, run, frames = _recovery_after_bad_link(bad_bps, seed, hedged=True)
            hedged.append(frames)
            unhedged.append(_recovery_after_bad_link(bad_bps, seed, hedged=False)[2])
            if seed == 5:
                settled = (run.start > 10) & (run.start < 58)  # after the first explorations
                assert np.mean(run.cut[settled] == w.edge_cut) > 0.8
                same = (edge.start > 10) & (edge.start < 58)
                assert run.total[settled].mean() <= 1.05 * edge.total[same].mean()  # issue 5: 5% over the best static
    assert max(hedged) <= 30, hedged
    assert sum(hedged) < 0.8 * sum(unhedged), (hedged, unhedged)


def test_a_debt_run_up_probing_a_bad_link_is_forgiven_once_the_link_changes():
    """Two minutes of a link too slow to use: the hedged probes' cost (their edge-only run slowed
    1.5x) runs the exploration budget 4-6 edge-only frames' worth into debt, 20-30 frames once the
    link is fast. Once a probe finds it fast, that debt must not keep the selector from exploring
    the new conditions."""
    for bad_bps in (0.2e6, 1e6):
        w = world(30, seed=7, uplink=steps([(0, bad_bps), (120, 100e6)]), hedge_slow=1.5)
        sel = make_selector("partnner", w.manifest)
        tokens, observe = [], sel.observe
        sel.observe = lambda obs: (observe(obs), tokens.append(sel.tokens / sel.estimates()[0].min()))
        run = run_policy(w, "partnner", 600, seed=5, selector=sel)
        i0 = int(np.searchsorted(run.start, 120))
        assert min(tokens[:i0]) < -3  # the debt was there
        j = frames_to_within(run.ratio, i0)
        assert j is not None and min(tokens[i0 + j + 5:]) > -1.0, (j, tokens[i0 + j:i0 + j + 10])


def test_probes_from_edge_only_are_hedged_and_a_lost_hedge_teaches_the_edge_cost():
    w = world(12, seed=2, uplink=constant(0.05e6))
    assert make_selector("edge", w.manifest).hedge(w.edge_cut) is False
    sel = make_selector("partnner", w.manifest)
    seen = []
    for _ in range(200):
        c = sel.choose()
        h = sel.hedge(c)
        seen.append((c, h))
        if c == w.edge_cut:
            sel.observe(Observation(cut=c, edge_s=0.2))
        elif h:  # the edge-only run beside it finished first
            sel.observe(Observation(cut=c, edge_s=0.0, transfer_s=0.2, timed_out=True, edge_only_s=0.2))
        else:
            sel.observe(Observation(cut=c, edge_s=0.05, transfer_s=5.0, cloud_s=0.01))
    assert not any(h for c, h in seen if c == w.edge_cut)
    hedged = [i for i, (c, h) in enumerate(seen) if h]
    assert hedged, "a bad link is probed while edge-only"
    # A hedged run shares the edge's CPU with the request: once plain edge-only frames have
    # timed the whole model, the hedges' times do not move it.
    assert sel.edge.count[w.edge_cut] == sum(1 for c, _ in seen if c == w.edge_cut)


def _run_with_slow_hedges(sel, w, frames, hedge_factor):
    """Drive ``sel`` in a noise-free world whose hedged edge-only runs take ``hedge_factor`` times
    the edge-only time (they share the CPU with the cloud request). Returns the cuts run and
    the cuts chosen."""
    E, full, ran, chosen, news = w.edge_cut, float(w.edge_s[w.edge_cut]), [], [], None
    for _ in range(frames):
        c = sel.choose()
        chosen.append(c)
        hedged = sel.hedge(c)
        e, n, k = (float(v[0]) for v in w.components(0.0, [c]))
        if c == E:
            obs = Observation(cut=E, edge_s=full, edge_only_s=news)
        elif hedged and n + k > hedge_factor * full:  # the edge-only run beside it won
            obs = Observation(cut=c, edge_s=e, transfer_s=hedge_factor * full, timed_out=True,
                              edge_only_s=hedge_factor * full)
            ran.append(E)
            sel.observe(obs)
            continue
        else:
            obs = Observation(cut=c, edge_s=e, transfer_s=n, cloud_s=k, edge_only_s=news)
        news = hedge_factor * full if hedged else None
        ran.append(c)
        sel.observe(obs)
    return ran, chosen


def test_an_edge_only_time_known_from_a_hedge_alone_is_checked_by_one_plain_frame():
    # Edge-only is the best cut (388 ms), cut 8 the next (440 ms). The hedged first frame timed
    # edge-only at 1.6x, as a hedge sharing a slow board's CPU with its request did on the
    # testbed: one plain edge-only frame early finds out, and replaces the hedge's figure.
    w = world(12, seed=2, uplink=constant(2e6), noise=0.0)
    assert int(np.argmin(w.expected(0.0))) == w.edge_cut
    sel = make_selector("partnner", w.manifest)
    sel.offer_hedge()
    ran, _ = _run_with_slow_hedges(sel, w, 40, 1.6)
    assert ran[-20:] == [w.edge_cut] * 20, ran
    assert sel.edge.predict(1.0)[0][w.edge_cut] == pytest.approx(w.edge_s[w.edge_cut], rel=0.05)


@pytest.mark.parametrize("hedge_factor", [1.9, 3.0])
def test_an_edge_only_time_from_a_much_slower_hedge_is_still_checked(hedge_factor):
    # Edge-only (best) is 1.22x faster than the next cut. In CI runs of the testbed, hedges the
    # cloud beat took ~1.9-3x (inferred from when partnner checked them): a fixed doubt of 1.5
    # never made edge-only worth a plain frame, and partnner ran the next cut for good (1.16x
    # the best at 1.9x, 1.24x at 3x). The doubt grows while that frame has not come.
    w = world(12, seed=0, uplink=constant(2e6), noise=0.0)
    x = w.expected(0.0)
    assert int(np.argmin(x)) == w.edge_cut and np.sort(x)[1] > 1.2 * x[w.edge_cut]
    sel = make_selector("partnner", w.manifest)
    sel.offer_hedge()
    ran, _ = _run_with_slow_hedges(sel, w, 200, hedge_factor)
    assert np.mean([x[c] for c in ran]) < 1.06 * x[w.edge_cut], ran
    assert ran[-50:].count(w.edge_cut) >= 45, ran


def test_the_first_transfer_after_an_edge_only_stretch_replaces_the_link_estimate():
    from partnner_tf.selector.estimators import STALE, LinkEstimator

    link = LinkEstimator(bps=1e6, rtt_s=0.01)
    for _ in range(10):
        link.observe(100_000, 0.81)  # ~1 Mbit/s
    fast = 0.01 + 100_000 * 8 / 50e6
    link.observe(100_000, fast)  # one fast transfer while in use: a burst, mostly ignored
    assert link.predict(100_000) > 3 * fast
    for _ in range(STALE):
        link.tick()  # edge-only frames: the link is not seen
    link.observe(100_000, fast)
    assert link.predict(100_000) == pytest.approx(fast, rel=0.05)


def test_a_link_unseen_for_hours_does_not_overflow_the_staleness():
    # A caller that only ever runs edge-only frames after one transfer (its probes refused):
    # 2 ** (frames / 8) overflowed a float after 8,192 frames.
    m = synthetic_manifest(6, seed=2)
    sel = make_selector("partnner", m)
    sel.observe(Observation(cut=m.edge_only, edge_s=0.02))
    sel.observe(Observation(cut=2, edge_s=0.005, transfer_s=0.5, cloud_s=0.001, bytes_sent=m.cuts[2].boundary_bytes))
    for _ in range(9000):
        sel.choose()
        sel.observe(Observation(cut=m.edge_only, edge_s=0.02))
    assert sel.choose() in range(len(m.cuts))


def test_the_start_allowance_fades_when_the_start_needs_no_exploring():
    # A link far too slow to use: nothing is worth exploring at the start. The allowance given
    # for the first frames must not be spent in a burst dozens of frames later.
    w = world(12, seed=2, uplink=constant(0.05e6))
    sel = make_selector("partnner", w.manifest)
    run_policy(w, "partnner", 80, seed=1, selector=sel)
    est, _ = sel.estimates()
    assert sel.tokens <= 2.0 * est.min() + 1e-9


def test_an_observed_cut_keeps_its_own_cost_where_costs_are_not_monotone_in_macs():
    """Real suffixes are not monotone in MACs (an elementwise layer, an unfused pad): a cut seen
    to be cheap must not be priced like a neighbour with fewer MACs that cost more."""
    from partnner_tf.selector.estimators import CostCurve

    curve = CostCurve([0.0, 10.0, 20.0, 30.0], zero_at=0)
    curve.observe(1, 0.050)
    curve.observe(2, 0.020)
    est, low = curve.predict(1e-9)
    assert est[2] == pytest.approx(0.020) and est[1] == pytest.approx(0.050)
    assert low[3] >= 0.050  # unobserved cuts keep the monotone bound


def test_a_prefix_of_no_macs_is_still_timed():
    """A cut right after a pad or a rescaling has no prefix MACs but costs edge time: partnner
    must learn that cost and not settle on it as if it were free (cloud-only is best here)."""
    cuts = [(602112, 0, 4_000_000_000), (602112, 0, 4_000_000_000), (802816, 100_000_000, 3_900_000_000),
            (0, 4_000_000_000, 0)]
    # cut 1: the pad takes 30 ms on the edge and saves the cloud 10 ms
    w = table_world("padded", cuts, [0.0, 0.030, 0.060, 2.0], [0.050, 0.040, 0.040, 0.0],
                    uplink=constant(400e6), rtt_s=0.01, noise=0.03)
    assert int(np.argmin(w.expected(0.0))) == 0
    sel = make_selector("partnner", w.manifest)
    run = run_policy(w, "partnner", 200, seed=1, selector=sel)
    if 1 in run.cut:
        assert sel.edge.count[1] > 0, "cut 1's prefix time was seen and learnt"
    assert np.mean(run.cut[-100:] == 0) > 0.9, np.bincount(run.cut[-100:])


def test_the_rtt_is_not_refitted_across_a_bandwidth_step_from_one_payload_size():
    """Explorations of two payload sizes, then a settled stretch of one size, then a step of
    bandwidth: a line through the old sizes and the new times would put the rtt near zero and
    price bigger payloads far too high (seen in the selector bench, MobileNetV2 96x96)."""
    from partnner_tf.selector.estimators import LinkEstimator

    link, rtt = LinkEstimator(), 0.010
    for i in range(10):
        b = 9216 if i % 2 else 5760
        link.observe(b, rtt + b * 8 / 10e6)
    for _ in range(20):
        link.observe(5760, rtt + 5760 * 8 / 10e6)
    for _ in range(40):
        link.observe(5760, rtt + 5760 * 8 / 100e6)
    assert link.rtt > 0.6 * rtt, link.rtt
    true = rtt + 18432 * 8 / 100e6
    assert float(link.predict(18432)) < 1.5 * true, (float(link.predict(18432)), true)


def test_a_step_of_bandwidth_on_rtt_dominated_transfers_is_a_change_not_a_smaller_rtt():
    """A link 12x faster under an rtt-dominated 208 KB payload while the window still holds a
    602 KB transfer: the rtt must stay near its 54 ms. Fitted on each fast outlier at once, the
    line through them and the old 602 KB transfer pulled it to 33 ms here, pricing the 602 KB
    payload far over what it takes (in held-out seed 101's synthetic 20-cut world of the
    selector bench, to 22 ms, before the third fast transfer could show a shift: 68 frames to
    recover)."""
    from partnner_tf.selector.estimators import SUSTAIN, LinkEstimator

    link, rtt, small, big = LinkEstimator(), 0.054, 208_278, 602_112
    slow, fast = 8 / 40e6, 8 / 500e6  # s/byte: 40 Mbit/s, then 500
    for i in range(12):
        link.observe(big if i == 9 else small, rtt + (big if i == 9 else small) * slow)
    before = link.changes
    for _ in range(SUSTAIN):
        link.observe(small, rtt + small * fast)
    assert link.changes > before
    assert link.rtt > 0.8 * rtt, link.rtt
    true = rtt + big * fast
    assert float(link.predict(big)) < 1.35 * true, (float(link.predict(big)), true)


def test_hedged_probes_are_spaced_by_what_their_slowed_edge_only_run_costs():
    # Edge-only is best (388 ms; cut 8: 440 ms): partnner stays there and probes the link. A
    # hedged probe's edge-only run shares the CPU with the request; when that makes it 1.6x
    # slower, the extra it costs is held to 2% of the frames between probes (30 frames apart), or
    # 3% of what those frames would save were the link as good as optimism says, which grows
    # while the link goes unseen.
    w = world(12, seed=2, uplink=constant(2e6), noise=0.0)

    def probes(factor):
        sel = make_selector("partnner", w.manifest)
        sel.offer_hedge()
        _, chosen = _run_with_slow_hedges(sel, w, 400, factor)
        return sel, sum(1 for c in chosen[50:] if c != w.edge_cut)

    sel1, unbiased = probes(1.0)
    sel16, biased = probes(1.6)
    assert sel1.hedge_slow == pytest.approx(1.0)
    assert sel16.hedge_slow == pytest.approx(1.6, rel=0.05)
    assert 0 < biased <= 350 / 20 and biased < 0.6 * unbiased, (biased, unbiased)


def _convex_world(noise):
    """Cut 3 (114 ms) beats cut 2 (132 ms), but the MAC curve prices its prefix at ~200 ms: the
    tail between it and edge-only (410 ms) costs 40x per MAC what the head did."""
    cuts = [(602112, 0, 4e9), (400000, 1e9, 3e9), (150000, 2e9, 2e9), (140000, 3e9, 1e9), (0, 4e9, 0)]
    return table_world("convex", cuts, [0.0, 0.005, 0.010, 0.012, 0.410], [0.080, 0.070, 0.050, 0.034, 0.0],
                       uplink=constant(20e6), rtt_s=0.01, noise=noise)


def test_an_unobserved_cut_priced_far_above_its_lower_bound_gets_a_long_shot():
    # Its optimistic estimate (three quarters of the way to the bound) does not beat cut 2: once
    # nothing else looks promising and the budget has sat full, it is tried on its bound alone.
    w = _convex_world(noise=0.03)
    assert int(np.argmin(w.expected(0.0))) == 3
    run = run_policy(w, "partnner", 80, seed=1)
    assert np.mean(run.cut[40:] == 3) > 0.9, np.bincount(run.cut[40:])


def test_a_long_shot_looks_past_a_lower_bound_that_seen_costs_show_to_be_loose():
    """Measured prefixes are not monotone in MACs (ResNet50 224x224: a prefix with 9% more MACs than
    another runs 35% faster). Here cut 1's prefix costs 300 ms and cut 2's, with more MACs, 200:
    cut 3's bound from cut 1 (300 ms) hides that it runs in 120 and, the cloud loaded 8x, is the
    best cut (0.29 s against cloud-only's 0.38). Long shots loosen the edge's bounds by how far
    under them the cuts seen have come (up to 1.35x), and find it; before, partnner stayed on
    cloud-only, 1.29x the best, for good (as a held-out ResNet50 world did in 4 of 8 seeds)."""
    cuts = [(600000, 0, 4e9), (300000, 1.0e9, 3.0e9), (500000, 1.2e9, 2.8e9), (40000, 2.0e9, 2.0e9),
            (20000, 3.0e9, 1.0e9), (0, 4e9, 0)]
    edge = np.array([0.0, 0.300, 0.200, 0.120, 0.400, 0.600])
    cloud = 8 * np.array([0.040, 0.030, 0.028, 0.020, 0.010, 0.0])
    link = np.array([0.01 + b * 8 / 100e6 if b else 0.0 for b, _, _ in cuts])
    assert int(np.argmin(edge + link + cloud)) == 3
    table = [{"boundary_bytes": b, "prefix_macs": p, "suffix_macs": s} for b, p, s in cuts]
    sel = make_selector("partnner", manifest_from_table("nonmono", table))
    rng = np.random.default_rng(0)

    def frame(c):
        z = rng.normal(1.0, 0.02, 3)
        sel.observe(Observation(cut=c, edge_s=edge[c] * z[0], transfer_s=link[c] * z[1], cloud_s=cloud[c] * z[2]))

    for c in [5, 0, 1, 2, 4] * 3:  # what the explorations saw: every cut but 3
        frame(c)
    chosen = []
    for _ in range(300):
        chosen.append(sel.choose())
        frame(chosen[-1])
    assert np.mean(np.array(chosen[-100:]) == 3) > 0.9, np.bincount(chosen)


def _true_frame(sel, w):
    c = sel.choose()
    e, n, k = (float(v[0]) for v in w.components(0.0, [c]))
    sel.observe(Observation(cut=c, edge_s=e, transfer_s=n, cloud_s=k))


def test_no_cut_is_explored_while_a_change_may_be_under_way():
    # A cut first seen while a change is pending would be priced by the level about to move: a
    # cloud that got 8x faster made a new cut look 8x cheaper than all the others, and partnner
    # stayed on it, at 3.8x the best, for 500 frames of a held-out world.
    import copy

    w = _convex_world(noise=0.0)
    sel = make_selector("partnner", w.manifest)
    for _ in range(200):
        trial = copy.deepcopy(sel)
        trial.choose()
        if trial.exploring is not None and sel.cloud.count[sel.current] >= 8:
            break
        _true_frame(sel, w)
    else:
        pytest.fail("partnner never explored from an established cut")
    current = sel.current
    e, n, k = (float(v[0]) for v in w.components(0.0, [current]))
    sel.observe(Observation(cut=current, edge_s=e, transfer_s=n, cloud_s=0.2 * k))  # 5x faster?
    assert sel.cloud.outliers == 1
    assert sel.choose() == current and sel.exploring is None
    sel.observe(Observation(cut=current, edge_s=e, transfer_s=n, cloud_s=k))  # it was noise
    sel.choose()
    assert sel.exploring is not None


def test_a_jump_of_the_cloud_starts_the_budget_full():
    # The best cut under an 8x slower cloud may be one never seen, priced by interpolation that
    # can be far off: refilling at 1% a frame, a held-out world (ResNet50) took 176 frames to
    # find it. The budget starts at two frames' worth of the new best the frame the jump is seen.
    from partnner_tf.selector.partnner import BUDGET_CAP

    w = _convex_world(noise=0.0)
    sel = make_selector("partnner", w.manifest)
    for _ in range(100):
        _true_frame(sel, w)
    before = float(sel.estimates()[0].min())
    assert sel.tokens <= BUDGET_CAP * before * 1.001 and sel.cloud.changes == 0
    cut = sel.current
    e, n, k = (float(v[0]) for v in w.components(0.0, [cut]))
    while sel.cloud.changes == 0:
        assert sel.choose() == cut
        sel.observe(Observation(cut=cut, edge_s=e, transfer_s=n, cloud_s=8.0 * k))
    after = float(sel.estimates()[0].min())
    assert after > 1.5 * before
    assert sel.tokens >= 0.99 * BUDGET_CAP * after


def test_how_far_a_payload_is_from_those_sent_depends_on_the_sizes_sent_not_on_each_transfer():
    """The factor by which a cut's per-byte cost may be lower than learnt (1 near a payload sent
    lately, up to 10 far from all of them) is kept while transfers repeat sizes already sent."""
    m = synthetic_manifest(8, seed=3)
    sel = make_selector("partnner", m)
    nbytes = [c.boundary_bytes for c in m.cuts]
    big, small = 0, int(np.argmin([b if b > 0 else np.inf for b in nbytes]))
    assert nbytes[big] > 20 * nbytes[small]
    sel.observe(Observation(cut=m.edge_only, edge_s=0.1))
    for _ in range(3):
        sel.observe(Observation(cut=small, edge_s=0.05, transfer_s=0.03, cloud_s=0.01))
    far = sel._far_from_sent()
    assert far[small] == 1.0 and far[big] > 1.5
    sel.observe(Observation(cut=small, edge_s=0.05, transfer_s=0.03, cloud_s=0.01))
    assert sel._far_from_sent() is far  # the same sizes sent: the same answer
    sel.observe(Observation(cut=big, edge_s=0.0, transfer_s=0.4, cloud_s=0.05))
    now = sel._far_from_sent()
    assert now[big] == 1.0 and now[small] == 1.0


@pytest.mark.parametrize("plain_s, anchored_s", [(0.217, 0.062), (0.05, 0.05)])
def test_a_plain_edge_only_frame_slower_than_the_hedged_one_does_not_replace_it(plain_s, anchored_s):
    """A hedged edge-only run shares the CPU with the cloud request, so its time is an upper
    bound: a plain frame slower still was disturbed (on the testbed, EfficientNetB0 on the Jetson
    Nano over LTE: hedged 62 ms, then one plain frame of 217 ms among 60-90 ms ones, and partnner
    ran a cut of 110 ms for 96 frames). A faster plain frame replaces the hedged time."""
    m = synthetic_manifest(8, seed=3)
    sel = make_selector("partnner", m)
    sel.offer_hedge()
    C, E = m.cloud_only, m.edge_only
    assert sel.choose() == C and sel.hedge(C)
    sel.observe(Observation(cut=C, edge_s=0.0, transfer_s=0.062, timed_out=True, edge_only_s=0.062,
                            bytes_sent=m.cuts[C].boundary_bytes))
    sel.observe(Observation(cut=E, edge_s=plain_s))
    assert not sel.edge_only_hedged
    assert sel.edge.predict(1.0)[0][E] == pytest.approx(anchored_s)


def test_a_hedged_edge_only_run_far_below_its_price_caps_it():
    """On the testbed (yolo_tiny, Jetson Nano, WiFi) two stalled edge-only frames (45 and 60 ms
    among 16-30) read as the board slowing down priced edge-only at ~60 ms. The edge-only run
    beside the next frame's hedged probe took 27 ms and was ignored (edge-only had plain times),
    and partnner ran 29-30 ms cuts for the 50 frames left. A plain run is no slower than a
    hedged one: edge-only far above a hedged time is priced at it."""
    w = table_world("yolo", [(110592, 0, 30_000_000), (24576, 10_000_000, 20_000_000),
                             (6144, 20_000_000, 10_000_000), (0, 30_000_000, 0)],
                    [0.0, 0.009, 0.016, 0.0226], [0.008, 0.005, 0.003, 0.0], uplink=constant(40e6),
                    rtt_s=0.008, noise=0.0)
    x = w.expected(0.0)
    assert int(np.argmin(x)) == 3 and min(x[:3]) < 1.4 * x[3]
    sel = make_selector("partnner", w.manifest)
    sel.offer_hedge()
    rng = np.random.default_rng(1)
    for _ in range(40):
        sel.observe(Observation(cut=3, edge_s=float(rng.uniform(0.016, 0.030))))
    for stall in (0.045, 0.060):
        sel.observe(Observation(cut=3, edge_s=stall))
    assert sel.edge.level > 1.8  # the stalls read as a slower board
    # A hedged probe of cloud-only: the edge-only run beside it answered first, in 27 ms.
    sel.observe(Observation(cut=0, edge_s=0.0, transfer_s=0.031, timed_out=True, bytes_sent=110592,
                            edge_only_s=0.0274))
    assert sel.estimates()[0][3] <= 0.0275
    ran = []
    for _ in range(50):
        c = sel.choose()
        ran.append(c)
        e, n, k = (float(v[0]) for v in w.components(0.0, [c]))
        sel.observe(Observation(cut=c, edge_s=e, transfer_s=n, cloud_s=k))
    assert np.mean([x[c] for c in ran]) < 1.05 * x[3], ran


def _plans(sel, frames, edge_s, rng, slow_at=None):
    """Run ``frames`` frames on a link too slow to use (edge-only is best); the frames (0 the
    first) at which the selector planned, not kept its plan. From ``slow_at`` on the board is 3x
    slower."""
    planned, i = [], 0
    plan = sel._plan
    sel._plan = lambda: (planned.append(i), plan())[1]
    E = sel.manifest.edge_only
    for i in range(frames):
        c = sel.choose()
        slow = 3.0 if slow_at is not None and i >= slow_at else 1.0
        e = edge_s * slow * float(rng.uniform(0.97, 1.03))
        sel.observe(Observation(cut=c, edge_s=e) if c == E else
                    Observation(cut=c, edge_s=0.5 * e, transfer_s=2.0, cloud_s=0.001))
    sel._plan = plan
    return planned


def test_a_plan_is_kept_over_short_quiet_frames_and_made_again_at_news():
    """A 1 ms model, where planning every frame would cost several percent of each: a plan
    holds for PLAN_S of quiet frames; a frame that brings news (here the board 3x slower) has
    the next one planned; frames of PLAN_S or more are all planned."""
    from partnner_tf.selector.partnner import PLAN_S

    m = synthetic_manifest(6, seed=1)
    sel = make_selector("partnner", m)
    rng = np.random.default_rng(0)
    _plans(sel, 200, 0.001, rng)
    quiet = _plans(sel, 400, 0.001, rng)
    # One plan per PLAN_S of frames, and one more after each link probe (a frame at another cut).
    assert 400 * 0.001 / PLAN_S <= len(quiet) <= 3 * 400 * 0.001 / PLAN_S, quiet
    slowed = _plans(sel, 10, 0.001, rng, slow_at=5)
    assert {6, 7} <= set(slowed), slowed  # after the outliers at 5 and 6: planned again at once
    sel = make_selector("partnner", m)
    assert len(_plans(sel, 100, 1.05 * PLAN_S, rng)) == 100


def test_held_frames_teach_what_frames_observed_one_by_one_do():
    """The frames of a kept plan whose costs are as expected are held and observed together when
    the plan ends: the estimators end where observing each frame as it came leaves them, and
    a frame that is not as expected is observed at once, after those held before it."""
    m = synthetic_manifest(6, seed=1)
    held, alone = make_selector("partnner", m), make_selector("partnner", m)
    alone._quiet = lambda obs: False
    rng = np.random.default_rng(4)
    most = 0
    for i in range(300):
        slow = 1.5 if i == 250 else 1.0  # an outlier: observed at once
        e = 0.001 * slow * float(rng.uniform(0.97, 1.03))
        cuts = [sel.choose() for sel in (held, alone)]
        assert cuts[0] == cuts[1], i
        for sel in (held, alone):
            c = cuts[0]
            sel.observe(Observation(cut=c, edge_s=e) if c == m.edge_only else
                        Observation(cut=c, edge_s=0.5 * e, transfer_s=2.0, cloud_s=0.001))
        most = max(most, len(held._held))
        if i == 250:
            assert not held._held
    assert most >= 5  # frames were held
    for sel in (held, alone):  # one frame not as expected: those held are observed first
        sel.observe(Observation(cut=m.edge_only, edge_s=0.002))
    assert not held._held and held.frames == alone.frames == 301
    for attr in ("anchor", "count"):
        np.testing.assert_array_equal(getattr(held.edge, attr), getattr(alone.edge, attr))
    assert (held.edge.level, held.tokens, held.link.since) == (alone.edge.level, alone.tokens, alone.link.since)


def test_a_prefix_seen_plainly_bounds_the_doubt_about_a_hedged_edge_only_time():
    # ResNet50 on the testbed's Pi 3B over LTE: cloud-only is best (182 ms), and the prefix of
    # cut 2 holds 99.7% of the MACs. Seen plainly (430 ms), it shows edge-only costs at least
    # about that much, however the hedged edge-only time (not slowed here) is doubted: partnner
    # checked edge-only with a plain frame all the same, 2.4x the best frame's time.
    cuts = [(110592, 0, 715_084_032), (73728, 632_635_648, 82_448_384), (8192, 713_036_032, 2_048_000),
            (0, 715_084_032, 0)]
    w = table_world("resnet50-pi3b", cuts, [0.0, 0.356, 0.430, 0.437], [0.032, 0.0046, 0.0008, 0.0],
                    uplink=constant(7.5e6), rtt_s=0.03, noise=0.0)
    x = w.expected(0.0)
    assert int(np.argmin(x)) == 0 and x[w.edge_cut] > 2 * x[0]
    sel = make_selector("partnner", w.manifest)
    sel.offer_hedge()
    ran, _ = _run_with_slow_hedges(sel, w, 100, 1.0)
    assert 2 in ran, ran  # the near-whole prefix was seen plainly
    assert w.edge_cut not in ran, ran
    assert np.mean([x[c] for c in ran]) < 1.04 * x[0]


@needs_traces
def test_through_the_contract_alone_frames_that_cross_the_harness_wait_price_a_cut():
    # ResNet50 96x96 on a slow board over the Verizon EVDO trace (a world of the selector
    # benchmark, held-out seed 13), the board slowing 2.2x after 300 s: edge-only is the best
    # fixed cut. Cut 2 sends 8 KB, mostly well within the harness's 1 s wait, but the trace's
    # stalls make a share of its frames cross it, each then costing the wait and an edge-only
    # rerun. Priced by its mean transfer alone, cut 2 looked cheaper than edge-only and partnner
    # ran it with 377 timeouts in 600 frames: 1.22x edge-only.
    cuts = [(110592, 0, 715_084_032), (73728, 632_635_648, 82_448_384), (8192, 713_036_032, 2_048_000),
            (0, 715_084_032, 0)]
    trace = load_trace(TRACES / "Verizon-EVDO-driving.up", scale=0.537)
    w = table_world("resnet50-96-evdo", cuts, [0.0, 1.331, 1.437, 1.634], [0.147, 0.0385, 0.0019, 0.0],
                    uplink=trace, trace_offset_s=769.2, rtt_s=0.063, noise=0.09, slow=[(0, 1.0), (298.3, 2.18)])
    edge = run_policy(w, "edge", 600, seed=13, contract_only=True, harness_deadline_s=1.0)
    run = run_policy(w, "partnner", 600, seed=13, contract_only=True, harness_deadline_s=1.0)
    assert run.mean < 1.05 * edge.mean, run.mean / edge.mean
    assert run.timed_out.sum() < 100
    # The harness's timeouts are what tell partnner of its wait: a harness that never gives up
    # shows none, and the policy it drives prices by the estimates alone.
    sel = make_selector("partnner", w.manifest)
    run_policy(w, "partnner", 100, seed=13, selector=sel, contract_only=True, harness_deadline_s=np.inf)
    assert not sel._waits


def test_through_the_contract_alone_explorations_leave_a_loaded_cloud_to_the_probes():
    # ResNet50 224x224 on a board 5x slower than the profiling machine, its cloud 1.5x faster; the
    # cloud's load steps up 7.7x at 93 s and cut 27 becomes the best, 1.25x faster than edge-only
    # (its prefix and suffix run ~40% under what interpolation between the cuts seen prices
    # them; the selector benchmark's held-out seed 7 world 21). With seed 7, partnner's first
    # explorations missed it and it ran edge-only; explorations then went to cloud-only every
    # 25-30 frames, only because the cloud, unseen a while, might have got less loaded (1.33x
    # edge-only's time each, unhedged), and the budget never held enough for cut 27: never
    # within 10% of the oracle again.
    profile = Path(__file__).resolve().parents[2] / "benchmarks" / "profiles" / "resnet50_224_all.json"
    w = make_world(profile, edge_factor=5.00026, cloud_speedup=1.53879, rtt_s=0.0150658, noise=0.0528648,
                   uplink=steps([(0, 20.6727e6), (49.5807, 344.158e6)]), load=[(0, 1), (93.0924, 7.68832)])
    assert int(np.argmin(w.expected(100.0))) == 27
    for seed in range(8):
        run = run_policy(w, "partnner", 1200, seed=seed, contract_only=True, harness_deadline_s=1.0)
        i0 = int(np.searchsorted(run.start, 93.0924))
        j = frames_to_within(run.ratio, i0)
        cloud_only = int(np.isin(run.cut[i0:], [0, 1]).sum())
        assert j is not None and run.ratio[i0:].mean() < 1.1 and cloud_only <= 5, (seed, j, cloud_only)


def test_a_timeout_reported_with_no_wait_does_not_price_every_cut_late():
    # A harness that says timed_out but not how long it waited (transfer_s 0) tells no wait:
    # taken as one, every remote frame would cross it, and every remote cut would be priced at
    # least as high as edge-only (3.6x the best cut here).
    w = world(12, seed=3, uplink=constant(50e6))
    x = w.expected(0.0)
    sel = make_selector("partnner", w.manifest)
    run_policy(w, "partnner", 50, seed=3, selector=sel, contract_only=True)
    for _ in range(5):
        sel.observe(Observation(cut=sel.choose(), edge_s=0.01, transfer_s=0.0, timed_out=True))
    assert not sel._waits
    run = run_policy(w, "partnner", 200, seed=4, selector=sel, contract_only=True)
    assert np.mean([x[c] for c in run.cut]) < 1.05 * x.min()


def test_a_fall_only_a_new_cut_saw_is_checked_on_a_cut_seen_before():
    # The cloud's level is 8x up (a load step); the frame a cut is first seen, the load goes back
    # down. Taken at the level of the moment, its first cost makes its anchor 8x low, the level
    # stays, and every other cut stays priced 8x high (a DenseNet121 world, explored with looser
    # bounds than partnner's: cloud-only at 4.5x its cost for 1,173 frames). Far under its
    # estimate, that first cost is a surprise, and the cost of a cut seen before settles which.
    from partnner_tf.selector.estimators import CostCurve

    def loaded_curve():
        curve = CostCurve([0.0, 10.0, 20.0, 30.0, 40.0], zero_at=0)
        for cut, cost in ((2, 0.02), (3, 0.03), (4, 0.04)):
            curve.observe(cut, cost)
        curve.observe(2, 0.16, trust=True)  # news after a stretch unseen: the level jumps 8x
        assert curve.level == pytest.approx(8.0)
        curve.predict(1e-9)  # what the selector priced the cuts at
        curve.observe(1, 0.01)  # the new cut, at the level after the fall
        assert curve.surprise is not None and curve.surprise[0] == 1
        return curve

    curve = loaded_curve()
    assert curve.check(2, 0.02)  # the fall: cut 2 costs what it did before the step
    est, _ = curve.predict(1e-9)
    assert est[1] == pytest.approx(0.01) and est[4] == pytest.approx(0.04) and curve.surprise is None
    curve = loaded_curve()
    assert not curve.check(2, 0.16)  # no fall: the new cut is just cheap
    est, _ = curve.predict(1e-9)
    assert est[1] == pytest.approx(0.01) and est[4] == pytest.approx(0.32)


def test_partnner_checks_a_far_cheap_first_cloud_cost_on_a_cut_seen_before():
    # The same through the contract: the cloud's load steps up 8x and back down on the frame a
    # new cut is first seen. The next frame runs a cut seen before, whose cost tells the fall.
    m = synthetic_manifest(12, seed=3)
    E = m.edge_only
    k = 0.002 + 1e-11 * np.array([c.suffix_macs for c in m.cuts], dtype=float)  # cloud s at load 1
    e = 0.001 + 1e-10 * np.array([c.prefix_macs for c in m.cuts], dtype=float)

    def frame(c, load=1.0):
        if c == E:
            return Observation(cut=c, edge_s=e[c])
        return Observation(cut=c, edge_s=0.0 if c == m.cloud_only else e[c], transfer_s=0.02,
                           cloud_s=k[c] * load, bytes_sent=m.cuts[c].boundary_bytes)

    sel = make_selector("partnner", m)
    sel.observe(frame(E))
    for _ in range(10):
        sel.observe(frame(0))
        sel.observe(frame(2))
    for _ in range(3):
        sel.observe(frame(0, load=8.0))
    assert sel.cloud.level == pytest.approx(8.0)
    sel.choose()  # (the estimates the new cut's first cost is set against)
    sel.observe(frame(6))  # first seen, as the load falls back
    check = sel.choose()
    assert check in (0, 2)
    sel.observe(frame(check))
    assert sel.cloud.level == pytest.approx(1.0)
    assert sel.cloud.predict(1e-9)[0][0] == pytest.approx(k[0])
