"""Edge TPU prefixes: full-int8 copies (int8 input and output) of a model's prefixes, compiled when edgetpu_compiler is here."""

import logging
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np

from partnner_tf.errors import BoardFitError, ConversionError
from partnner_tf.lazy import require
from partnner_tf.manifest import sha256_file

log = logging.getLogger(__name__)

COMPILER = "edgetpu_compiler"
#: Folder of the Edge TPU files inside a bundle's model/ folder.
EDGETPU_DIR = "edgetpu"


def compiler_missing_message(files):
    """What to run, and where, when ``edgetpu_compiler`` is not on PATH."""
    names = " ".join(f"model/{EDGETPU_DIR}/{Path(f).name}" for f in files) or f"model/{EDGETPU_DIR}/*.tflite"
    return (
        f"{COMPILER} is not on PATH: the bundle carries the full-int8 prefixes uncompiled (they run on "
        "the board's CPU). To run them on the Edge TPU, bundle again on an x86_64 Debian/Ubuntu machine "
        f"with Coral's edgetpu-compiler package installed, or compile them there in the unpacked bundle: "
        f"{COMPILER} -s -o model/{EDGETPU_DIR} {names}"
    )


def full_int8_prefix(model, layer, frames):
    """TFLite flatbuffer of the prefix ending at ``layer`` with int8 weights, activations, input and output.

    The converter's ``--quantize int8`` keeps float32 input and output (the boundary the cloud
    reads stays float); the Edge TPU compiler needs integer I/O, so these copies are made apart.
    """
    tf = require("tensorflow", "convert")
    from partnner_tf.converters.tflite import prefix_model

    sub = prefix_model(model, layer)
    tmp = tempfile.mkdtemp(prefix="partnner-edgetpu-")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub.export(tmp, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([f] for f in frames)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        try:
            return conv.convert()
        except Exception as exc:  # TFLite raises ConverterError or bare Exception
            raise ConversionError(
                f"full-int8 conversion of the prefix ending at {layer or 'the model output'} failed: "
                f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
            ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _quant(details):
    return [[float(d["quantization"][0]), int(d["quantization"][1])] for d in details]


def _calibration_frames(manifest, calibration):
    from partnner_tf.converters.tflite import RANDOM_CALIBRATION_WARNING, load_calibration, random_frames

    shape = tuple(manifest.input.shape[1:])
    if calibration:
        return load_calibration(calibration, shape)
    warnings.warn(RANDOM_CALIBRATION_WARNING, stacklevel=3)
    return random_frames(shape)


def build_edgetpu_prefixes(manifest, cut_ids, dest, calibration=None):
    """Full-int8 (and, with the compiler, Edge TPU compiled) prefixes of ``cut_ids`` into ``dest``.

    Returns:
        (info, message): ``info`` maps cut id -> the manifest's ``edgetpu`` entry (paths relative
        to the model folder, sha256, input/output quantization, compiled file or None);
        ``message`` says what to do when the compiler is missing, else None.
    """
    from partnner_tf.runtime.cloud.suffix import load_model
    from partnner_tf.boards.fit import _interpreter_module

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model = load_model(manifest.path(manifest.model_file))
    frames = _calibration_frames(manifest, calibration)
    Interpreter = _interpreter_module().Interpreter
    compiler = shutil.which(COMPILER)
    info, files = {}, []
    for cut_id in cut_ids:
        cut = manifest.cuts[cut_id]
        if len(cut.layers) > 1:
            log.warning("cut %d crosses %d tensors: no Edge TPU copy", cut_id, len(cut.layers))
            continue
        path = dest / f"cut_{cut_id}_int8.tflite"
        path.write_bytes(full_int8_prefix(model, cut.layers[0] if cut.layers else None, frames))
        interp = Interpreter(model_path=str(path))
        if np.dtype(interp.get_input_details()[0]["dtype"]) != np.int8:
            raise BoardFitError(f"cut {cut_id}: the full-int8 prefix did not get int8 input")
        entry = {
            "prefix": f"{EDGETPU_DIR}/{path.name}",
            "sha256": sha256_file(path),
            "input_quant": _quant(interp.get_input_details()),
            "output_quant": _quant(interp.get_output_details()),
            "compiled": None,
        }
        files.append(path)
        if compiler:
            proc = subprocess.run([compiler, "-s", "-o", str(dest), str(path)], capture_output=True, text=True)
            compiled = dest / f"cut_{cut_id}_int8_edgetpu.tflite"
            if proc.returncode != 0 or not compiled.is_file():
                raise BoardFitError(f"{COMPILER} failed on cut {cut_id}: {proc.stdout[-800:]}{proc.stderr[-800:]}")
            entry["compiled"] = f"{EDGETPU_DIR}/{compiled.name}"
            entry["compiled_sha256"] = sha256_file(compiled)
        info[cut_id] = entry
    return info, (None if compiler else compiler_missing_message(files))
