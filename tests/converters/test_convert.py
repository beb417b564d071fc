"""convert() on tiny models: every cut's LiteRT prefix + TF suffix equals the full model."""

import logging

import numpy as np
import pytest

from partnner_tf.converters import convert
from partnner_tf.manifest import load_manifest, sha256_file, verify_files
from partnner_tf.runtime.cloud.suffix import build_suffix, load_model
from tests.models import EXPECTED_CUTS, INPUT_SHAPE, KINDS, get_model

#: (rtol, atol as a fraction of the output's scale) per quantization.
TOLERANCE = {"none": 1e-5, "fp16": 2e-2, "int8": 0.25}


def _run_prefix(path, key, frame):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_runner("serving_default")(**{key: frame})


# float32 on every kind; each quantization on two kinds (the suite must stay quick on 2 cores).
CASES = [(k, "none") for k in KINDS] + [
    ("chain", "fp16"), ("residual", "fp16"), ("branching", "int8"), ("sequential", "int8")
]


@pytest.mark.parametrize("kind,quantize", CASES)
def test_suffix_of_prefix_matches_full_model(converted_tiny, kind, quantize):
    out = converted_tiny(kind, quantize=quantize)
    manifest = load_manifest(out)
    assert [c.layers for c in manifest.cuts] == [()] + [(n,) for n in EXPECTED_CUTS[kind]] + [()]
    model = load_model(out / manifest.model_file)
    x = np.random.default_rng(7).uniform(-1, 1, (1, *INPUT_SHAPE)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    scale = float(np.max(np.abs(want)))
    in_key = manifest.raw["model"]["input"]["signature_key"]
    out_keys = [o["signature_key"] for o in manifest.raw["model"]["outputs"]]
    for cut in manifest.cuts:
        if cut.is_cloud_only:
            got = build_suffix(model, cut)([x])[0]
        elif cut.is_edge_only:
            got = _run_prefix(out / cut.prefix, in_key, x)[out_keys[0]]
        else:
            boundary = _run_prefix(out / cut.prefix, in_key, x)
            key = manifest.raw["cuts"][cut.id]["boundary"][0]["signature_key"]
            assert set(boundary) == {key}
            (spec,) = cut.boundary
            got_b = boundary[key]
            assert got_b.shape == spec.shape and got_b.dtype == np.dtype(spec.dtype)
            got = build_suffix(model, cut)([got_b])[0]
        tol = TOLERANCE[quantize] * scale
        np.testing.assert_allclose(got, want, rtol=TOLERANCE[quantize], atol=tol,
                                   err_msg=f"{kind} {quantize} cut {cut.id} {cut.layers}")
        verify = cut.extra["verify"]
        if quantize == "none":
            assert verify["rel_err"] <= 1e-4 and verify.get("boundary_rel_err", 0) <= 1e-4
        assert 0.0 <= verify["top1_agree"] <= 1.0


def test_manifest_fields_and_files(converted_tiny):
    out = converted_tiny("chain")
    m = load_manifest(out)
    raw = m.raw
    assert raw["quantization"] == "none" and raw["candidate_cuts"] == len(EXPECTED_CUTS["chain"])
    assert m.cloud_only == 0 and m.edge_only == len(m.cuts) - 1
    cloud, edge = m.cuts[0], m.cuts[-1]
    assert cloud.prefix is None and cloud.layers == () and cloud.prefix_macs == 0
    assert cloud.boundary[0].shape == m.input.shape == (1, *INPUT_SHAPE)
    assert cloud.boundary_bytes == m.input.nbytes
    assert edge.boundary == () and edge.boundary_bytes == 0 and edge.suffix_macs == 0
    assert edge.prefix_macs == raw["model"]["macs"] > 0
    for c in m.cuts[1:]:
        assert (out / c.prefix).is_file()
        assert c.extra["prefix_bytes"] == (out / c.prefix).stat().st_size
        assert c.extra["prefix_sha256"] == sha256_file(out / c.prefix)
    for c in m.cuts[1:-1]:
        assert c.boundary_bytes == c.boundary[0].nbytes > 0
    assert raw["edge_total_bytes"] == sum(c.extra["prefix_bytes"] for c in m.cuts[1:])
    assert raw["model"]["sha256"] == sha256_file(out / "model.keras")
    assert raw["model"]["outputs"][0]["shape"] == [1, 5]
    verify_files(m)
    # Only what a conversion writes is in OUT: no staging or temporary files left over.
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.keras", "prefixes"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_cache_hit_on_second_run(tmp_path, caplog):
    model = get_model("residual")
    cache = tmp_path / "cache"
    first = convert(model, tmp_path / "a", cache_dir=cache)
    with caplog.at_level(logging.INFO, logger="partnner_tf.converters.convert"):
        second = convert(model, tmp_path / "b", cache_dir=cache)
    assert f"{len(first.cuts)} cut(s) cached, 0 to build" in caplog.text
    for a, b in zip(first.cuts, second.cuts):
        assert a.extra.get("prefix_sha256") == b.extra.get("prefix_sha256")
        assert a.extra["verify"] == b.extra["verify"]
    # A different quantization is a different cache entry.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="partnner_tf.converters.convert"):
        convert(model, tmp_path / "c", cache_dir=cache, quantize="fp16", cuts="pareto")
    assert "0 cut(s) cached" in caplog.text


def test_identical_request_is_replayed_without_tensorflow(tmp_path):
    import subprocess
    import sys

    get_model("chain").save(tmp_path / "chain.keras")
    cache = tmp_path / "cache"
    first = convert(tmp_path / "chain.keras", tmp_path / "a", cuts="all", cache_dir=cache)
    # Same request in a process where TensorFlow and Keras cannot be imported: served whole
    # from the cache, files checked against their hashes.
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from partnner_tf.converters import convert\n"
        f"convert({str(tmp_path / 'chain.keras')!r}, {str(tmp_path / 'b')!r}, cuts='all', "
        f"cache_dir={str(cache)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = load_manifest(tmp_path / "b")
    assert second.raw == first.raw
    verify_files(second)


def test_damaged_cache_is_not_shipped(tmp_path, caplog):
    get_model("chain").save(tmp_path / "chain.keras")
    cache = tmp_path / "cache"
    first = convert(tmp_path / "chain.keras", tmp_path / "a", cuts=["gap"], cache_dir=cache)
    for blob in cache.rglob("*.tflite"):
        blob.write_bytes(b"corrupted")
    with caplog.at_level(logging.INFO, logger="partnner_tf.converters.convert"):
        second = convert(tmp_path / "chain.keras", tmp_path / "b", cuts=["gap"], cache_dir=cache)
    assert "replayed" not in caplog.text
    verify_files(second)
    assert [c.extra.get("prefix_sha256") for c in second.cuts] == [c.extra.get("prefix_sha256") for c in first.cuts]


def test_parallel_jobs_match_serial(tmp_path):
    model = get_model("branching")
    serial = convert(model, tmp_path / "serial", cuts=["concat"], cache_dir=False)
    parallel = convert(model, tmp_path / "parallel", cuts=["concat"], cache_dir=False, jobs=2)
    assert [c.layers for c in serial.cuts] == [c.layers for c in parallel.cuts]
    for a, b in zip(serial.cuts, parallel.cuts):
        assert a.extra.get("prefix_sha256") == b.extra.get("prefix_sha256")
        assert b.extra["verify"]["rel_err"] <= 1e-4


def test_named_cuts_and_replacing_an_earlier_output(tmp_path):
    out = tmp_path / "out"
    convert(get_model("chain"), out, cuts=["conv2"], cache_dir=False)
    m = convert(get_model("chain"), out, cuts=["dw"], cache_dir=False)
    assert [c.layers for c in m.cuts] == [(), ("dw",), ()]
    assert sorted(p.name for p in (out / "prefixes").iterdir()) == ["cut_1.tflite", "cut_2.tflite"]


def test_int8_calibration_folder(tmp_path):
    from PIL import Image

    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    np.save(calib / "more.npy", rng.uniform(0, 1, (4, *INPUT_SHAPE)).astype(np.float32))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "random data" warning with a folder
        m = convert(get_model("chain"), tmp_path / "out", quantize="int8", calibration=calib,
                    cache_dir=False, cuts="pareto")
    assert m.raw["quantization"] == "int8"
    assert all(c.extra["verify"]["rel_err"] < 0.5 for c in m.cuts)


def test_int8_without_calibration_warns(tmp_path):
    with pytest.warns(UserWarning, match="RANDOM data"):
        convert(get_model("chain"), tmp_path / "out", quantize="int8", cache_dir=False, cuts=["gap"])
