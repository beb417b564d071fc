"""Build and verify cuts, in this process or in a pool of worker processes (TensorFlow in each)."""

import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from partnner_tf.errors import ConversionError


@dataclass(frozen=True)
class Task:
    """One cut to build: its prefix goes to ``prefix_path`` (None for the cloud-only cut)."""

    cut_id: int
    layer: str
    position: int
    is_edge: bool
    prefix_path: str
    key: str


@dataclass(frozen=True)
class Options:
    model_path: str
    quantize: str
    calibration: list
    select_tf_ops: bool
    layers: tuple = ()  # cut layers this conversion builds (their Keras outputs are computed once)


_STATE = {}


def _init(options):
    """Load the saved model.keras once per process and compute the reference outputs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from partnner_tf.converters import tflite, verify
    from partnner_tf.runtime.cloud.suffix import load_model

    try:
        model = load_model(options.model_path)
    except Exception as exc:
        raise ConversionError(
            f"the model saved as {os.path.basename(options.model_path)} does not load back ({exc}); "
            "custom layers must be registered with keras.saving.register_keras_serializable"
        ) from exc
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if options.quantize == "int8" and options.calibration:
        # Calibration frames resemble real inputs better than the random verification frames.
        frames = options.calibration[-verify.VERIFY_FRAMES:]
    else:
        frames = tflite.random_frames(shape, verify.VERIFY_FRAMES, seed=1)
    _STATE.update(options=options, model=model, frames=frames,
                  reference=verify.reference_outputs(model, frames),
                  boundaries=verify.layer_outputs(model, list(options.layers), frames))


def _init_pool(options):
    # An exception in a pool initializer only shows as BrokenProcessPool: keep it for build().
    try:
        _init(options)
    except Exception as exc:  # re-raised by build() in the same process
        _STATE["error"] = exc


def _sort_keys(keys):
    """TFLite names outputs output_0, output_1...: order them by number, not as strings."""
    def num(k):
        tail = k.rsplit("_", 1)[-1]
        return (0, int(tail), k) if tail.isdigit() else (1, 0, k)
    return sorted(keys, key=num)


def build(task):
    """Convert and verify one cut; returns a JSON-able result dict."""
    from partnner_tf.converters import tflite, verify

    if "error" in _STATE:
        raise _STATE["error"]
    opt, model = _STATE["options"], _STATE["model"]
    cut = {"id": task.cut_id, "layers": [task.layer] if task.layer else [],
           "prefix": task.prefix_path, "boundary": []}
    if task.prefix_path is None:
        figures = verify.verify_cut(model, cut, None, _STATE["frames"], _STATE["reference"], opt.quantize)
        return {"inputs": {}, "outputs_ordered": [], "verify": figures}
    blob = tflite.convert_prefix(model, task.layer, opt.quantize, opt.calibration, opt.select_tf_ops)
    with open(task.prefix_path, "wb") as fh:
        fh.write(blob)
    inputs, outputs = tflite.signature_io(blob)
    keys = _sort_keys(outputs)
    ordered = [[k, [list(outputs[k][0]), outputs[k][1]]] for k in keys]
    if task.layer:
        cut["boundary"] = [{"shape": s, "dtype": d} for _, (s, d) in ordered]
    if len(inputs) != 1:
        raise ConversionError(f"prefix of cut {task.cut_id} has {len(inputs)} inputs; expected 1")
    figures = verify.verify_cut(model, cut, blob, _STATE["frames"], _STATE["reference"], opt.quantize,
                                input_key=next(iter(inputs)), output_keys=keys,
                                select_tf_ops=opt.select_tf_ops,
                                boundary_reference=_STATE["boundaries"].get(task.layer))
    return {
        "inputs": {k: [list(s), d] for k, (s, d) in inputs.items()},
        "outputs_ordered": ordered,
        "verify": _jsonable(figures),
    }


def _jsonable(d):
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in d.items()}


def run_all(tasks, options, jobs):
    """Yield (task, result) as each finishes; ``jobs`` > 1 uses spawned worker processes."""
    jobs = min(jobs, len(tasks))
    if jobs <= 1:
        _init(options)
        try:
            for t in tasks:
                yield t, build(t)
        finally:
            _STATE.clear()
        return
    ctx = multiprocessing.get_context("spawn")  # forking a process that holds TF state is unsafe
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_pool, initargs=(options,)) as pool:
        pending = {pool.submit(build, t): t for t in tasks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    task = pending.pop(fut)
                    yield task, fut.result()
        finally:
            for fut in pending:
                fut.cancel()
