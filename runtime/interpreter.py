"""Load a TFLite prefix with LiteRT (or tflite-runtime) and run it by signature key, cheaply."""

import ctypes
import functools
import os
import warnings
from pathlib import Path

import numpy as np

from partnner_tf.errors import InputError, ManifestError, MissingDependencyError
from partnner_tf.runtime.int8 import dequantize, quantize


#: The signature every prefix exports (the converter's contract).
SIGNATURE = "serving_default"
#: The Edge TPU delegate's shared library (Coral), loaded when a board asks for it.
EDGETPU_LIBRARY = "libedgetpu.so.1"


@functools.lru_cache(maxsize=None)
def backend():
    """``(name, Interpreter class, load_delegate)`` of the first interpreter package installed.

    ai-edge-litert first, tflite-runtime if that is all there is; never TensorFlow, which a board
    does not have.
    """
    errors = []
    for name, module in (("ai-edge-litert", "ai_edge_litert.interpreter"),
                         ("tflite-runtime", "tflite_runtime.interpreter")):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError as exc:
            errors.append(f"{module}: {exc}")
            continue
        return name, mod.Interpreter, mod.load_delegate
    raise MissingDependencyError(
        "no TFLite interpreter is installed (tried " + "; ".join(errors) + "); "
        "install one with: pip install 'partnner-tf[edge]'"
    )


#: delegate libraries that failed to load: warned about once, then the CPU without retrying.
_FAILED_DELEGATES = {}


def _delegates(delegate, load_delegate, path):
    """The delegate list for ``delegate`` ("edgetpu", a library path, or None); CPU on failure."""
    if delegate is None or delegate in ("", "cpu", "none"):
        return [], None
    library = EDGETPU_LIBRARY if delegate == "edgetpu" else delegate
    if library not in _FAILED_DELEGATES:
        try:
            # Probe with ctypes first: LiteRT's Delegate object is noisy when its library is absent.
            ctypes.CDLL(library)
            return [load_delegate(library)], library
        except (ValueError, OSError, RuntimeError) as exc:
            _FAILED_DELEGATES[library] = exc
            # A board whose accelerator is unplugged must still answer: run on its CPU.
            warnings.warn(f"delegate {library!r} cannot be loaded ({exc}); {path} and the other "
                          f"prefixes run on the CPU", RuntimeWarning, stacklevel=3)
    return [], None


def delegate_error(library):
    """Why the delegate ``library`` cannot be loaded (the exception), or None when it can."""
    _, _, load_delegate = backend()
    try:
        ctypes.CDLL(library)  # LiteRT's Delegate object is noisy when its library is absent
        load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        return exc
    return None


