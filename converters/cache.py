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
        import tensorflow as tf

        blob = json.dumps(
            {"model": model_key, "cut": cut_name, "settings": settings, "partnner_tf": __version__,
             "tensorflow": tf.__version__},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def _paths(self, key):
        folder = self.dir / key[:2]
        return folder / f"{key}.json", folder / f"{key}.tflite"

    def get(self, key, prefix_path):
        """The cached result, with the prefix copied to ``prefix_path``; None on a miss."""
        if self.dir is None:
            return None
        meta, blob = self._paths(key)
        try:
            result = json.loads(meta.read_text())
            if prefix_path is not None:
                shutil.copyfile(blob, prefix_path)
        except (OSError, ValueError):
            return None  # absent or damaged: rebuild
        return result

    def get_file(self, name, dest):
        """Copy a cached file (e.g. a saved model.keras) to ``dest``; False on a miss."""
        if self.dir is None:
            return False
        try:
            shutil.copyfile(self.dir / name[:2] / name, dest)
        except OSError:
            return False
        return True

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
        except OSError:
            pass

    def put(self, key, prefix_path, result):
        """Store a result (the .tflite first, so a .json always has its file)."""
        if self.dir is None:
            return
        meta, blob = self._paths(key)
        try:
            meta.parent.mkdir(parents=True, exist_ok=True)
            if prefix_path is not None:
                fd, tmp = tempfile.mkstemp(dir=meta.parent, suffix=".tmp")
                os.close(fd)
                shutil.copyfile(prefix_path, tmp)
                os.replace(tmp, blob)
            write_json_atomic(meta, result)
        except OSError:
            pass  # a read-only or full cache must not fail the conversion
