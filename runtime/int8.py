"""Full-int8 prefixes (the Edge TPU's): the float frame quantized in, the int8 tensors dequantized out."""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from partnner_tf.errors import ManifestError

#: A manifest's scale against the file's own: JSON keeps the float32 value to ~1e-9.
_SCALE_RTOL = 1e-6
_INT8 = np.iinfo(np.int8)


def quantize(x, scale, zero_point, dtype=np.int8):
    """``round(x / scale) + zero_point``, clipped to ``dtype``.

    Halves round away from zero, as TFLite's Quantize kernel does (``std::round``), not to even.
    """
    q = np.asarray(x, np.float32) / np.float32(scale)
    q = np.sign(q) * np.floor(np.abs(q) + np.float32(0.5)) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    """``(q - zero_point) * scale`` in float32."""
    return (np.asarray(q).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


@dataclass(frozen=True)
class Int8Spec:
    """A cut's ``edgetpu`` manifest entry: the full-int8 prefix, its compiled copy, their quantization.

    ``input_quant``/``output_quant`` hold one ``(scale, zero_point)`` per tensor, in the order the
    interpreter lists its inputs/outputs.
    """

    cut: int
    prefix: str
    sha256: str
    input_quant: tuple
    output_quant: tuple
    compiled: Optional[str] = None
    compiled_sha256: Optional[str] = None


def int8_spec(cut):
    """The checked ``edgetpu`` entry of a manifest cut, or None when it has none.

    Raises:
        ManifestError: naming the entry's field that is missing or wrong.
    """
    entry = cut.extra.get("edgetpu")
    if entry is None:
        return None
    where = f"manifest.cuts[{cut.id}].edgetpu"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected an object, received {entry!r}")
    missing = [k for k in ("prefix", "sha256", "input_quant", "output_quant") if not entry.get(k)]
    if missing:
        raise ManifestError(
            f"{where}: missing {', '.join(missing)} (expected prefix, sha256, "
            "input_quant and output_quant as [[scale, zero_point], ...])"
        )
    compiled = entry.get("compiled") or None
    return Int8Spec(cut.id, str(entry["prefix"]), str(entry["sha256"]),
                    _quant(entry["input_quant"], f"{where}.input_quant"),
                    _quant(entry["output_quant"], f"{where}.output_quant"),
                    str(compiled) if compiled else None, entry.get("compiled_sha256"))


def _quant(value, where):
    def pair(p):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            return None
        scale, zero = p
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            return None
        if isinstance(zero, bool) or not isinstance(zero, int) or not _INT8.min <= zero <= _INT8.max:
            return None
        return float(scale), int(zero)

    pairs = [pair(p) for p in value] if isinstance(value, list) else [None]
    if not pairs or None in pairs:
        raise ManifestError(
            f"{where}: expected [[scale > 0, int8 zero_point], ...], one per tensor; received {value!r}"
        )
    return tuple(pairs)


class Int8Prefix:
    """A loaded full-int8 prefix that takes and gives float32, with its manifest's quantization.

    Args:
        prefix: the loaded :class:`~partnner_tf.runtime.interpreter.Prefix` of the int8 file.
        spec: its :class:`Int8Spec`; checked against the quantization the file itself carries.

    Raises:
        ManifestError: the file's tensors are not int8, or not quantized as the manifest says.
    """

    def __init__(self, prefix, spec):
        self.prefix = prefix
        self.spec = spec
        self.path, self.threads, self.delegate = prefix.path, prefix.threads, prefix.delegate
        self.nbytes = prefix.nbytes
        self._in = _by_key(prefix, spec, prefix.inputs, prefix.input_order, "input_quant")
        self._out = _by_key(prefix, spec, prefix.outputs, prefix.output_order, "output_quant")

    def run(self, inputs):
        """``{signature_key: float array}`` in, ``{signature_key: float32 array}`` out."""
        q = {k: quantize(v, *self._in[k]) if k in self._in and v.dtype.kind == "f" else v
             for k, v in inputs.items()}
        return {k: dequantize(v, *self._out[k]) for k, v in self.prefix.run(q).items()}

    def warm(self):
        self.prefix.warm()
        return self

    def dequantize(self, key, value):
        """Outputs are float already (the runtime's interface for the edge-only model)."""
        return value

    def __repr__(self):
        return f"Int8Prefix({self.prefix!r}, cut={self.spec.cut})"


def _by_key(prefix, spec, details, order, field):
    """``{signature_key: (scale, zero_point)}``, the manifest's list matched to the file's tensors."""
    quant = getattr(spec, field)
    where = f"{prefix.path.name} (manifest.cuts[{spec.cut}].edgetpu.{field})"
    if len(quant) != len(order):
        raise ManifestError(f"{where}: lists {len(quant)} tensor(s); the file has {len(order)}")
    out = {}
    for key, (scale, zero) in zip(order, quant):
        d = details[key]
        if d["dtype"] != np.int8 or d["quant"] is None:
            raise ManifestError(f"{where}: expected a full-int8 file; its tensor {key!r} is {d['dtype'].name}")
        fs, fz = d["quant"]
        if fz != zero or abs(fs - scale) > _SCALE_RTOL * scale:
            raise ManifestError(
                f"{where}: says ({scale}, {zero}) for {key!r}; the file quantizes it with ({fs}, {fz})"
            )
        out[key] = (scale, zero)
    return out
