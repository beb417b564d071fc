"""Check a cut end to end: TFLite prefix in LiteRT, then the suffix in TensorFlow, vs the full model."""

import numpy as np

from partnner_tf.converters.tflite import prefix_model
from partnner_tf.errors import ConversionError
from partnner_tf.runtime.cloud.suffix import build_suffix

#: float32 cuts must match the full model within this, relative to the output's scale.
FLOAT32_TOLERANCE = 1e-4
#: Frames every cut is checked on.
VERIFY_FRAMES = 3


def layer_outputs(model, layers, frames):
    """{layer: [[output] per frame]} for many layers in one eager pass per frame."""
    import keras

    if not layers:
        return {}
    multi = keras.Model(model.inputs[0], [model.get_layer(n).output for n in layers])
    per_frame = reference_outputs(multi, frames)
    return {n: [[outs[i]] for outs in per_frame] for i, n in enumerate(layers)}


def reference_outputs(model, frames):
    """The full model's outputs for each frame: a list (per frame) of lists (per output)."""
    import keras

    # Eager on purpose: a tf.function per prefix would retrace for every cut, and it is 3 frames.
    results = []
    for f in frames:
        out = model(f, training=False)
        out = [out] if not isinstance(out, (list, tuple)) else list(out)
        results.append([keras.ops.convert_to_numpy(o) for o in out])
    return results


def run_prefix(tflite_bytes, frame, input_key):
    """Run a TFLite prefix on one frame in LiteRT; returns {signature_key: array}."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_content=tflite_bytes)
        runner = interp.get_signature_runner("serving_default")
        return runner(**{input_key: frame})
    except (RuntimeError, ValueError) as exc:
        # e.g. Flex (select TF) ops: the LiteRT interpreter has no TensorFlow kernels.
        raise ConversionError(f"the LiteRT interpreter cannot run this prefix: {exc}") from exc


def compare(outputs, reference):
    """Error figures of one run against the reference (lists of per-frame output lists)."""
    max_abs, scale, agree = 0.0, 0.0, 0
    for got, want in zip(outputs, reference):
        for g, w in zip(got, want):
            g = np.asarray(g, np.float64).reshape(w.shape)
            max_abs = max(max_abs, float(np.max(np.abs(g - w))) if w.size else 0.0)
            scale = max(scale, float(np.max(np.abs(w))) if w.size else 0.0)
        agree += int(np.argmax(got[0]) == np.argmax(want[0]))
    rel = max_abs / scale if scale > 0 else max_abs
    return {"max_abs_err": max_abs, "rel_err": rel, "top1_agree": agree / len(reference)}


def verify_cut(model, cut, tflite_bytes, frames, reference, quantize="none", input_key=None,
               output_keys=(), select_tf_ops=False, boundary_reference=None):
    """Run one cut end to end on ``frames`` and compare with ``reference``.

    Args:
        cut: the manifest cut dict being built (``layers``, ``prefix``, ``boundary``).
        output_keys: the prefix's signature output keys, in boundary (or model output) order.
        boundary_reference: the Keras prefix's output per frame (computed here when None).

    Returns:
        {"max_abs_err", "rel_err", "top1_agree", "frames"} for the model outputs, and
        "boundary_rel_err" (LiteRT prefix vs Keras prefix) for a cut with a boundary layer.

    Raises:
        ConversionError: a float32 cut is over :data:`FLOAT32_TOLERANCE`, naming the cut.
    """
    # The cloud's sub-model, run eagerly: tracing its tf.function for every cut would double the
    # conversion time, and the tf.function only wraps this same call.
    suffix = build_suffix(model, cut, warm=False)
    results, boundaries = [], []
    where = _where(cut)
    unverified = None
    for frame in frames:
        if tflite_bytes is None:
            boundary = [frame]
        else:
            try:
                out = run_prefix(tflite_bytes, frame, input_key)
                boundary = [out[k] for k in output_keys]
            except ConversionError as exc:
                if not (select_tf_ops and "Flex" in str(exc)):
                    raise ConversionError(f"verification of {where}: {exc}") from exc
                # Neither LiteRT nor TF's pip interpreter links the Flex kernels: the prefix cannot
                # run here. The suffix is still checked, fed by the Keras prefix.
                unverified = "the prefix holds TensorFlow (Flex) ops that LiteRT cannot run here"
                boundary = _keras_boundary(model, cut, frame)
        boundaries.append(boundary)
        results.append(suffix.eager(boundary))
    figures = compare(results, reference)
    figures["frames"] = len(frames)
    if unverified:
        figures["prefix_unverified"] = unverified
    elif cut["layers"] and tflite_bytes is not None:
        # Randomly initialised models often end in a near-constant softmax that hides prefix
        # errors: the boundary tensor itself is checked against the Keras prefix too.
        want = boundary_reference or reference_outputs(prefix_model(model, cut["layers"][0]), frames)
        figures["boundary_rel_err"] = compare(boundaries, want)["rel_err"]
    worst = max(figures["rel_err"], figures.get("boundary_rel_err", 0.0))
    if quantize == "none" and not worst <= FLOAT32_TOLERANCE:
        raise ConversionError(
            f"verification failed for {where}: prefix+suffix (or the boundary tensor) differ from "
            f"the full model by "
            f"{figures['rel_err']:.3g} relative (max abs {figures['max_abs_err']:.3g}); "
            f"expected <= {FLOAT32_TOLERANCE} for float32"
        )
    return figures


def _keras_boundary(model, cut, frame):
    if not cut["layers"]:  # edge-only: the boundary is the model output
        return reference_outputs(model, [frame])[0]
    return reference_outputs(prefix_model(model, cut["layers"][0]), [frame])[0]


def _where(cut):
    what = ", ".join(cut["layers"]) or ("edge-only" if cut["prefix"] else "cloud-only")
    return f"cut {cut['id']} ({what})"
