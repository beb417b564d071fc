"""What convert() accepts, and the clear errors for what it cannot."""

import numpy as np
import pytest

from partnner_tf.converters import convert
from partnner_tf.converters.loading import parse_input_shape
from partnner_tf.errors import ConversionError
from partnner_tf.manifest import verify_files
from partnner_tf.runtime.cloud.suffix import build_suffix, load_model
from tests import models


def test_h5_and_keras_files_convert(tmp_path):
    model = models.get_model("sequential")
    model.save(tmp_path / "seq.h5")
    model.save(tmp_path / "seq.keras")
    a = convert(tmp_path / "seq.h5", tmp_path / "a", cuts=["pool"], cache_dir=False)
    b = convert(str(tmp_path / "seq.keras"), tmp_path / "b", cuts=["pool"], cache_dir=False)
    assert a.name == "seq" and [c.layers for c in a.cuts] == [(), ("pool",), ()]
    assert a.cuts[1].extra["prefix_sha256"] == b.cuts[1].extra["prefix_sha256"]


def test_nested_model_flattened_and_verified(tmp_path):
    m = convert(models.nested_model(), tmp_path / "out", cuts="all", cache_dir=False)
    assert [c.layers for c in m.cuts] == [(), ("bb_conv1",), ("bb_conv2",), ("gap",), ()]
    assert all(c.extra["verify"]["rel_err"] <= 1e-4 for c in m.cuts)
    # The saved cloud model is the flattened one: every suffix can be built from it.
    full = load_model(tmp_path / "out" / "model.keras")
    x = np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(build_suffix(full, m.cuts[0])([x])[0], models.nested_model()(x), rtol=1e-5)


