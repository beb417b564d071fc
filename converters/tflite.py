"""Convert the prefix of a model (input up to a cut layer) to a TFLite flatbuffer."""

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from partnner_tf.errors import ConversionError

log = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "fp16", "int8")
#: Frames the int8 calibration uses (random or from --calibration).
CALIBRATION_FRAMES = 32
RANDOM_CALIBRATION_WARNING = (
    "int8 calibration on RANDOM data (no --calibration DIR given): the int8 prefixes will be "
    "inaccurate on real inputs"
)
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def prefix_model(model, layer):
    """``keras.Model`` from the model input to ``layer``'s output (the whole model for None)."""
    import keras

    if layer is None:
        return model
    return keras.Model(model.inputs[0], model.get_layer(layer).output, name=f"prefix_{layer}")


def load_calibration(directory, input_shape, limit=CALIBRATION_FRAMES):
    """Frames for int8 calibration from a folder of images or .npy arrays.

    Images are resized to the model's input and scaled to [0, 1]; ``.npy`` files are taken as
    already preprocessed, shaped like the input with or without a batch axis.

    Raises:
        ConversionError: the folder is missing, empty, or holds arrays of the wrong shape.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ConversionError(f"--calibration: expected a folder of images or .npy files, received {directory}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXT + (".npy",))
    if not files:
        raise ConversionError(f"--calibration: {directory} holds no image (.png/.jpg...) or .npy file")
    frames = []
    for path in files:
        if path.suffix.lower() == ".npy":
            arr = np.load(path).astype(np.float32)
            arr = arr.reshape((-1, *input_shape)) if arr.size % np.prod(input_shape) == 0 else None
            if arr is None:
                raise ConversionError(
                    f"--calibration: {path.name} does not hold arrays of the input shape {tuple(input_shape)}"
                )
            frames.extend(arr)
        else:
            frames.append(_load_image(path, input_shape))
        if len(frames) >= limit:
            break
    return [f[None].astype(np.float32) for f in frames[:limit]]


def _load_image(path, input_shape):
    from PIL import Image

    h, w, c = input_shape
    try:
        img = Image.open(path).convert("L" if c == 1 else "RGB").resize((w, h))
    except OSError as exc:
        raise ConversionError(f"--calibration: cannot read image {path}: {exc}") from exc
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr.reshape(h, w, c)


def random_frames(input_shape, n=CALIBRATION_FRAMES, seed=0):
    """Uniform [-1, 1] frames (the range most Keras Applications preprocess to)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, *input_shape)).astype(np.float32) for _ in range(n)]


def convert_prefix(model, layer, quantize="none", calibration=None, select_tf_ops=False):
    """TFLite flatbuffer of the prefix ending at ``layer`` (the whole model for None).

    Converts a concrete function of the prefix (batch 1) without a trackable object, then writes
    the ``serving_default`` signature into the flatbuffer (:func:`add_signature`). Measured here:
    4-7x faster than ``model.export()`` + ``from_saved_model`` (MobileNetV2 full model 6.8 s vs
    32 s), same bytes to within metadata, same outputs. With a trackable object the weights are
    not embedded (NaN outputs, MEASURED.md), so none is passed.

    Args:
        calibration: list of input frames for int8 (random ones, with a warning, when None).

    Raises:
        ConversionError: naming the ops TFLite cannot convert and offering --select-tf-ops.
    """
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ConversionError(f"quantize: expected one of {QUANTIZATIONS}, received {quantize!r}")
    sub = prefix_model(model, layer)
    inp = model.inputs[0]
    spec = tf.TensorSpec((1, *inp.shape[1:]), inp.dtype or "float32", name=input_key(model))
    fn = tf.function(lambda x: sub(x, training=False)).get_concrete_function(spec)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # the "deprecated conversion path" notice is expected
    try:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    finally:
        absl.setLevel(level)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        frames = calibration
        if frames is None:
            warnings.warn(RANDOM_CALIBRATION_WARNING, stacklevel=2)
            frames = random_frames(tuple(inp.shape[1:]))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([f] for f in frames)
        # Integer kernels inside, float32 in and out: the boundary stays float32.
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    if select_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    conv.target_spec.supported_ops = ops
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            blob = conv.convert()
    except Exception as exc:  # the converter raises ConverterError or bare Exception
        raise _conversion_error(exc, layer, select_tf_ops, sub, fn.graph) from exc
    outputs = [t.name.split(":")[0] for t in fn.outputs]
    return add_signature(blob, input_key(model), outputs)


def input_key(model):
    """Signature key of the model input in every prefix: the Keras input's name."""
    return re.sub(r"[^A-Za-z0-9_]", "_", model.inputs[0].name) or "input"


def add_signature(blob, input_name, output_tensors):
    """Write a ``serving_default`` signature into a flatbuffer that has none.

    The input is keyed ``input_name``; outputs ``output_0``, ``output_1``... in the order of the
    converted function's outputs (matched by tensor name, since TFLite may reorder them).
    """
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    graph = model.subgraphs[0]
    names = {graph.tensors[i].name.decode(): i for i in graph.outputs}
    if len(graph.inputs) != 1 or sorted(names) != sorted(output_tensors):
        raise ConversionError(
            f"unexpected TFLite graph: inputs {list(graph.inputs)}, outputs {sorted(names)}; "
            f"expected one input and outputs {output_tensors}"
        )

    def tensor_map(key, index):
        t = fb.TensorMapT()
        t.name, t.tensorIndex = key, int(index)
        return t

    sig = fb.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs = [tensor_map(input_name, graph.inputs[0])]
    sig.outputs = [tensor_map(f"output_{i}", names[n]) for i, n in enumerate(output_tensors)]
    model.signatureDefs = [sig]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _conversion_error(exc, layer, select_tf_ops, sub, graph):
    text = str(exc)
    ops = set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op", text))
    for listed in re.findall(r"(?:Custom|Flex|TF Select) ops: ([^\n]+)", text):
        ops.update(f"tf.{o.strip()}" for o in listed.split(",") if o.strip())
    where = f"the prefix up to layer {layer!r}" if layer else "the whole model"
    if ops:
        culprits = _layers_with_ops(graph, {o[3:] for o in ops}, {lay.name for lay in sub.layers})
        inside = f" in layer(s) {', '.join(culprits)}" if culprits else ""
        hint = (
            "" if select_tf_ops else
            "; retry with --select-tf-ops (select_tf_ops=True) to embed them as TensorFlow ops "
            "(the board's interpreter must then have the Flex delegate)"
        )
        return ConversionError(
            f"TFLite cannot convert {where}: unsupported op(s) {', '.join(sorted(ops))}{inside}{hint}"
        )
    first = text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    return ConversionError(f"TFLite conversion of {where} failed: {first}")


def _layers_with_ops(graph, op_types, layer_names):
    """Layers whose name scope holds an op of ``op_types`` in the traced prefix graph."""
    found = []
    for op in graph.get_operations():
        if op.type not in op_types:
            continue
        for seg in op.name.split("/"):
            for cand in (seg, re.sub(r"_\d+$", "", seg)):  # Keras suffixes scopes with _1, _2
                if cand in layer_names and cand not in found:
                    found.append(cand)
    return found


def signature_io(tflite_bytes):
    """(inputs, outputs) of the prefix's ``serving_default`` signature: {key: (shape, dtype)}."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    runner = interp.get_signature_runner("serving_default")

    def specs(details):
        return {k: ((1, *[int(d) for d in v["shape"][1:]]), np.dtype(v["dtype"]).name) for k, v in details.items()}

    return specs(runner.get_input_details()), specs(runner.get_output_details())
