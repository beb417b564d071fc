"""The bench's simulator check: a real ``partnner sim`` run of a cell, calibrated on its cloud-only run."""

import csv
import json

import pytest

from partnner_tf.testbed.bench import LinkPreset, Run
from partnner_tf.testbed.simcheck import simulate_cell
from partnner_tf.traces import traces_dir

EXTRA_S = 0.003  # what the "real" runs' transfers take beyond the simulator's: a relay's hops


@pytest.fixture(scope="module")
def profiled(converted_tiny, tmp_path_factory):
    from partnner_tf.runtime.profile import make_profile

    out = converted_tiny("residual")
    return out, make_profile(out, threads=1, repeats=2)


def _cell(out, prof, link, wd, frames_by_policy):
    runs = {p: Run(p, frames) for p, frames in frames_by_policy.items()}
    return {"link_preset": link, "runs": runs, "profile": prof, "workdir": str(wd), "out": str(out)}


def _sim_frames(wd, policy):
    with open(wd / "sim" / "frames.csv", newline="") as f:
        return [{k: float(r[k]) for k in ("total_s", "transfer_s")} for r in csv.DictReader(f) if r["policy"] == policy]


def test_transfers_are_calibrated_on_the_cloud_only_run(profiled, tmp_path):
    out, prof = profiled
    link = LinkPreset("const", "const:20e6", "const:20e6", 0.002)
    # The "real" runs: the simulator's own frames, each cloud-only transfer EXTRA_S longer.
    dummy = [{"total_s": 1.0, "transfer_s": 0.0}]  # (no transfer beyond the simulated: no calibration)
    simulate_cell(_cell(out, prof, link, tmp_path / "a", {"edge": dummy, "cloud": dummy}), 40,
                  progress=lambda line: None)
    real = {"edge": _sim_frames(tmp_path / "a", "edge"),
            "cloud": [{"total_s": f["total_s"] + EXTRA_S, "transfer_s": f["transfer_s"] + EXTRA_S}
                      for f in _sim_frames(tmp_path / "a", "cloud")]}
    lines = []
    res = simulate_cell(_cell(out, prof, link, tmp_path / "b", real), 40, progress=lines.append)
    assert "transfers +3.0 ms" in lines[-1], lines
    assert res["cloud"]["ratio"] == pytest.approx(1.0, abs=0.02)
    assert res["edge"]["ratio"] == pytest.approx(1.0, abs=0.02)


def test_no_calibration_on_a_trace_link(profiled, tmp_path):
    """A trace's spread hides a few ms of overhead: the real cloud-only run is not matched."""
    out, prof = profiled
    trace = LinkPreset("lte", str(traces_dir() / "Verizon-LTE-short.up"), "const:12e6", 0.02)
    lines = []
    res = simulate_cell(_cell(out, prof, trace, tmp_path, {"cloud": [{"total_s": 1.0, "transfer_s": 0.9}]}), 20,
                        progress=lines.append)
    assert "transfers" not in lines[-1] and res["cloud"]["ratio"] < 0.5
    assert json.loads((tmp_path / "sim" / "summary.json").read_text())["policies"]["cloud"]["mean_s"] > 0
