"""Edge TPU boards: the full-int8 prefixes run (on the CPU here), float in, float out, close to Keras."""

import json
import logging
import shutil

import numpy as np
import pytest

from partnner_tf.errors import ManifestError
from partnner_tf.manifest import load_manifest
from partnner_tf.runtime.edge import EdgeRuntime
from partnner_tf.runtime.int8 import Int8Prefix, dequantize, int8_spec, quantize
from partnner_tf.runtime.interpreter import EDGETPU_LIBRARY, delegate_error
from partnner_tf.runtime.plan import plan_prefixes
from tests.runtime.edge_fixtures import keras_reference


def test_quantize_and_dequantize_by_hand():
    x = np.array([0.0, 0.25, -0.25, 0.74, 1.0, 100.0, -100.0], np.float32)
    # x / 0.5 = 0, 0.5, -0.5, 1.48, 2, 200, -200; halves away from zero; + (-3); clipped to int8.
    q = quantize(x, 0.5, -3)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [-3, -2, -4, -2, -1, 127, -128])
    d = dequantize(np.array([-3, -2, 127, -128], np.int8), 0.5, -3)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [0.0, 0.5, 65.0, -62.5])
    # In range, a round trip is within half a step.
    y = np.random.default_rng(0).uniform(-1, 1, 1000).astype(np.float32)
    scale, zero = 2 / 255, -1
    assert np.abs(dequantize(quantize(y, scale, zero), scale, zero) - y).max() <= scale / 2 + 1e-7


def test_bad_edgetpu_entries_name_the_field():
    from partnner_tf.manifest import Cut

    def cut(entry):
        return Cut(3, ("x",), "prefixes/cut_3.tflite", 4, 1, 1, extra={"edgetpu": entry})

    good = {"prefix": "edgetpu/cut_3_int8.tflite", "sha256": "ab", "input_quant": [[0.5, -3]],
            "output_quant": [[0.1, 0]], "compiled": None}
    assert int8_spec(cut(good)).input_quant == ((0.5, -3),)
    with pytest.raises(ManifestError, match=r"cuts\[3\].edgetpu: missing input_quant, output_quant"):
        int8_spec(cut({"prefix": "edgetpu/a.tflite", "sha256": "ab"}))
    for bad in ([[0.0, 0]], [[0.5, 300]], [[0.5, 1.5]], [0.5, 1], "0.5"):
        with pytest.raises(ManifestError, match=r"cuts\[3\].edgetpu.output_quant: expected \[\[scale > 0"):
            int8_spec(cut(dict(good, output_quant=bad)))
    assert int8_spec(Cut(1, (), None, 0, 0, 0)) is None


@pytest.fixture(scope="module")
def tpu_out(converted_tiny, tmp_path_factory):
    """The residual model converted with --quantize int8, plus full-int8 copies of every prefix, as a
    Coral bundle's manifest lists them (``edgetpu`` entries). Returns (folder, converted folder)."""
    from partnner_tf.boards.edgetpu import EDGETPU_DIR, build_edgetpu_prefixes

    src = converted_tiny("residual", quantize="int8")
    out = tmp_path_factory.mktemp("tpu") / "out"
    shutil.copytree(src, out)
    m = load_manifest(out)
    with pytest.warns(UserWarning, match="RANDOM"):
        info, _ = build_edgetpu_prefixes(m, [c.id for c in m.cuts if c.prefix], out / EDGETPU_DIR)
    data = json.loads((out / "manifest.json").read_text())
    for c in data["cuts"]:
        if c["id"] in info:
            c["edgetpu"] = info[c["id"]]
    (out / "manifest.json").write_text(json.dumps(data))
    return out, src


@pytest.fixture(scope="module")
def tpu_daemon(tpu_out):
    from partnner_tf.runtime.cloud.spawn import start_daemon

    with start_daemon([tpu_out[1]]) as d:
        yield d


def _no_edgetpu_here():
    if delegate_error(EDGETPU_LIBRARY) is None:
        pytest.skip(f"{EDGETPU_LIBRARY} loads here: this test is of the CPU path")


