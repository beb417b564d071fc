"""Build the cloud side of a cut: the suffix of the full Keras model as a warmed tf.function.

Shared by the converter's verification and the cloud daemon, so both run exactly the same graph.
TensorFlow is imported inside the functions (this package is importable without it).
"""

import numpy as np

from partnner_tf.errors import ConversionError, ManifestError
from partnner_tf.lazy import require


def load_model(path):
    """Load the full model a manifest names (``model.file``) without compiling it.

    ``model.file`` is a ``.keras`` file, or for a model converted from a TensorFlow SavedModel
    the ``saved_model.pb`` of its folder (see :func:`wrap_saved_model`).

    Raises:
        ManifestError: the file is missing or not a Keras model.
    """
    from pathlib import Path

    keras = require("keras", "cloud")
    if Path(path).is_dir() or Path(path).name == SAVED_MODEL_PB:
        try:
            return wrap_saved_model(path)
        except ConversionError as exc:
            raise ManifestError(str(exc)) from exc
    try:
        return keras.saving.load_model(str(path), compile=False)
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError(f"cannot load the Keras model {path}: {exc}") from exc


SAVED_MODEL_PB = "saved_model.pb"


def wrap_saved_model(path, input_shape=None, endpoint="serving_default"):
    """A Functional keras.Model around a TensorFlow SavedModel: one opaque layer, no inner cuts.

    Args:
        path: the SavedModel folder or its ``saved_model.pb``.
        input_shape: (H, W, C) when the signature leaves sizes unknown.

    Raises:
        ConversionError: no such signature, several inputs, or unknown input sizes.
    """
    from pathlib import Path

    tf = require("tensorflow", "cloud")
    keras = require("keras", "cloud")
    folder = Path(path)
    folder = folder.parent if folder.name == SAVED_MODEL_PB else folder
    try:
        loaded = tf.saved_model.load(str(folder))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConversionError(f"cannot load the SavedModel {folder}: {exc}") from exc
    if endpoint not in loaded.signatures:
        raise ConversionError(
            f"SavedModel {folder} has no signature {endpoint!r}; it has {sorted(loaded.signatures)}"
        )
    inputs = loaded.signatures[endpoint].structured_input_signature[1]
    if len(inputs) != 1:
        raise ConversionError(
            f"SavedModel {folder} takes {len(inputs)} inputs {sorted(inputs)}; expected one"
        )
    (name, spec), = inputs.items()
    shape = tuple(spec.shape[1:])
    if any(d is None for d in shape):
        if input_shape is None or len(input_shape) != len(shape):
            raise ConversionError(
                f"SavedModel {folder} input {name!r} has shape {spec.shape}; give --input-shape "
                f"with {len(shape)} sizes"
            )
        shape = tuple(input_shape)
    inp = keras.Input(shape, dtype=spec.dtype.name, name=name)
    out = keras.layers.TFSMLayer(str(folder), call_endpoint=endpoint, name="saved_model")(inp)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out, key=_natural)]
        out = out[0] if len(out) == 1 else out
    return keras.Model(inp, out, name=folder.name)


def _natural(key):
    """output_2 before output_10."""
    head, _, tail = key.rpartition("_")
    return (head, int(tail)) if tail.isdigit() else (key, -1)


def _layers_and_specs(model, cut):
    """(layer names, boundary shapes, dtypes) of a cut given as a manifest Cut or dict."""
    if isinstance(cut, dict):
        layers = list(cut.get("layers") or [])
        boundary = [(tuple(b["shape"]), b["dtype"]) for b in cut.get("boundary") or []]
        prefix = cut.get("prefix")
    else:
        layers = list(cut.layers)
        boundary = [(tuple(b.shape), b.dtype) for b in cut.boundary]
        prefix = cut.prefix
    if not boundary:
        if layers:
            boundary = [((1, *model.get_layer(n).output.shape[1:]), "float32") for n in layers]
        elif prefix is None:
            boundary = [((1, *model.inputs[0].shape[1:]), model.inputs[0].dtype or "float32")]
    return layers, boundary, prefix


class Suffix:
    """The cloud part of one cut: ``suffix(tensors) -> list of np.ndarray`` (model output order).

    ``tensors`` is one array per boundary tensor in the cut's ``layers`` order (a single array is
    accepted for a one-tensor boundary). For the edge-only cut the suffix is the identity.

    Attributes:
        fn: the warmed ``tf.function`` (None for the edge-only cut).
        model: the ``keras.Model`` from the boundary to the model outputs.
        specs: (shape, dtype) of each boundary tensor, batch 1 included.
    """

    def __init__(self, fn, model, specs):
        self.fn = fn
        self.model = model
        self.specs = specs

    def __call__(self, tensors):
        if isinstance(tensors, np.ndarray) or not isinstance(tensors, (list, tuple)):
            tensors = [tensors]
        if self.fn is None:
            return [np.asarray(t) for t in tensors]
        if len(tensors) != len(self.specs):
            raise ValueError(
                f"this suffix takes {len(self.specs)} boundary tensor(s); received {len(tensors)}"
            )
        out = self.fn(*[np.asarray(t, dtype=d) for t, (_, d) in zip(tensors, self.specs)])
        return [o.numpy() for o in out]

    def eager(self, tensors):
        """The same sub-model run eagerly: no tracing (the converter checks every cut this way)."""
        if isinstance(tensors, np.ndarray) or not isinstance(tensors, (list, tuple)):
            tensors = [tensors]
        if self.model is None:
            return [np.asarray(t) for t in tensors]
        xs = [np.asarray(t, dtype=d) for t, (_, d) in zip(tensors, self.specs)]
        out = self.model(xs[0] if len(xs) == 1 else xs, training=False)
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def build_suffix(model, cut, warm=True):
    """The suffix of ``model`` after ``cut`` (for cut 0, the whole model), warmed once.

    Args:
        model: the full ``keras.Model`` (see :func:`load_model`).
        cut: a :class:`partnner_tf.manifest.Cut` or a manifest cut dict.
        warm: run it once on zeros so the first real request does not pay the tracing.

    Raises:
        ConversionError: a layer of the cut is not in the model.
    """
    tf = require("tensorflow", "cloud")
    keras = require("keras", "cloud")
    layers, specs, prefix = _layers_and_specs(model, cut)
    if prefix is not None and not layers:
        return Suffix(None, None, [])  # edge-only: the prefix already gave the model outputs
    try:
        inputs = [model.get_layer(n).output for n in layers] if layers else [model.inputs[0]]
    except ValueError as exc:
        raise ConversionError(f"cut layers {layers} are not all in model {model.name!r}: {exc}") from exc
    outs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
    # A bare tensor (not a one-element list) for a single input: the list form warns per call.
    sub = keras.Model(inputs[0] if len(inputs) == 1 else inputs, outs) if layers else model
    signature = [tf.TensorSpec((None, *s[1:]), d) for s, d in specs]

    @tf.function(input_signature=signature, reduce_retracing=True)
    def run(*xs):
        out = sub(list(xs) if len(xs) > 1 else xs[0], training=False)
        return [out] if not isinstance(out, (list, tuple)) else list(out)

    suffix = Suffix(run, sub, specs)
    if warm:
        suffix([np.zeros(s, d) for s, d in specs])
    return suffix