class Prefix:
    """One loaded prefix interpreter; ``run`` maps signature keys to arrays.

    Tensor indices, shapes and dtypes are resolved once here, so a frame costs a
    ``set_tensor``/``invoke``/``get_tensor`` per tensor and nothing else.
    """

    def __init__(self, path, interpreter, backend_name, threads, delegate):
        self.path = Path(path)
        self.backend = backend_name
        self.threads = threads
        self.delegate = delegate
        self._interp = interpreter
        runner = interpreter.get_signature_runner(SIGNATURE)
        self.inputs = {k: _detail(d) for k, d in runner.get_input_details().items()}
        self.outputs = {k: _detail(d) for k, d in runner.get_output_details().items()}
        self._in = [(k, d["index"], d["shape"], d["dtype"], d["quant"]) for k, d in self.inputs.items()]
        self._out = [(k, d["index"]) for k, d in self.outputs.items()]
        # Signature keys in the interpreter's own tensor order (what per-tensor lists follow).
        self.input_order = _order(self.inputs, interpreter.get_input_details())
        self.output_order = _order(self.outputs, interpreter.get_output_details())
        size = self.path.stat().st_size
        # An upper estimate: the sum of all tensors counts the weights (XNNPACK keeps a packed
        # copy of them beside the file) and every activation unshared (the arena reuses memory).
        # Whole MobileNetV2 224: 41 MiB estimated, 38 MiB measured growth of the process.
        tensors = sum(_bytes(t) for t in interpreter.get_tensor_details())
        self.nbytes = max(size, tensors) + size // 16

    def run(self, inputs):
        """Run the prefix on ``{signature_key: array}``; returns ``{signature_key: array}``.

        Float inputs to a quantized input tensor are quantized with its own scale/zero point.

        Raises:
            InputError: a key is missing, or a shape or dtype differs from the prefix's.
        """
        interp = self._interp
        for key, index, shape, dtype, quant in self._in:
            try:
                value = inputs[key]
            except KeyError:
                raise InputError(
                    f"{self.path.name}: expected input {key!r}; received keys {sorted(inputs)}"
                ) from None
            if value.dtype != dtype:
                value = self._convert(key, value, dtype, quant)
            if value.shape != shape:
                raise InputError(
                    f"{self.path.name}: input {key!r} expected shape {shape}, received {value.shape}"
                )
            interp.set_tensor(index, value)
        interp.invoke()
        return {key: interp.get_tensor(index) for key, index in self._out}

    def warm(self):
        """Run once on zeros: some kernels (XNNPACK) pack weights on the first invoke."""
        self.run({key: np.zeros(shape, dtype) for key, _, shape, dtype, _ in self._in})
        return self

    def _convert(self, key, value, dtype, quant):
        if quant and np.issubdtype(dtype, np.integer) and np.issubdtype(value.dtype, np.floating):
            return quantize(value, *quant, dtype=dtype)
        raise InputError(
            f"{self.path.name}: input {key!r} expected dtype {np.dtype(dtype).name}, "
            f"received {value.dtype.name}"
        )

    def dequantize(self, key, value):
        """Float values of output ``key`` (unchanged when the output is not quantized)."""
        quant = self.outputs[key]["quant"]
        if quant and np.issubdtype(value.dtype, np.integer):
            return dequantize(value, *quant)
        return value

    def __repr__(self):
        return (f"Prefix({self.path.name}, backend={self.backend}, threads={self.threads}, "
                f"delegate={self.delegate}, nbytes={self.nbytes})")


def _detail(d):
    scale, zero = d.get("quantization", (0.0, 0))
    return {
        "index": d["index"],
        "shape": tuple(int(s) for s in d["shape"]),
        "dtype": np.dtype(d["dtype"]),
        "quant": (float(scale), int(zero)) if scale else None,
    }


def _order(by_key, details):
    key_of = {d["index"]: k for k, d in by_key.items()}
    return [key_of[d["index"]] for d in details if d["index"] in key_of]


def _bytes(detail):
    return int(np.prod(detail["shape"], dtype=np.int64)) * np.dtype(detail["dtype"]).itemsize


def default_threads():
    """Threads from ``PARTNNER_THREADS``, else the CPUs this process may use."""
    from partnner_tf.constants import ENV_THREADS

    env = os.environ.get(ENV_THREADS)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise InputError(f"{ENV_THREADS}: expected an integer, received {env!r}") from None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_prefix(path, *, threads=None, delegate=None):
    """Load the TFLite prefix at ``path``.

    Args:
        path: a ``.tflite`` file with a ``serving_default`` signature.
        threads: interpreter threads; default :func:`default_threads`.
        delegate: ``"edgetpu"``, a delegate library path, or None for the CPU. A delegate that
            cannot be loaded gives a warning and the CPU.

    Raises:
        MissingDependencyError: no interpreter package is installed.
        ManifestError: the file is missing, not a valid TFLite model, or has no usable signature.
    """
    path = Path(path)
    name, interpreter_cls, load_delegate = backend()
    threads = int(threads) if threads else default_threads()
    if not path.is_file():
        raise ManifestError(f"prefix {path}: file not found")
    delegates, used = _delegates(delegate, load_delegate, path)
    try:
        interp = interpreter_cls(model_path=str(path), num_threads=threads,
                                 experimental_delegates=delegates or None)
        interp.allocate_tensors()
        if SIGNATURE not in interp.get_signature_list():
            raise ManifestError(
                f"prefix {path}: expected a {SIGNATURE!r} signature, "
                f"found {sorted(interp.get_signature_list())}"
            )
        return Prefix(path, interp, name, threads, used)
    except (ValueError, RuntimeError) as exc:
        raise ManifestError(f"prefix {path} is not a valid TFLite model ({name}): {exc}") from exc
