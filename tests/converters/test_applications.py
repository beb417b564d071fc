"""Integration on a real Keras Application: MobileNetV2 (weights=None) at 96x96, pareto cuts."""

import numpy as np
import pytest

from partnner_tf.manifest import load_manifest, verify_files

pytestmark = pytest.mark.slow


def test_mobilenet_pareto_conversion(mobilenet_out):
    from ai_edge_litert.interpreter import Interpreter

    from partnner_tf.runtime.cloud.suffix import build_suffix, load_model

    m = load_manifest(mobilenet_out)
    verify_files(m)
    raw = m.raw
    assert raw["candidate_cuts"] == 74
    sizes = [c.boundary_bytes for c in m.cuts[:-1]]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)  # pareto
    assert m.cuts[-1].boundary_bytes == 0 and m.cuts[0].boundary_bytes == 96 * 96 * 3 * 4
    for c in m.cuts:
        v = c.extra["verify"]
        assert v["rel_err"] <= 1e-4 and v.get("boundary_rel_err", 0.0) <= 1e-4, (c.id, v)
    # One mid cut end to end, as the edge and the cloud will run it.
    mid = m.cuts[len(m.cuts) // 2]
    model = load_model(m.path(m.model_file))
    x = np.random.default_rng(3).uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32)
    runner = Interpreter(model_path=str(m.path(mid.prefix))).get_signature_runner("serving_default")
    key = raw["cuts"][mid.id]["boundary"][0]["signature_key"]
    boundary = runner(**{raw["model"]["input"]["signature_key"]: x})[key]
    got = build_suffix(model, mid)([boundary])[0]
    want = np.asarray(model(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
