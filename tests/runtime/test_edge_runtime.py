"""The edge runtime against a real cloud daemon: every cut, every policy, the CLI, bad inputs."""

import json
import logging
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from partnner_tf.errors import InputError, ManifestError, PartnnerError
from partnner_tf.manifest import load_manifest
from partnner_tf.runtime.cli import edge as edge_cli
from partnner_tf.runtime.edge import EdgeRuntime
from partnner_tf.runtime.sources import open_source
from partnner_tf.selector import POLICIES
from tests.runtime.edge_fixtures import (  # noqa: F401 (fixtures)
    assert_matches, daemon, frames, reference, residual_out)


def _n_cuts(out):
    return len(load_manifest(out).cuts)


def test_edge_only_without_cloud_matches_keras(residual_out, frames, reference):
    with EdgeRuntime(residual_out, cloud=None, selector="partnner") as rt:
        results = list(rt.stream(frames))
    assert [r.frame for r in results] == list(range(len(frames)))
    for i, r in enumerate(results):
        assert (r.cut, r.fallback, r.bytes_sent, r.transfer_s) == (rt.edge_cut, False, 0, 0.0)
        assert r.edge_s > 0 and r.total_s >= r.edge_s
        assert_matches(r, reference, i)


def test_every_cut_through_the_daemon_matches_keras(residual_out, daemon, frames, reference):
    m = load_manifest(residual_out)
    for cut in m.cuts:
        with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector=f"fixed:{cut.id}") as rt:
            for i, r in enumerate(rt.stream(frames[:4])):
                assert not r.fallback, r.error
                assert r.cut == cut.id
                assert_matches(r, reference, i)
                if cut.is_edge_only:
                    assert r.bytes_sent == 0 and r.cloud_s == 0.0
                else:
                    expected = m.input.nbytes if cut.is_cloud_only else cut.boundary_bytes
                    assert r.bytes_sent == expected
                    assert r.cloud_s == pytest.approx(r.queue_s + r.compute_s)
                    assert r.cloud_s > 0 and r.transfer_s > 0
                    assert r.total_s >= r.edge_s + r.cloud_s


def _policy_options(policy, out):
    if policy != "neurosurgeon":
        return None
    n = _n_cuts(out)
    # A profile in the documented format; its values only steer the choice, not correctness.
    return {"profile": {"format": "partnner-profile", "version": 1, "model": load_manifest(out).name,
                        "edge": {"threads": 1, "cut_s": [0.0] + [1e-4 * k for k in range(1, n)]},
                        "cloud": {"cut_s": [1e-4 * (n - 1 - k) for k in range(n)]}, "profiling_s": 0.0}}


@pytest.mark.parametrize("policy", sorted(POLICIES) + ["fixed:2"])
def test_every_policy_streams_correct_frames(policy, residual_out, daemon, frames, reference):
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector=policy,
                     selector_options=_policy_options(policy, residual_out)) as rt:
        results = list(rt.stream(np.concatenate([frames, frames])))
    assert len(results) == 2 * len(frames)
    for k, r in enumerate(results):
        assert not r.fallback, r.error
        assert_matches(r, reference, k % len(frames))


