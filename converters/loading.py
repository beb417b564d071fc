"""Turn what the user names (a keras.Model, a file, a SavedModel, an Applications name) into a
single-input Functional model with no nested sub-models."""

import warnings
import zipfile
from pathlib import Path

from partnner_tf.errors import ConversionError

APPLICATIONS_PREFIX = "keras.applications."


def parse_input_shape(text):
    """``"224,224,3"`` -> (224, 224, 3); None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    if isinstance(text, list):
        return tuple(text)
    try:
        shape = tuple(int(s) for s in str(text).replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise ConversionError(f"input shape: expected positive integers like 224,224,3; received {text!r}")
    return shape


def load(model, input_shape=None):
    """Load and normalise ``model``; returns (functional keras.Model, display name).

    Raises:
        ConversionError: the file cannot be read, the model has no layer graph, several inputs,
            or a name that is not a Keras Application.
    """
    import keras

    input_shape = parse_input_shape(input_shape)
    if isinstance(model, keras.Model):
        loaded, name = model, model.name
    elif isinstance(model, str) and model.startswith(APPLICATIONS_PREFIX):
        loaded, name = _application(model[len(APPLICATIONS_PREFIX):], input_shape), model.split(".")[-1]
    elif isinstance(model, (str, Path)):
        loaded, name = _load_path(Path(model), input_shape), Path(model).stem
    else:
        raise ConversionError(
            "model: expected a keras.Model, a .keras/.h5 file, a SavedModel folder or "
            f"'keras.applications.NAME'; received {type(model).__name__}"
        )
    return normalise(loaded, input_shape), name


def _application(app, input_shape):
    import keras

    factory = getattr(keras.applications, app, None)
    if factory is None or not callable(factory) or app[:1].islower():
        known = sorted(n for n in dir(keras.applications) if n[:1].isupper())
        raise ConversionError(f"unknown Keras Application {app!r}; known: {', '.join(known)}")
    # Same name, same layer names and weights (fresh name counters, fixed seed): the cache keys
    # on content, so a second conversion in the same process must build an identical model.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    try:
        return factory(weights=None, input_shape=input_shape)
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"cannot build keras.applications.{app} with input shape {input_shape}: {exc}") from exc


def _load_path(path, input_shape=None):
    import keras

    if not path.exists():
        raise ConversionError(f"model file {path} does not exist")
    if path.is_dir():
        return _load_saved_model(path, input_shape)
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise ConversionError(
            f"model file {path}: expected a .keras or .h5 file or a SavedModel folder; received {suffix or 'no extension'!r}"
        )
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ConversionError(f"model file {path} is not a valid .keras archive (corrupt or not a Keras file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, KeyError, zipfile errors...
        raise ConversionError(f"cannot load model file {path}: {type(exc).__name__}: {_first_line(exc)}") from exc


def _load_saved_model(path, input_shape):
    from partnner_tf.runtime.cloud.suffix import SAVED_MODEL_PB, wrap_saved_model

    if not (path / SAVED_MODEL_PB).exists():
        raise ConversionError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
    warnings.warn(
        f"{path} is a TensorFlow SavedModel: it keeps the computation but not the Keras layer "
        "graph, so only the cloud-only and edge-only cuts exist and its MACs are unknown (0). "
        "Convert the .keras (or tf.keras .h5) file to cut inside the model",
        stacklevel=3,
    )
    model = wrap_saved_model(path, input_shape)
    model._partnner_saved_model = str(path)  # convert() ships the folder instead of model.keras
    return model


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def normalise(model, input_shape=None):
    """A Functional model of the same layers: Sequential wrapped, nested models flattened.

    Raises:
        ConversionError: subclassed model without a graph, unbuilt model without an input shape,
            several inputs, or nested models whose layer names clash.
    """
    import keras

    if isinstance(model, keras.Sequential):
        model = _sequential(model, input_shape)
    elif not _is_functional(model):
        raise ConversionError(
            f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}) with no layer "
            "graph to cut; rebuild it with the Functional API (keras.Input + layer calls) or keras.Sequential"
        )
    if len(model.inputs) != 1:
        names = [t.name for t in model.inputs]
        raise ConversionError(
            f"model {model.name!r} has {len(names)} inputs {names}; partnner-tf cuts single-input "
            "models (expected one input tensor)"
        )
    if any(isinstance(layer, keras.Model) for layer in model.layers):
        model = flatten(model)
    return model


def _is_functional(model):
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def _sequential(model, input_shape):
    import keras

    if not model.built or not getattr(model, "_functional", None):
        if input_shape is None:
            raise ConversionError(
                f"Sequential model {model.name!r} has no input shape; give --input-shape H,W,C"
            )
        model.build((None, *input_shape))
    if not getattr(model, "_functional", None):
        raise ConversionError(f"Sequential model {model.name!r} could not be built as a layer graph")
    return keras.Model(model.inputs[0], model.outputs[0] if len(model.outputs) == 1 else model.outputs,
                       name=model.name)


def flatten(model):
    """Replay ``model``'s graph with every nested Functional/Sequential model inlined.

    The inner layers are reused (weights shared), so cuts can fall inside a nested backbone.
    """
    import keras

    def operation_fn(op):
        if isinstance(op, keras.Sequential):
            op = op._functional
        if isinstance(op, keras.Model):
            if not _is_functional(op):
                raise ConversionError(
                    f"nested model {op.name!r} is a subclassed keras.Model ({type(op).__name__}) "
                    "with no layer graph; it cannot be flattened to cut inside it"
                )
            return lambda *args, **kwargs: op._run_through_graph(
                args[0] if len(args) == 1 else list(args), operation_fn=operation_fn
            )
        return op

    inp = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype,
                      name=model.inputs[0].name)
    outputs = model._run_through_graph(inp, operation_fn=operation_fn)
    try:
        return keras.Model(inp, outputs, name=model.name)
    except ValueError as exc:
        raise ConversionError(
            f"model {model.name!r} holds nested models that cannot be flattened ({_first_line(exc)}); "
            "give the inner layers unique names or rebuild the model without nesting"
        ) from exc
