"""Prefix interpreters (LiteRT, by signature key) and the memory-bounded prefix cache."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from partnner_tf.errors import InputError, ManifestError
from partnner_tf.manifest import load_manifest
from partnner_tf.runtime.cache import PrefixCache
from partnner_tf.runtime.interpreter import load_prefix
from tests.runtime.edge_fixtures import keras_reference, residual_out  # noqa: F401 (fixture)


def _prefix_paths(out):
    m = load_manifest(out)
    return m, {c.id: m.path(c.prefix) for c in m.cuts if c.prefix}


def test_edge_only_prefix_matches_keras(residual_out):
    m, paths = _prefix_paths(residual_out)
    p = load_prefix(paths[m.edge_only], threads=1)
    x = np.random.default_rng(0).random(m.input.shape, dtype=np.float32)
    out = p.run({m.raw["model"]["input"]["signature_key"]: x})
    key = m.raw["model"]["outputs"][0]["signature_key"]
    np.testing.assert_allclose(out[key], keras_reference(residual_out, x)[0], atol=1e-5)
    assert p.nbytes >= paths[m.edge_only].stat().st_size
    assert p.threads == 1 and p.backend == "ai-edge-litert"


def test_every_prefix_outputs_its_boundary_by_signature_key(residual_out):
    m, paths = _prefix_paths(residual_out)
    x = np.zeros(m.input.shape, np.float32)
    for cut in m.cuts:
        if cut.prefix is None or cut.is_edge_only:
            continue
        out = load_prefix(paths[cut.id]).run({"image": x})
        for raw, spec in zip(m.raw["cuts"][cut.id]["boundary"], cut.boundary):
            assert out[raw["signature_key"]].shape == spec.shape


def test_wrong_input_shape_dtype_and_key_are_clear(residual_out):
    m, paths = _prefix_paths(residual_out)
    p = load_prefix(paths[1])
    with pytest.raises(InputError, match=r"expected shape \(1, 8, 8, 3\), received \(1, 9, 8, 3\)"):
        p.run({"image": np.zeros((1, 9, 8, 3), np.float32)})
    with pytest.raises(InputError, match="expected dtype float32, received int32"):
        p.run({"image": np.zeros((1, 8, 8, 3), np.int32)})
    with pytest.raises(InputError, match="expected input 'image'"):
        p.run({"input_0": np.zeros((1, 8, 8, 3), np.float32)})


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "cut_3.tflite"
    bad.write_bytes(b"\x00not a flatbuffer" * 20)
    with pytest.raises(ManifestError, match="cut_3.tflite is not a valid TFLite model"):
        load_prefix(bad)
    with pytest.raises(ManifestError, match="nothere.tflite: file not found"):
        load_prefix(tmp_path / "nothere.tflite")


def test_missing_edgetpu_delegate_warns_and_runs_on_cpu(residual_out, monkeypatch):
    from partnner_tf.runtime import interpreter

    monkeypatch.setattr(interpreter, "_FAILED_DELEGATES", {})  # warn afresh in this test
    m, paths = _prefix_paths(residual_out)
    with pytest.warns(RuntimeWarning, match="libedgetpu.so.1.*run on the CPU"):
        p = load_prefix(paths[1], delegate="edgetpu")
    assert p.delegate is None
    assert p.run({"image": np.zeros(m.input.shape, np.float32)})


def test_no_interpreter_installed_names_the_edge_extra():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('ai_edge_litert', 'tflite_runtime', 'tensorflow'):
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        from partnner_tf.errors import MissingDependencyError
        from partnner_tf.runtime.interpreter import load_prefix
        try:
            load_prefix('x.tflite')
        except MissingDependencyError as exc:
            print('MISSING', exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "MISSING no TFLite interpreter is installed" in out.stdout, out.stderr
    assert "partnner-tf[edge]" in out.stdout


def _cache(paths, budget):
    return PrefixCache(paths, lambda p: load_prefix(p, threads=1).warm(), budget)


def test_cache_evicts_least_recently_used_within_budget(residual_out):
    _, paths = _prefix_paths(residual_out)
    size = {c: load_prefix(paths[c]).nbytes for c in (2, 3, 4)}  # similar sizes, cut 2 smallest
    cache = _cache(paths, budget=size[3] + size[4] + 16)
    try:
        for cut in (2, 3, 4):
            cache.get(cut)
        assert cache.loaded() == [3, 4]  # 2 was least recently used
        cache.get(3)
        cache.get(2)
        assert cache.loaded() == [3, 2]
        assert cache.nbytes <= cache.budget_bytes
        assert cache.stats["evicted"] == 2 and cache.stats["misses"] == 4
    finally:
        cache.close()


def test_cache_pin_survives_budget_and_prefetch_loads_in_background(residual_out):
    _, paths = _prefix_paths(residual_out)
    cache = _cache(paths, budget=1)  # nothing fits: only the pinned and the newest stay
    try:
        cache.pin(5)
        cache.prefetch([2])
        deadline = time.monotonic() + 30
        while not cache.is_ready(2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.is_ready(2) and cache.stats["prefetched"] == 1
        cache.get(3)
        assert set(cache.loaded()) == {5, 3}
        assert cache.stats["misses"] == 2  # the pin and cut 3; cut 2 came from the background
    finally:
        cache.close()


def test_cache_reports_a_background_load_failure_to_the_frame(tmp_path, residual_out):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk" * 64)
    cache = _cache({7: bad}, budget=1 << 30)
    try:
        cache.prefetch([7])
        with pytest.raises(ManifestError, match="bad.tflite"):
            cache.get(7)
    finally:
        cache.close()
