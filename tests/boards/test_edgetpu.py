"""Edge TPU prefixes: full int8 in and out, close to the float prefix, bundled with a clear compiler note."""

import json
import shutil
import tarfile

import numpy as np
import pytest

from partnner_tf.boards.bundle import make_bundle
from partnner_tf.boards.edgetpu import COMPILER, build_edgetpu_prefixes
from partnner_tf.manifest import load_manifest, sha256_file


@pytest.fixture(scope="module")
def tpu(tiny_out, tmp_path_factory):
    m = load_manifest(tiny_out)
    cuts = [1, m.edge_only]  # the first and the last prefix: int8 conversions are slow
    dest = tmp_path_factory.mktemp("edgetpu")
    with pytest.warns(UserWarning, match="RANDOM"):
        info, message = build_edgetpu_prefixes(m, cuts, dest)
    return m, dest, info, message


def test_full_int8_io_and_close_to_float(tpu):
    from ai_edge_litert.interpreter import Interpreter

    m, dest, info, _ = tpu
    assert sorted(info) == [1, m.edge_only]
    x = np.random.default_rng(1).uniform(-1, 1, m.input.shape).astype(np.float32)
    for cut_id, entry in info.items():
        path = dest / entry["prefix"].split("/", 1)[1]
        assert sha256_file(path) == entry["sha256"]
        q = Interpreter(model_path=str(path))
        q.allocate_tensors()
        (i,), outs = q.get_input_details(), q.get_output_details()
        assert i["dtype"] == np.int8 and all(o["dtype"] == np.int8 for o in outs)
        scale, zp = entry["input_quant"][0]
        q.set_tensor(i["index"], np.clip(np.round(x / scale + zp), -128, 127).astype(np.int8))
        q.invoke()
        f = Interpreter(model_path=str(m.path(m.cuts[cut_id].prefix)))
        f.allocate_tensors()
        f.set_tensor(f.get_input_details()[0]["index"], x)
        f.invoke()
        want = f.get_tensor(f.get_output_details()[0]["index"])
        oscale, ozp = entry["output_quant"][0]
        got = (q.get_tensor(outs[0]["index"]).astype(np.float32) - ozp) * oscale
        rel = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
        assert rel < 0.1, (cut_id, rel)  # int8 of a random-calibrated tiny net: a few percent


def test_compiler_missing_message(tpu):
    *_, message = tpu
    if shutil.which(COMPILER):
        assert message is None
    else:
        assert f"{COMPILER} -s -o model/edgetpu" in message and "cut_1_int8.tflite" in message


def test_coral_bundle_carries_int8_prefixes(tiny_out, built_wheel, wheel_cache, tmp_path):
    with pytest.warns(UserWarning, match="RANDOM"):
        r = make_bundle(tiny_out, "coral-usb", tmp_path / "coral.tar.gz", policy="edge", wheel=built_wheel,
                        cache=wheel_cache, edgetpu=True)
    with tarfile.open(r.path, "r:gz") as tar:
        top = "partnner-tiny_chain-coral-usb"
        manifest = json.loads(tar.extractfile(f"{top}/model/manifest.json").read())
        names = set(tar.getnames())
    entries = {c["id"]: c["edgetpu"] for c in manifest["cuts"] if "edgetpu" in c}
    assert entries and all(f"{top}/model/{e['prefix']}" in names for e in entries.values())
    assert any("full-int8" in n for n in r.notes)


def test_cli_coral_bundle_carries_the_int8_prefixes_the_runtime_loads(tiny_out, built_wheel, wheel_cache, tmp_path):
    from click.testing import CliRunner

    from partnner_tf.boards.cli import board as board_cli
    from partnner_tf.runtime.edge import EdgeRuntime
    from partnner_tf.runtime.int8 import Int8Prefix

    out = tmp_path / "coral.tar.gz"
    with pytest.warns(UserWarning, match="RANDOM"):
        r = CliRunner().invoke(board_cli, ["bundle", str(tiny_out), "--board", "coral-usb", "-o", str(out),
                                           "--wheel", str(built_wheel), "--wheel-cache", str(wheel_cache)])
    assert r.exit_code == 0, r.output
    with tarfile.open(out, "r:gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    model = tmp_path / "unpacked" / "partnner-tiny_chain-coral-usb" / "model"
    m = load_manifest(model)
    edge_cuts = [c.id for c in m.cuts if c.prefix is not None]
    assert all("edgetpu" in m.cuts[c].extra for c in edge_cuts)  # every cut of the tiny model is one tensor
    with EdgeRuntime(model, selector="edge", board="coral-usb") as rt:
        for c in edge_cuts:
            entry, p = m.cuts[c].extra["edgetpu"], rt.cache.get(c)
            # The compiled file where the Edge TPU delegate loads, else the plain int8 one (on the CPU).
            want, sha = (entry["compiled"], entry["compiled_sha256"]) if p.delegate else (entry["prefix"], entry["sha256"])
            assert isinstance(p, Int8Prefix) and p.path == model / want and sha256_file(p.path) == sha
            assert p.prefix.inputs["image"]["dtype"] == np.int8
        x = np.random.default_rng(0).random(m.input.shape[1:], dtype=np.float32)
        res = rt.infer(x)
        assert res.cut == m.edge_only and res.outputs[0].dtype == np.float32 and np.isfinite(res.outputs[0]).all()
