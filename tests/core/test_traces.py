"""Traces: Mahimahi parsing on the real files, exact transfer times, step schedules, outages."""


import numpy as np
import pytest

from partnner_tf.errors import PartnnerError
from partnner_tf.traces import Trace, constant, load_trace, steps, traces_dir

TRACES = traces_dir()
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason=f"shared traces not found at {TRACES}")

#: file -> (duration s, mean Mbit/s) as given in traces/README.md
KNOWN = {
    "Verizon-LTE-short.up": (140, 5.95),
    "TMobile-LTE-short.up": (140, 13.3),
    "ATT-LTE-driving-2016.up": (120, 1.91),
    "TMobile-UMTS-driving.up": (930, 0.94),
    "Verizon-EVDO-driving.up": (1064, 0.84),
}


@needs_traces
@pytest.mark.parametrize("name", sorted(KNOWN))
def test_real_traces_match_their_readme(name):
    tr = load_trace(TRACES / name)
    duration, mbps = KNOWN[name]
    assert tr.duration_s == pytest.approx(duration, rel=0.01)
    assert tr.mean_bps / 1e6 == pytest.approx(mbps, rel=0.03)
    # Sending a whole period's worth of packets takes about one period.
    nbytes = tr.mean_bps * tr.duration_s / 8
    assert tr.transfer_time(0.0, nbytes) == pytest.approx(tr.duration_s, rel=0.01)


@needs_traces
def test_scale_moves_the_mean_and_shortens_transfers():
    base = load_trace(TRACES / "Verizon-LTE-short.up")
    fast = load_trace(TRACES / "Verizon-LTE-short.up", scale=4.0)
    assert fast.mean_bps == pytest.approx(4 * base.mean_bps)
    t = np.linspace(0, 100, 50)
    assert np.all(fast.transfer_time(t, 200_000) <= base.transfer_time(t, 200_000))


@needs_traces
def test_driving_trace_outage_is_waited_through():
    tr = load_trace(TRACES / "ATT-LTE-driving-2016.up")
    rates = tr.rate_bps(np.arange(0, 120, 1.0))
    assert np.any(rates == 0), "the ATT driving trace has zero-capacity seconds"
    t0 = float(np.arange(0, 120, 1.0)[np.argmax(rates == 0)])
    # A single packet sent at the outage's start leaves only once the outage ends.
    assert tr.transfer_time(t0, 1500) >= 1.0 - 1e-9


def test_tiny_trace_exact_packet_opportunities(tmp_path):
    p = tmp_path / "t.up"
    p.write_text("1\n1\n5\n10\n")  # period 10 ms, 4 opportunities
    tr = load_trace(p)
    assert tr.duration_s == 0.010
    assert tr.mean_bps == pytest.approx(4 * 1500 * 8 / 0.010)
    assert tr.transfer_time(0.0, 0) == 0.0
    assert tr.transfer_time(0.0, 1500) == pytest.approx(0.001)
    assert tr.transfer_time(0.0, 3000) == pytest.approx(0.001)
    assert tr.transfer_time(0.0, 3001) == pytest.approx(0.005)
    assert tr.transfer_time(0.002, 1) == pytest.approx(0.003)
    # Wraps around: opportunities 4 and 5 are at 11 and 11 ms (the second period's "1").
    assert tr.transfer_time(0.0, 6 * 1500) == pytest.approx(0.011)
    got = tr.transfer_time(np.array([0.0, 0.002]), np.array([1500, 1]))
    np.testing.assert_allclose(got, [0.001, 0.003])


def test_constant_link():
    link = constant(8e6)
    assert link.rate_bps(12.3) == 8e6
    assert link.mean_bps == 8e6
    assert link.transfer_time(5.0, 1_000_000) == pytest.approx(1.0)
    np.testing.assert_allclose(link.transfer_time(0.0, np.array([0, 1000, 2000])), [0, 0.001, 0.002])


def test_steps_with_outage_and_recovery():
    link = steps([(0, 8e6), (10, 0), (12, 16e6)])
    assert link.rate_bps(11) == 0
    assert link.rate_bps(20) == 16e6
    assert link.transfer_time(1.0, 1_000_000) == pytest.approx(1.0)
    # Starts 1 s before the outage: half sent, waits 2 s, the other half at 16 Mbit/s.
    assert link.transfer_time(9.0, 2_000_000) == pytest.approx(1.0 + 2.0 + 0.5)
    assert link.transfer_time(10.5, 2_000_000) == pytest.approx(1.5 + 1.0)
    assert link.mean_bps == pytest.approx(8e6 * 10 / 12)


def test_steps_ending_in_outage_never_finish():
    assert steps([(0, 1e6), (1, 0)]).transfer_time(2.0, 10) == float("inf")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: steps([]), "at least one"),
        (lambda: steps([(0, -1)]), "bps >= 0"),
        (lambda: Trace([], name="x"), "at least one packet"),
        (lambda: Trace([1, 2], scale=0), "scale"),
    ],
)
def test_bad_schedules_are_rejected(make, match):
    with pytest.raises(PartnnerError, match=match):
        make()


def test_bad_trace_files(tmp_path):
    with pytest.raises(PartnnerError, match="cannot read trace"):
        load_trace(tmp_path / "missing.up")
    p = tmp_path / "bad.up"
    p.write_text("1\n2\nthree\n")
    with pytest.raises(PartnnerError, match="'three'"):
        load_trace(p)
