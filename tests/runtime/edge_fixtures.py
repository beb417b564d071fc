"""Fixtures for the edge runtime tests: a converted tiny model, its Keras reference, a real daemon."""

import numpy as np
import pytest

#: Float32 TFLite vs Keras on the tiny models (MEASURED.md: <= 3.4e-7 max abs on MobileNetV2).
ATOL = 1e-5


@pytest.fixture(scope="module")
def residual_out(converted_tiny):
    """The tiny residual model converted with every cut."""
    return converted_tiny("residual")


@pytest.fixture(scope="module")
def frames(residual_out):
    """Seeded frames for the residual model (no batch axis)."""
    from partnner_tf.manifest import load_manifest

    spec = load_manifest(residual_out).input
    return np.random.default_rng(1).random((12, *spec.shape[1:]), dtype=np.float32)


def keras_reference(out_dir, x):
    """The full Keras model's outputs for a batch ``x`` (list, one array per model output)."""
    import keras

    model = keras.saving.load_model(out_dir / "model.keras", compile=False)
    y = model.predict(x, verbose=0)
    return y if isinstance(y, list) else [y]


@pytest.fixture(scope="module")
def reference(residual_out, frames):
    return keras_reference(residual_out, frames)


@pytest.fixture(scope="module")
def daemon(residual_out):
    """A real cloud daemon process serving the residual model on a random loopback port."""
    from partnner_tf.runtime.cloud.spawn import start_daemon

    with start_daemon([residual_out]) as d:
        yield d


def assert_matches(result, reference, i):
    """One frame's outputs equal the Keras model's for frame ``i``."""
    assert len(result.outputs) == len(reference)
    for got, want in zip(result.outputs, reference):
        np.testing.assert_allclose(np.asarray(got)[0], want[i], atol=ATOL, rtol=1e-4)
