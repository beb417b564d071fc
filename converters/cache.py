"""Content cache of converted prefixes, keyed by model content, cut, quantization and versions."""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from partnner_tf import __version__
from partnner_tf.manifest import write_json_atomic

ENV_CACHE = "PARTNNER_CACHE"


def default_dir():
    """$PARTNNER_CACHE, else ~/.cache/partnner-tf."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "partnner-tf")


def versions():
    """Versions that change what a conversion produces (read without importing TensorFlow)."""
    from importlib import metadata

    found = {"partnner_tf": __version__}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return found


def request_key(model, input_shape, cuts, quantize, calibration, select_tf_ops):
    """Key of a whole conversion request when its inputs can be hashed without TensorFlow.

    Files are hashed by content; a ``keras.applications`` name by name and input shape (its
    weights are seeded). Returns None for in-memory models and SavedModel folders.
    """
    if not isinstance(model, (str, Path)):
        return None
    text = str(model)
    h = hashlib.sha256()
    if text.startswith("keras.applications."):
        h.update(text.encode())
    else:
        path = Path(model)
        if not path.is_file():
            return None
        h.update(path.stem.encode() + _file_digest(path).encode())  # the stem names the model
    if calibration is not None:
        folder = Path(calibration)
        if not folder.is_dir():
            return None
        for f in sorted(folder.iterdir()):
            if f.is_file():
                h.update(f.name.encode() + _file_digest(f).encode())
    h.update(json.dumps(
        {"shape": list(input_shape) if input_shape else None,
         "cuts": cuts if isinstance(cuts, str) else list(cuts), "quantize": quantize,
         "select_tf_ops": bool(select_tf_ops), "versions": versions()},
        sort_keys=True).encode())
    return h.hexdigest()


def _file_digest(path):
    from partnner_tf.manifest import sha256_file

    return sha256_file(path)


def model_hash(model):
    """sha256 of a model's architecture (JSON) and weights: same content, same hash."""
    h = hashlib.sha256(model.to_json().encode())
    for w in model.weights:
        arr = np.ascontiguousarray(w.numpy())
        h.update(w.path.encode() if hasattr(w, "path") else b"")
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def frames_hash(frames):
    """Identity of int8 calibration data ("random" when none was given)."""
    if frames is None:
        return "random"
    h = hashlib.sha256()
    for f in frames:
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()


class Cache:
    """Files ``<dir>/<key[:2]>/<key>.tflite`` and ``.json`` (signature and verification).

    ``directory=False`` disables caching.
    """

    def __init__(self, directory=None):
        self.dir = None if directory is False else Path(directory or default_dir())

    def key(self, model_key, cut_name, settings):
        blob = json.dumps(
            {"model": model_key, "cut": cut_name, "settings": settings, "versions": versions()},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def get_run(self, key):
        """A whole earlier conversion of the same request: {manifest, cut_keys, model_key} or None."""
        if self.dir is None or key is None:
            return None
        try:
            return json.loads((self.dir / "runs" / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def put_run(self, key, record):
        if self.dir is None or key is None:
            return
        try:
            (self.dir / "runs").mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.dir / "runs" / f"{key}.json", record)
        except OSError:
            pass


    def _paths(self, key):
        folder = self.dir / key[:2]
        return folder / f"{key}.json", folder / f"{key}.tflite"

    def get(self, key, prefix_path):
        """The cached result, with the prefix copied to ``prefix_path``; None on a miss.

        A prefix whose bytes no longer match the sha256 stored beside it is a miss: a damaged
        cache entry is rebuilt, never shipped.
        """
        if self.dir is None:
            return None
        meta, blob = self._paths(key)
        try:
            result = json.loads(meta.read_text())
            expected = result.pop("_sha256", None)
            if prefix_path is not None:
                shutil.copyfile(blob, prefix_path)
                if expected is None or _file_digest(prefix_path) != expected:
                    return None
        except (OSError, ValueError, AttributeError):
            return None  # absent or damaged: rebuild
        return result

    def get_file(self, name, dest):
        """Copy a cached file (e.g. a saved model.keras) to ``dest``; False on a miss.

        Like :meth:`get`, a file that fails the sha256 stored beside it is a miss.
        """
        if self.dir is None:
            return False
        src = self.dir / name[:2] / name
        try:
            expected = Path(f"{src}.sha256").read_text().strip()
            shutil.copyfile(src, dest)
        except OSError:
            return False
        return _file_digest(dest) == expected

    def put_file(self, name, src):
        if self.dir is None:
            return
        target = self.dir / name[:2] / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            os.close(fd)
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
            Path(f"{target}.sha256").write_text(_file_digest(src))
        except OSError:
            pass

    def put(self, key, prefix_path, result):
        """Store a result (the .tflite first, so a .json always has its file)."""
        if self.dir is None:
            return
        meta, blob = self._paths(key)
        try:
            meta.parent.mkdir(parents=True, exist_ok=True)
            record = dict(result)
            if prefix_path is not None:
                fd, tmp = tempfile.mkstemp(dir=meta.parent, suffix=".tmp")
                os.close(fd)
                shutil.copyfile(prefix_path, tmp)
                os.replace(tmp, blob)
                record["_sha256"] = _file_digest(prefix_path)
            write_json_atomic(meta, record)
        except OSError:
            pass  # a read-only or full cache must not fail the conversion
