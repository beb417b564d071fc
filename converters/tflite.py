"""Convert the prefix of a model (input up to a cut layer) to a TFLite flatbuffer."""

import logging
import re
import shutil
import tempfile
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

    Goes through ``model.export()`` and ``TFLiteConverter.from_saved_model``: about twice as fast as
    ``from_keras_model`` (MEASURED.md), and unlike ``from_concrete_functions`` with a trackable
    object it keeps the weights.

    Args:
        calibration: list of input frames for int8 (random ones, with a warning, when None).

    Raises:
        ConversionError: naming the ops TFLite cannot convert and offering --select-tf-ops.
    """
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ConversionError(f"quantize: expected one of {QUANTIZATIONS}, received {quantize!r}")
    sub = prefix_model(model, layer)
    tmp = tempfile.mkdtemp(prefix="partnner-export-")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub.export(tmp, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if select_tf_ops:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        if quantize == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            frames = calibration
            if frames is None:
                warnings.warn(RANDOM_CALIBRATION_WARNING, stacklevel=2)
                frames = random_frames(tuple(model.inputs[0].shape[1:]))
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([f] for f in frames)
            # Integer kernels inside, float32 in and out: the boundary stays float32.
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if select_tf_ops:
                ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        conv.target_spec.supported_ops = ops
        try:
            return conv.convert()
        except Exception as exc:  # the converter raises ConverterError or bare Exception
            raise _conversion_error(exc, layer, select_tf_ops, [l.name for l in sub.layers]) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _conversion_error(exc, layer, select_tf_ops, layer_names=()):
    text = str(exc)
    ops = set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op", text))
    for listed in re.findall(r"(?:Custom|Flex|TF Select) ops: ([^\n]+)", text):
        ops.update(f"tf.{o.strip()}" for o in listed.split(",") if o.strip())
    where = f"the prefix up to layer {layer!r}" if layer else "the whole model"
    if ops:
        culprits = _layers_in(text, layer_names)
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


def _layers_in(text, layer_names):
    """Layer names found in the converter's op locations ("model_1/layer_1/Op@...")."""
    names = set(layer_names)
    found = []
    for path in re.findall(r'"([^"@]+)@', text):
        for seg in path.split("/"):
            base = re.sub(r"_\d+$", "", seg)
            for cand in (seg, base):
                if cand in names and cand not in found:
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