def test_cli_run_with_daemon_writes_a_json_line_per_frame(residual_out, daemon, tmp_path):
    log = tmp_path / "frames.jsonl"
    res = CliRunner().invoke(edge_cli, [
        "run", str(residual_out), "--cloud", daemon.endpoint, "--source", "random:3", "--frames", "25",
        "--policy", "fixed:1", "--log", str(log), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "25 frames" in res.output and "fallbacks: 0" in res.output
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(25))
    for d in lines:
        assert d["cut"] == 1 and d["fallback"] is False and d["bytes_sent"] > 0
        assert {"edge_s", "transfer_s", "cloud_s", "total_s", "queue_s", "compute_s"} <= set(d)


def test_cli_images_edge_only_and_help(residual_out, tmp_path):
    from PIL import Image

    for i, size in enumerate([(8, 8), (40, 30), (5, 9)]):  # resized to the model's 8x8
        Image.new("RGB", size, (40 * i, 90, 200)).save(tmp_path / f"img{i}.png")
    res = CliRunner().invoke(edge_cli, ["run", str(residual_out), "--cloud", "none", "--source",
                                        str(tmp_path), "--frames", "6", "--policy", "edge", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "6 frames" in res.output
    for args in (["--help"], ["run", "--help"]):
        res = CliRunner().invoke(edge_cli, args)
        assert res.exit_code == 0 and "Usage" in res.output


def test_image_source_resizes_and_scales(residual_out, tmp_path):
    from PIL import Image

    Image.new("RGB", (31, 17), (255, 0, 51)).save(tmp_path / "a.png")
    spec = load_manifest(residual_out).input
    (frame,) = list(open_source(tmp_path, spec))
    assert frame.shape == spec.shape[1:] and frame.dtype == np.float32
    np.testing.assert_allclose(frame[0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_random_source_is_seeded(residual_out):
    spec = load_manifest(residual_out).input
    a = list(open_source("random:5", spec, frames=3))
    b = list(open_source("random:5", spec, frames=3))
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])


def test_bad_frames_give_clear_errors(residual_out):
    with EdgeRuntime(residual_out, selector="edge") as rt:
        with pytest.raises(InputError, match=r"expects frames of shape \(1, 8, 8, 3\).*received shape \(9, 8, 3\)"):
            rt.infer(np.zeros((9, 8, 3), np.float32))
        with pytest.raises(InputError, match="dtype float32.*received.*dtype float64"):
            rt.infer(np.zeros((8, 8, 3)))
        with pytest.raises(InputError, match="received list"):
            rt.infer([[0.0]])
        assert rt.infer(np.zeros((8, 8, 3), np.float32)).frame == 0  # still usable


def test_bad_source_files_give_clear_errors(residual_out, tmp_path):
    spec = load_manifest(residual_out).input
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="broken.png: cannot read as an image"):
        list(open_source(tmp_path, spec))
    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "a.npy", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"a.npy: expected an array of shape \(8, 8, 3\), received \(4, 4, 3\)"):
        list(open_source(npy, spec))
    (npy / "a.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="a.npy: cannot read as a .npy array"):
        list(open_source(npy, spec))
    with pytest.raises(InputError, match="does not exist"):
        open_source(tmp_path / "nope", spec)
    res = CliRunner().invoke(edge_cli, ["run", str(residual_out), "--cloud", "none", "--source",
                                        str(npy), "--policy", "edge"])
    assert res.exit_code != 0 and "a.npy" in str(res.exception)


def test_altered_prefix_fails_its_hash_at_start(residual_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(residual_out, out)
    with open(out / "prefixes" / "cut_2.tflite", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="cut_2.tflite: sha256 differs"):
        EdgeRuntime(out, selector="edge")
    (out / "prefixes" / "cut_3.tflite").unlink()
    with pytest.raises(ManifestError, match="cut_3.tflite: missing"):
        EdgeRuntime(out, selector="edge")


def test_bad_policy_and_options_are_clear(residual_out):
    with pytest.raises(PartnnerError, match="unknown policy 'fastest'"):
        EdgeRuntime(residual_out, cloud="tcp://127.0.0.1:9", selector="fastest")
    with pytest.raises(PartnnerError, match="needs a cloud endpoint"):
        EdgeRuntime(residual_out, cloud=None, selector="fixed:1")
    with pytest.raises(PartnnerError, match="unknown option.*'deadline'"):
        EdgeRuntime(residual_out, selector="edge", deadline=1)


def test_board_sets_threads_and_a_missing_accelerator_falls_back_to_cpu(residual_out, frames, reference, caplog):
    from partnner_tf.errors import UnknownBoardError
    from partnner_tf.runtime import interpreter

    with EdgeRuntime(residual_out, selector="edge", board="rpi4") as rt:
        assert rt.threads == 4 and rt.cache.get(rt.edge_cut).threads == 4
        assert_matches(rt.infer(frames[0]), reference, 0)
    with EdgeRuntime(residual_out, selector="edge", board="rpi4", threads=1) as rt:
        assert rt.cache.get(rt.edge_cut).threads == 1  # the argument wins over the board
    if interpreter.delegate_error(interpreter.EDGETPU_LIBRARY) is None:
        pytest.skip("libedgetpu.so.1 loads here: this part is of the missing delegate")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        with EdgeRuntime(residual_out, selector="edge", board="coral-usb", prefetch_radius=1) as rt:
            assert rt.cache.get(rt.edge_cut).delegate is None
            assert_matches(rt.infer(frames[1]), reference, 1)
    # Said once (not once per prefix), naming the library and the board; no int8 prefixes in a
    # plain conversion, so the float ones run on the CPU, which is said too.
    said = [r.getMessage() for r in caplog.records if "libedgetpu.so.1" in r.getMessage()]
    assert len(said) == 1 and "board coral-usb" in said[0] and "run on the CPU" in said[0], said
    assert any("no full-int8 Edge TPU prefix" in r.getMessage() for r in caplog.records)
    with pytest.raises(UnknownBoardError, match="rpi4"):
        EdgeRuntime(residual_out, selector="edge", board="toaster")


class _Schedule:
    """A selector object playing a list of cuts (any object with choose/observe will do)."""

    name = "schedule"

    def __init__(self, cuts):
        self.cuts = iter(cuts)
        self.seen = []

    def choose(self):
        return next(self.cuts)

    def observe(self, obs):
        self.seen.append(obs.cut)


def test_swaps_never_load_in_a_frame_after_the_first(residual_out, daemon, frames, reference):
    n = _n_cuts(residual_out)
    plan = [1 + (k * 3) % (n - 1) for k in range(3 * len(frames))]  # jumps over every cut but 0
    sel = _Schedule(plan)
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector=sel, prefetch_radius=0) as rt:
        results = [rt.infer(frames[k % len(frames)]) for k in range(len(plan))]
        misses = rt.cache.stats["misses"]
    for k, (want, r) in enumerate(zip(plan, results)):
        assert not r.fallback, r.error
        assert_matches(r, reference, k % len(frames))
        if r.cut != want:  # a deferred swap: the previous frame's cut ran again
            assert r.chosen == want and r.cut == results[k - 1].cut
    assert misses == 2  # the pinned edge-only model and the first frame's cut; nothing else
    assert sel.seen == [r.cut for r in results]


def test_a_fixed_cut_loads_no_neighbours(residual_out, daemon, frames, reference):
    # A fixed cut never runs another one: only it and the edge-only fallback are loaded.
    cut = _n_cuts(residual_out) // 2
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector=f"fixed:{cut}") as rt:
        results = [rt.infer(frames[k % len(frames)]) for k in range(4)]
        rt.settle()
        stats = dict(rt.cache.stats)
    assert [r.cut for r in results] == [cut] * 4
    assert stats["prefetched"] == 0 and stats["misses"] == 2, stats


def test_top_level_cli_lists_edge_run():
    from partnner_tf.cli import cli

    res = CliRunner().invoke(cli, ["edge", "run", "--help"])
    assert res.exit_code == 0 and "--policy" in res.output and "--log" in res.output


@pytest.mark.parametrize("quantize", ["fp16", "int8"])
def test_quantized_prefixes_every_cut_within_the_converters_error(quantize, converted_tiny):
    from partnner_tf.runtime.cloud.spawn import start_daemon
    from tests.runtime.edge_fixtures import keras_reference

    out = converted_tiny("residual", quantize=quantize)
    m = load_manifest(out)
    # The converter calibrates and verifies on uniform(-1, 1) frames: the same range here.
    x = np.random.default_rng(4).uniform(-1, 1, (3, *m.input.shape[1:])).astype(np.float32)
    ref = keras_reference(out, x)[0]
    with start_daemon([out]) as d:
        for cut in m.cuts:
            bound = 5 * cut.extra["verify"]["max_abs_err"] + 1e-4
            with EdgeRuntime(out, cloud=d.endpoint, selector=f"fixed:{cut.id}") as rt:
                for i, r in enumerate(rt.stream(x)):
                    assert not r.fallback and r.cut == cut.id, r.error
                    err = float(np.abs(r.outputs[0][0] - ref[i]).max())
                    assert err <= bound, f"{quantize} cut {cut.id}: max abs error {err:.2e} > {bound:.2e}"


def test_a_board_sets_the_prefix_cache_budget_from_its_memory(residual_out):
    from partnner_tf.boards import get_board
    from partnner_tf.runtime.edge import BOARD_MEMORY_SHARE
    from partnner_tf.testbed.board import board_budget_mb

    with EdgeRuntime(residual_out, board="rpi3b") as rt:
        assert rt.cache.budget_bytes == int(BOARD_MEMORY_SHARE * get_board("rpi3b").memory_mb * 2**20)
    with EdgeRuntime(residual_out, board="rpi3b", budget_bytes=10**6) as rt:
        assert rt.cache.budget_bytes == 10**6  # an explicit budget wins
    # The testbed gives its emulated boards the budget the runtime would take on the real one.
    assert board_budget_mb("rpi3b") == round(BOARD_MEMORY_SHARE * get_board("rpi3b").memory_mb, 1)


def test_preload_fills_the_budget_smallest_first_and_frames_then_load_nothing(residual_out, daemon, frames):
    import os

    m = load_manifest(residual_out)
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector="partnner") as rt:
        size = {c: os.path.getsize(m.path(f.path)) for c, f in rt.files.items()}
        loaded = rt.preload()
        assert sorted(loaded, key=size.get) == loaded and set(loaded) | {rt.edge_cut} == set(rt.files)
        assert rt.preload() == []  # nothing left to load
        for k in range(8):
            rt.infer(frames[k % len(frames)])
        rt.settle()
        assert rt.cache.stats["misses"] == 1 and rt.cache.stats["prefetched"] == 0  # the pinned edge-only model
    # A budget for the edge-only model and the smallest other prefix: that one is loaded, no
    # more, and nothing is evicted to make room.
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector="partnner", budget_bytes=10**9) as probe:
        probe.preload()
        need = {c: probe.cache.get(c).nbytes for c in probe.cache.loaded()}
    smallest = min((c for c in need if c != rt.edge_cut), key=size.get)
    budget = need[rt.edge_cut] + need[smallest] + 1
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector="partnner", budget_bytes=budget) as rt:
        assert rt.preload() == [smallest]
        assert sorted(rt.cache.loaded()) == sorted([rt.edge_cut, smallest]) and rt.cache.stats["evicted"] == 0


def test_cli_run_preloads_an_adaptive_policys_prefixes(residual_out, daemon):
    res = CliRunner().invoke(edge_cli, [
        "run", str(residual_out), "--cloud", daemon.endpoint, "--source", "random:3", "--frames", "12",
        "--policy", "partnner", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "preloaded the prefixes of cuts" in res.output
    assert "prefix loads: 1 in frame, 0 prefetched" in res.output  # the edge-only model, at start


def test_freeze_heap_puts_what_lives_now_out_of_the_collectors_reach():
    import gc

    from partnner_tf.runtime.edge import freeze_heap

    try:
        freeze_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the modules, the runtime: what full collections would walk
        assert len(gc.get_objects(generation=2)) < frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