def test_multi_output_model(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    m = convert(models.multi_output_model(), tmp_path / "out", cuts="all", cache_dir=False)
    assert [c.layers for c in m.cuts] == [(), ("trunk",), ("gap",), ()]
    outs = m.raw["model"]["outputs"]
    assert [(o["name"], o["shape"], o["signature_key"]) for o in outs] == [
        ("head_a", [1, 3], "output_0"), ("head_b", [1, 2], "output_1")
    ]
    full = load_model(tmp_path / "out" / "model.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    want = [np.asarray(w) for w in full(x)]
    runner = Interpreter(model_path=str(m.path(m.cuts[-1].prefix))).get_signature_runner()
    got = runner(**{m.raw["model"]["input"]["signature_key"]: x})
    for o, w in zip(outs, want):
        np.testing.assert_allclose(got[o["signature_key"]], w, rtol=1e-5, atol=1e-6)
    mid = Interpreter(model_path=str(m.path(m.cuts[2].prefix))).get_signature_runner()
    boundary = mid(**{m.raw["model"]["input"]["signature_key"]: x})["output_0"]
    for g, w in zip(build_suffix(full, m.cuts[2])([boundary]), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_unbuilt_sequential_needs_input_shape(tmp_path):
    import keras

    seq = keras.Sequential([keras.layers.Dense(3, name="d1"), keras.layers.Dense(2, name="d2")])
    with pytest.raises(ConversionError, match="no input shape.*--input-shape"):
        convert(seq, tmp_path / "out", cache_dir=False)
    m = convert(seq, tmp_path / "out", input_shape=(4,), cuts="all", cache_dir=False)
    assert [c.layers for c in m.cuts] == [(), ("d1",), ()]


@pytest.mark.parametrize(
    "factory,pattern",
    [
        (models.subclassed_model, r"subclassed_net.*subclassed keras.Model \(Net\).*Functional API"),
        (models.multi_input_model, r"2 inputs \['left', 'right'\].*single-input"),
    ],
)
def test_models_without_a_single_input_graph(tmp_path, factory, pattern):
    with pytest.raises(ConversionError, match=pattern):
        convert(factory(), tmp_path / "out", cache_dir=False)
    assert not (tmp_path / "out").exists()


def test_unsupported_op_is_named_with_the_flag(tmp_path):
    with pytest.raises(ConversionError) as info:
        convert(models.unsupported_op_model(), tmp_path / "out", cuts="all", cache_dir=False)
    msg = str(info.value)
    assert "tf.MatrixDeterminant" in msg and "layer(s) det" in msg and "--select-tf-ops" in msg
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left behind


def test_select_tf_ops_converts_and_says_what_it_could_not_verify(tmp_path):
    with pytest.warns(UserWarning, match=r"cuts \[2, 3, 4\].*Flex"):
        m = convert(models.unsupported_op_model(), tmp_path / "out", cuts="all", select_tf_ops=True,
                    cache_dir=False)
    assert [c.layers for c in m.cuts] == [(), ("proj",), ("det",), ("col",), ()]
    assert all(c.extra["verify"]["rel_err"] <= 1e-4 for c in m.cuts)
    # The prefix before the determinant has no Flex op: it ran in LiteRT and was checked.
    assert "prefix_unverified" not in m.cuts[1].extra["verify"]
    assert all("Flex" in c.extra["verify"]["prefix_unverified"] for c in m.cuts[2:])


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "bad.h5").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    cases = {
        tmp_path / "bad.keras": "not a valid .keras archive",
        tmp_path / "bad.h5": r"cannot load model file .*bad.h5: OSError",
        tmp_path / "notes.txt": r"expected a .keras or .h5 file .* received '.txt'",
        tmp_path / "missing.keras": "does not exist",
        tmp_path / "folder": "not a SavedModel",
    }
    for path, pattern in cases.items():
        with pytest.raises(ConversionError, match=pattern):
            convert(path, tmp_path / "out", cache_dir=False)
    assert not (tmp_path / "out").exists()


def test_saved_model_folder_converts_with_its_two_cuts(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = models.get_model("chain")
    model.export(tmp_path / "sm", verbose=False)
    with pytest.warns(UserWarning, match="SavedModel.*only the cloud-only and edge-only cuts"):
        m = convert(tmp_path / "sm", tmp_path / "out", cache_dir=False)
    assert [c.layers for c in m.cuts] == [(), ()] and m.cloud_only == 0 and m.edge_only == 1
    assert m.model_file == "saved_model/saved_model.pb"
    verify_files(m)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    want = np.asarray(model(x))
    cloud = load_model(m.path(m.model_file))  # what the cloud daemon does
    np.testing.assert_allclose(build_suffix(cloud, m.cuts[0])([x])[0], want, rtol=1e-5, atol=1e-6)
    runner = Interpreter(model_path=str(m.path(m.cuts[1].prefix))).get_signature_runner()
    got = runner(**{m.raw["model"]["input"]["signature_key"]: x})["output_0"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"model": "keras.applications.NoSuchNet"}, r"unknown Keras Application 'NoSuchNet'; known: .*MobileNetV2"),
        ({"model": "keras.applications.MobileNetV2", "input_shape": "a,b"}, "positive integers"),
        ({"model": 42}, "expected a keras.Model, a .keras/.h5 file"),
        ({"quantize": "int4"}, r"quantize: expected one of none, fp16, int8; received 'int4'"),
        ({"jobs": 0}, "jobs: expected an integer >= 1"),
        ({"cuts": "nope"}, r"\['nope'\] are not single-tensor cut points"),
        ({"quantize": "int8", "calibration": "/nonexistent"}, "--calibration: expected a folder"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, pattern):
    kwargs = {"model": models.get_model("chain"), **kwargs}
    with pytest.raises(ConversionError, match=pattern):
        convert(kwargs.pop("model"), tmp_path / "out", cache_dir=False, **kwargs)


def test_output_that_is_not_a_conversion_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ConversionError, match="not a conversion"):
        convert(models.get_model("chain"), out, cache_dir=False)
    assert (out / "precious.txt").read_text() == "keep me"


def test_failed_conversion_keeps_the_earlier_output(tmp_path):
    out = tmp_path / "out"
    first = convert(models.get_model("chain"), out, cuts=["gap"], cache_dir=False)
    with pytest.raises(ConversionError):
        convert(models.unsupported_op_model(), out, cache_dir=False)
    again = (out / "manifest.json").read_text()
    assert '"gap"' in again and first.raw["model"]["sha256"] in again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_parse_input_shape():
    assert parse_input_shape("224,224,3") == (224, 224, 3)
    assert parse_input_shape("96x96x3") == (96, 96, 3)
    assert parse_input_shape(None) is None
    with pytest.raises(ConversionError, match="received '0,3'"):
        parse_input_shape("0,3")