def test_coral_board_runs_the_int8_prefixes_on_the_cpu_within_the_int8_error(tpu_out, tpu_daemon, caplog):
    _no_edgetpu_here()
    out, src = tpu_out
    m = load_manifest(out)
    # The converter calibrates and verifies on uniform(-1, 1) frames: the same range here.
    x = np.random.default_rng(4).uniform(-1, 1, (3, *m.input.shape[1:])).astype(np.float32)
    ref = keras_reference(src, x)[0]
    for cut in m.cuts:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="partnner_tf.runtime"):
            rt = EdgeRuntime(out, cloud=tpu_daemon.endpoint, selector=f"fixed:{cut.id}", board="coral-usb")
        with rt:
            said = [r.getMessage() for r in caplog.records if EDGETPU_LIBRARY in r.getMessage()]
            assert len(said) == 1 and "coral-usb" in said[0] and "run on the CPU" in said[0], said
            for c in {cut.id, m.edge_only} & set(rt.files):  # cut 0 loads nothing
                p = rt.cache.get(c)
                assert isinstance(p, Int8Prefix) and p.delegate is None
                assert p.path == out / m.cuts[c].extra["edgetpu"]["prefix"]
            # The converter's own error for this cut (int8 inside, float in and out), with the margin
            # test_edge_runtime gives the converter's int8 prefixes: the full-int8 copy quantizes its
            # input and output with the same steps that model's Quantize/Dequantize ops use.
            # Measured here: at most 2.2x that error (cut 4); dequantizing without the zero point: 0.33
            # on cut 1 against a bound of 0.0026.
            bound = 5 * cut.extra["verify"]["max_abs_err"] + 1e-4
            for i, r in enumerate(rt.stream(x)):
                assert not r.fallback and r.cut == cut.id, r.error
                assert r.outputs[0].dtype == np.float32
                err = float(np.abs(r.outputs[0][0] - ref[i]).max())
                assert err <= bound, f"cut {cut.id}: max abs error {err:.2e} > {bound:.2e}"


def test_a_float_board_still_runs_the_float_prefixes(tpu_out):
    out, _ = tpu_out
    with EdgeRuntime(out, selector="edge", board="rpi4") as rt:
        p = rt.cache.get(rt.edge_cut)
        assert not isinstance(p, Int8Prefix) and p.path.parent.name == "prefixes"


def test_the_compiled_file_is_chosen_only_when_the_delegate_loads(tpu_out):
    out, _ = tpu_out
    m = load_manifest(out)
    edge = m.cuts[m.edge_only]
    data = json.loads((out / "manifest.json").read_text())
    data["cuts"][edge.id]["edgetpu"]["compiled"] = "edgetpu/whole_edgetpu.tflite"
    from partnner_tf.manifest import manifest_from_dict

    m2 = manifest_from_dict(data, root=out)
    with_tpu = plan_prefixes(m2, [edge.id], delegate="libedgetpu.so.1", edgetpu=True)[edge.id]
    assert (with_tpu.path, with_tpu.delegate) == ("edgetpu/whole_edgetpu.tflite", "libedgetpu.so.1")
    on_cpu = plan_prefixes(m2, [edge.id], delegate=None, edgetpu=True)[edge.id]
    assert (on_cpu.path, on_cpu.delegate) == (edge.extra["edgetpu"]["prefix"], None)
    assert on_cpu.int8 is not None and on_cpu.sha256 == edge.extra["edgetpu"]["sha256"]
    floating = plan_prefixes(m2, [edge.id], delegate=None, edgetpu=False)[edge.id]
    assert floating.path == edge.prefix and floating.int8 is None


def _edited(tpu_out, tmp_path, edit):
    out, _ = tpu_out
    bad = tmp_path / "out"
    shutil.copytree(out, bad)
    data = json.loads((bad / "manifest.json").read_text())
    edit(data, bad)
    (bad / "manifest.json").write_text(json.dumps(data))
    return bad


def test_bad_edgetpu_files_and_entries_are_clear(tpu_out, tmp_path):
    out, _ = tpu_out
    e = load_manifest(out).edge_only

    def no_quant(data, folder):
        del data["cuts"][e]["edgetpu"]["output_quant"]

    def missing_file(data, folder):
        (folder / data["cuts"][1]["edgetpu"]["prefix"]).unlink()

    def wrong_zero_point(data, folder):
        s, z = data["cuts"][e]["edgetpu"]["output_quant"][0]
        data["cuts"][e]["edgetpu"]["output_quant"] = [[s, z + 1 if z < 127 else z - 1]]

    cases = [(no_quant, rf"cuts\[{e}\].edgetpu: missing output_quant"),
             (missing_file, r"edgetpu/cut_1_int8.tflite: missing"),
             (wrong_zero_point, rf"cut_{e}_int8.tflite \(manifest.cuts\[{e}\].edgetpu.output_quant\): says")]
    for k, (edit, message) in enumerate(cases):
        bad = _edited(tpu_out, tmp_path / str(k), edit)
        with pytest.raises(ManifestError, match=message):
            EdgeRuntime(bad, selector="edge", board="coral-usb")
