"""``partnner profile``: real LiteRT prefixes and TensorFlow suffixes of a tiny converted model."""

import json
import time

import numpy as np
from click.testing import CliRunner

from partnner_tf.cli import cli
from partnner_tf.manifest import load_manifest
from partnner_tf.selector import make_selector
from partnner_tf.sim import simulate
from partnner_tf.sim_world import make_world


def test_profile_a_converted_model_and_simulate_it(converted_tiny, tmp_path):
    out = converted_tiny("residual")
    target = tmp_path / "profile.json"
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, ["profile", str(out), "-o", str(target), "--threads", "1", "--repeats", "3",
                                   "--quiet"])
    wall = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    prof = json.loads(target.read_text())
    m = load_manifest(out)
    n = len(m.cuts)
    assert prof["format"] == "partnner-profile" and prof["version"] == 1 and prof["model"] == m.name
    assert len(prof["edge"]["cut_s"]) == n == len(prof["cloud"]["cut_s"]) == len(prof["cuts"])
    assert prof["edge"]["cut_s"][0] == 0.0 and prof["cloud"]["cut_s"][m.edge_only] == 0.0
    assert all(t > 0 for t in prof["edge"]["cut_s"][1:]) and all(t > 0 for t in prof["cloud"]["cut_s"][:-1])
    assert prof["edge"]["threads"] == 1 and prof["profiling_s"] > 0
    # Each prefix run is timed after an idle pause, as in a stream of frames; the pauses are not
    # counted as profiling time (3 runs x 10 ms x the prefixes would be most of it here).
    assert prof["edge"]["pause_s"] == 0.01
    paused = 0.01 * 3 * sum(1 for c in m.cuts if c.prefix is not None)
    assert 0 < prof["profiling_s"] <= wall - paused
    # The profile drives Neurosurgeon and the simulator, with the manifest or with its own cut table.
    assert 0 <= make_selector("neurosurgeon", m, profile=str(target)).choose() < n
    for manifest in (m, None):
        w = make_world(prof, manifest, edge_factor=5)
        _, summary = simulate(w, ["partnner"], frames=50)
        assert np.isfinite(summary["policies"]["partnner"]["mean_s"])


def test_profile_pause_can_be_turned_off(converted_tiny, tmp_path):
    target = tmp_path / "profile.json"
    res = CliRunner().invoke(cli, ["profile", str(converted_tiny("residual")), "-o", str(target), "--threads", "1",
                                   "--repeats", "2", "--pause-ms", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(target.read_text())["edge"]["pause_s"] == 0.0


def test_profile_rejects_a_folder_without_manifest(tmp_path):
    res = CliRunner().invoke(cli, ["profile", str(tmp_path)])
    assert res.exit_code != 0
    assert "manifest" in (res.output + str(res.exception))
