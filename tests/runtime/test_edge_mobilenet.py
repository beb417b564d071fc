"""MobileNetV2 (weights=None, 96x96): every cut through the edge runtime equals the Keras model."""

import numpy as np
import pytest

from partnner_tf.manifest import load_manifest
from partnner_tf.runtime.cloud.spawn import start_daemon
from partnner_tf.runtime.edge import EdgeRuntime
from tests.runtime.edge_fixtures import keras_reference


@pytest.mark.slow
def test_every_mobilenet_cut_matches_keras(mobilenet_out):
    m = load_manifest(mobilenet_out)
    x = np.random.default_rng(2).uniform(-1, 1, (2, *m.input.shape[1:])).astype(np.float32)
    ref = keras_reference(mobilenet_out, x)[0]
    assert len(m.cuts) >= 3
    with start_daemon([mobilenet_out], timeout_s=300) as d:
        for cut in m.cuts:
            with EdgeRuntime(mobilenet_out, cloud=d.endpoint, selector=f"fixed:{cut.id}") as rt:
                for i, r in enumerate(rt.stream(x)):
                    assert not r.fallback, f"cut {cut.id}: {r.error}"
                    assert r.cut == cut.id
                    got = r.outputs[0][0]
                    # Untrained softmax outputs are all near 1/1000: compare relative to that scale.
                    np.testing.assert_allclose(got, ref[i], rtol=1e-3, atol=1e-6, err_msg=f"cut {cut.id}")
