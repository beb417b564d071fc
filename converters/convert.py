"""convert(): a Keras model becomes verified per-cut TFLite prefixes, model.keras and a manifest."""

import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from partnner_tf import __version__
from partnner_tf.constants import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
from partnner_tf.converters import cache as cache_mod
from partnner_tf.converters import worker
from partnner_tf.converters.tflite import QUANTIZATIONS
from partnner_tf.errors import ConversionError, ManifestError
from partnner_tf.manifest import load_manifest, sha256_file, verify_files, write_json_atomic

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
PREFIX_DIR = "prefixes"
SAVED_MODEL_DIR = "saved_model"


def convert(model, out_dir, *, input_shape=None, cuts="pareto", quantize="none", calibration=None,
            jobs=1, select_tf_ops=False, cache_dir=None, progress=False):
    """Convert ``model`` into ``out_dir``: manifest.json, model.keras, prefixes/cut_<id>.tflite.

    Every cut is verified (LiteRT prefix + TensorFlow suffix against the full model) before
    ``out_dir`` is written; ``out_dir`` appears whole or not at all.

    Args:
        model: a keras.Model, a .keras/.h5 path or "keras.applications.NAME" (weights=None).
        input_shape: (H, W, C) or "H,W,C" for an Applications name or an unbuilt Sequential.
        cuts: "pareto", "all", or layer names (list or comma-separated).
        quantize: "none" (float32), "fp16" or "int8".
        calibration: folder of images/.npy for int8 (random data, with a warning, if None).
        jobs: worker processes converting prefixes in parallel.
        select_tf_ops: let TFLite embed TensorFlow ops it has no builtin for.
        cache_dir: content cache (default $PARTNNER_CACHE or ~/.cache/partnner-tf); False: none.
        progress: draw a progress bar on stderr.

    Returns:
        The written manifest, loaded from ``out_dir``.

    Raises:
        ConversionError: bad arguments or model, unconvertible ops, or a cut failing verification.
    """
    if quantize not in QUANTIZATIONS:
        raise ConversionError(f"quantize: expected one of {', '.join(QUANTIZATIONS)}; received {quantize!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConversionError(f"jobs: expected an integer >= 1, received {jobs!r}")
    out = Path(out_dir)
    _check_out(out)
    store = cache_mod.Cache(cache_dir)
    from partnner_tf.converters.loading import parse_input_shape

    request = cache_mod.request_key(model, parse_input_shape(input_shape), cuts, quantize,
                                    calibration, select_tf_ops)
    if _replay(store, request, out):
        return load_manifest(out)
    from partnner_tf.converters import cuts as cuts_mod
    from partnner_tf.converters import loading, tflite

    keras_model, name = loading.load(model, input_shape)
    points = cuts_mod.cut_points(cuts_mod.Graph(keras_model))
    chosen = cuts_mod.select_cuts(points, cuts)
    in_shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
    frames = None
    if quantize == "int8":
        if calibration is not None:
            frames = tflite.load_calibration(calibration, in_shape)
        else:
            warnings.warn(tflite.RANDOM_CALIBRATION_WARNING, stacklevel=2)
            frames = tflite.random_frames(in_shape)
    model_key = cache_mod.model_hash(keras_model)
    settings = {"quantize": quantize, "select_tf_ops": bool(select_tf_ops),
                "calibration": cache_mod.frames_hash(frames)}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        (staging / PREFIX_DIR).mkdir()
        model_file = _write_model(keras_model, staging, store, model_key)
        tasks = [worker.Task(cut_id, p.layer, p.position, p.position == points[-1].position,
                             str(staging / PREFIX_DIR / f"cut_{cut_id}.tflite") if cut_id else None,
                             store.key(model_key, p.layer if p.layer else ("edge" if cut_id else "cloud"),
                                       settings))
                 for cut_id, p in enumerate(chosen)]
        results = _run_tasks(tasks, store, staging / model_file, quantize, frames, select_tf_ops,
                             jobs, progress)
        _warn_unverified(tasks, results)
        manifest = _manifest(keras_model, name, chosen, tasks, results, quantize, cuts, len(points) - 2,
                             model_key, staging, model_file)
        write_json_atomic(staging / MANIFEST_NAME, manifest)
        _publish(staging, out)
        if model_file == MODEL_FILE:
            store.put_run(request, {"manifest": manifest, "model_key": model_key,
                                    "cut_keys": [t.key for t in tasks]})
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_manifest(out)


def _replay(store, request, out):
    """Rebuild OUT from the cache of an identical earlier request, without TensorFlow.

    Returns False (and leaves nothing behind) when any piece is missing: then convert normally.
    """
    run = store.get_run(request)
    if run is None:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        (staging / PREFIX_DIR).mkdir()
        ok = store.get_file(f"{run['model_key']}.keras", staging / MODEL_FILE)
        for cut, key in zip(run["manifest"]["cuts"], run["cut_keys"]):
            if ok and cut["prefix"]:
                ok = store.get(key, staging / cut["prefix"]) is not None
        if not ok:
            shutil.rmtree(staging, ignore_errors=True)
            return False
        write_json_atomic(staging / MANIFEST_NAME, run["manifest"])
        verify_files(load_manifest(staging))  # a damaged cache must not be shipped
        _publish(staging, out)
    except ManifestError:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("whole conversion replayed from the cache")
    return True


def _warn_unverified(tasks, results):
    skipped = [t.cut_id for t in tasks if results[t.cut_id]["verify"].get("prefix_unverified")]
    if skipped:
        warnings.warn(
            f"cuts {skipped}: the TFLite prefix holds TensorFlow (Flex) ops that the LiteRT "
            "interpreter here cannot run, so only their suffix was verified (fed by the Keras "
            "prefix); the board needs an interpreter with the Flex delegate",
            stacklevel=3,
        )


def _check_out(out):
    """Refuse to replace anything but an earlier conversion or an empty folder."""
    if out.exists() and not out.is_dir():
        raise ConversionError(f"output {out} exists and is a file; expected a folder (new or an earlier conversion)")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise ConversionError(
            f"output {out} is a non-empty folder that is not a conversion (no {MANIFEST_NAME}); "
            "refusing to replace it"
        )


def _write_model(keras_model, staging, store, model_key):
    """Write the cloud's copy of the model into ``staging``; returns its path relative to it."""
    saved_model = getattr(keras_model, "_partnner_saved_model", None)
    if saved_model:
        shutil.copytree(saved_model, staging / SAVED_MODEL_DIR)
        return f"{SAVED_MODEL_DIR}/saved_model.pb"
    # model.keras is cached too: saving ResNet50 takes seconds, and a cached run should not.
    saved = f"{model_key}.keras"
    if not store.get_file(saved, staging / MODEL_FILE):
        _save_model(keras_model, staging / MODEL_FILE)
        store.put_file(saved, staging / MODEL_FILE)
    return MODEL_FILE


def _save_model(keras_model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_model.save(path)


def _publish(staging, out):
    """Swap the finished staging folder into place: readers see the old OUT or the new one."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rmdir(old)
        os.rename(out, old)
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _run_tasks(tasks, store, model_path, quantize, frames, select_tf_ops, jobs, progress):
    """Results per task id: cached ones copied, the others built (in ``jobs`` processes)."""
    results, todo = {}, []
    for t in tasks:
        hit = store.get(t.key, t.prefix_path)
        if hit is not None:
            results[t.cut_id] = hit
        else:
            todo.append(t)
    log.info("%d cut(s) cached, %d to build", len(results), len(todo))
    if not todo:
        return results
    # Big prefixes first: they take longest, so the pool ends evenly.
    todo.sort(key=lambda t: -t.position if t.prefix_path else 0)
    layers = tuple(t.layer for t in todo if t.layer)
    options = worker.Options(str(model_path), quantize, frames, bool(select_tf_ops), layers)
    bar = _bar(len(todo), progress)
    try:
        for task, result in worker.run_all(todo, options, jobs):
            store.put(task.key, task.prefix_path, result)
            results[task.cut_id] = result
            bar.update(1)
    finally:
        bar.close()
    return results


class _Bar:
    """A plain stderr progress line (click's bar needs a terminal to redraw)."""

    def __init__(self, total, enabled):
        self.total, self.done, self.enabled = total, 0, enabled

    def update(self, n):
        self.done += n
        if self.enabled:
            width = 30
            filled = width * self.done // max(self.total, 1)
            sys.stderr.write(f"\rconverting cuts [{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


def _bar(total, enabled):
    return _Bar(total, enabled)


def _manifest(keras_model, name, chosen, tasks, results, quantize, cuts, candidates, model_key, staging,
              model_file):
    import keras
    import tensorflow as tf

    edge = results[tasks[-1].cut_id]
    inp = keras_model.inputs[0]
    in_key = edge["inputs"] and next(iter(edge["inputs"]))
    out_specs = [
        {"name": _producer(t), "shape": list(shape), "dtype": dtype, "signature_key": key}
        for t, (key, (shape, dtype)) in zip(keras_model.outputs, edge["outputs_ordered"])
    ]
    cut_dicts = []
    for task, point in zip(tasks, chosen):
        r = results[task.cut_id]
        cut_dicts.append(_cut_dict(task, point, r, inp, in_key, staging))
    total = sum(c.get("prefix_bytes", 0) for c in cut_dicts)
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "model": {
            "name": name,
            "file": model_file,
            "sha256": sha256_file(staging / model_file),
            "bytes": _model_bytes(staging / model_file),
            "content_hash": model_key,
            "input": {"name": inp.name, "shape": [1, *[int(d) for d in inp.shape[1:]]],
                      "dtype": str(inp.dtype), "signature_key": in_key},
            "outputs": out_specs,
            "macs": chosen[-1].prefix_macs,
            "layers": len(keras_model.layers),
        },
        "quantization": quantize,
        "cut_selection": cuts if isinstance(cuts, str) else list(cuts),
        "candidate_cuts": candidates,
        "edge_total_bytes": total,
        "converter": {"partnner_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "cuts": cut_dicts,
    }


def _model_bytes(path):
    """Size of model.keras, or of the whole SavedModel folder holding saved_model.pb."""
    if path.name == MODEL_FILE:
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.parent.rglob("*") if p.is_file())


def _producer(tensor):
    """Name of the layer that outputs ``tensor`` (Keras tensor names are meaningless counters)."""
    history = getattr(tensor, "_keras_history", None)
    return history.operation.name if history is not None else tensor.name


def _cut_dict(task, point, r, inp, in_key, staging):
    cut = {
        "id": task.cut_id,
        "layers": [point.layer] if point.layer else [],
        "prefix": f"{PREFIX_DIR}/cut_{task.cut_id}.tflite" if task.prefix_path else None,
        "boundary_bytes": point.nbytes,
        "prefix_macs": point.prefix_macs,
        "suffix_macs": point.suffix_macs,
    }
    if task.cut_id == 0:
        cut["boundary"] = [{"name": inp.name, "shape": list(point.shape), "dtype": point.dtype,
                            "signature_key": in_key}]
    elif point.layer:
        (key, (shape, dtype)), = r["outputs_ordered"]
        cut["boundary"] = [{"name": point.layer, "shape": list(shape), "dtype": dtype, "signature_key": key}]
    else:
        cut["boundary"] = []
    if task.prefix_path:
        cut["prefix_bytes"] = Path(task.prefix_path).stat().st_size
        cut["prefix_sha256"] = sha256_file(task.prefix_path)
    cut["verify"] = r["verify"]
    cut["prefix_macs_by_kind"] = point.prefix_by_kind
    cut["suffix_macs_by_kind"] = point.suffix_by_kind
    return cut
