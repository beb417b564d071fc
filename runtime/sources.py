"""Frame sources for the edge runtime: a folder of images, .npy files, or seeded random frames.

Images are decoded with Pillow, converted to RGB (or L for one channel), resized to the model's
input height and width (bilinear) and scaled to float32 in [0, 1]. Models trained on another
range (MobileNetV2's [-1, 1]) should be fed ``.npy`` frames preprocessed their way.
"""

import itertools
from pathlib import Path

import numpy as np

from partnner_tf.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def open_source(source, spec, *, frames=None, seed=0, loop=True):
    """An iterator of frames matching ``spec`` (a :class:`~partnner_tf.manifest.TensorSpec`).

    Args:
        source: ``"random"``, ``"random:<seed>"``, a folder of images and/or ``.npy`` files,
            or one such file.
        frames: stop after this many frames (None: the random source never ends, files once).
        loop: repeat a folder's files until ``frames`` are given.

    Raises:
        InputError: the source is missing, empty, or a file cannot be read or has the wrong shape.
    """
    if str(source).startswith("random"):
        seed = int(str(source).split(":", 1)[1]) if ":" in str(source) else seed
        it = random_frames(spec, seed)
    else:
        files = _files(Path(source))
        it = (_load(p, spec) for p in (itertools.cycle(files) if loop and frames else files))
    return itertools.islice(it, frames) if frames is not None else it


def random_frames(spec, seed=0):
    """Endless seeded frames, uniform in [0, 1) (integers over the dtype's range)."""
    rng = np.random.default_rng(seed)
    shape = spec.shape[1:]
    dtype = np.dtype(spec.dtype)
    while True:
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            yield rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        else:
            yield rng.random(shape, dtype=np.float32).astype(dtype, copy=False)


def _files(path):
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"frame source {str(path)!r}: expected 'random', a folder or a file; it does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + (".npy",))
    if not files:
        raise InputError(f"frame source {path}: expected image or .npy files, found none")
    return files


def _load(path, spec):
    if path.suffix.lower() == ".npy":
        return load_npy(path, spec)
    return load_image(path, spec)


def load_npy(path, spec):
    """One frame from a ``.npy`` file: shape ``spec.shape`` or without its batch axis."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as a .npy array ({exc})") from exc
    if arr.shape not in (tuple(spec.shape), tuple(spec.shape[1:])):
        raise InputError(f"{path}: expected an array of shape {spec.shape[1:]}, received {arr.shape}")
    if arr.dtype != np.dtype(spec.dtype):
        if not np.can_cast(arr.dtype, spec.dtype, "same_kind"):
            raise InputError(f"{path}: expected dtype {spec.dtype}, received {arr.dtype}")
        arr = arr.astype(spec.dtype)
    return arr.reshape(spec.shape[1:])


def load_image(path, spec):
    """One frame from an image file, resized to the input's height x width, float32 in [0, 1]."""
    from partnner_tf.lazy import require

    image_mod = require("PIL.Image", "edge")
    if len(spec.shape) != 4 or spec.shape[-1] not in (1, 3):
        raise InputError(
            f"{path}: images feed models whose input is (1, H, W, 1 or 3); this one's is {spec.shape}"
        )
    _, height, width, channels = spec.shape
    try:
        with image_mod.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (width, height):
                im = im.resize((width, height), image_mod.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    except (OSError, ValueError, image_mod.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot read as an image ({exc})") from exc
    return arr.reshape(spec.shape[1:]).astype(spec.dtype, copy=False)
