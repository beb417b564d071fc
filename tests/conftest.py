"""Session fixtures shared across test packages: tiny models and converted outputs."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_model():
    """Factory: ``tiny_model(kind)`` -> a fresh seeded keras.Model ("chain", "residual", ...)."""
    from tests.models import get_model

    return get_model


@pytest.fixture(scope="session")
def converted_tiny(tmp_path_factory):
    """Function ``(kind, quantize="none", cuts="all") -> out_dir``, converted once per session."""
    from partnner_tf.converters import convert
    from tests.models import get_model

    done = {}
    cache = tmp_path_factory.mktemp("convert-cache")

    def get(kind, quantize="none", cuts="all"):
        key = (kind, quantize, cuts if isinstance(cuts, str) else tuple(cuts))
        if key not in done:
            out = tmp_path_factory.mktemp(f"tiny-{kind}-{quantize}") / "out"
            convert(get_model(kind), out, cuts=cuts, quantize=quantize, cache_dir=cache)
            done[key] = out
        return done[key]

    return get


@pytest.fixture(scope="session")
def mobilenet_out(tmp_path_factory):
    """MobileNetV2 (weights=None) at 96x96x3, pareto cuts, converted once per session."""
    from partnner_tf.converters import convert

    out = tmp_path_factory.mktemp("mobilenet") / "out"
    convert("keras.applications.MobileNetV2", out, input_shape=(96, 96, 3), cuts="pareto",
            cache_dir=tmp_path_factory.mktemp("mobilenet-cache"))
    return out
