"""Tiny converted-model folders for the cloud tests, written by hand until the converter's exist.

A folder holds model.keras and a manifest.json with the required fields and the boundaries the
daemon checks; the prefixes are not needed by the cloud and are not written.
"""

from pathlib import Path

import numpy as np

from partnner_tf.manifest import write_json_atomic


def tiny_keras(name="tiny", seed=0, width=8):
    """A small functional CNN (conv -> conv -> pool -> dense): cheap to build, several cuts."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((12, 12, 3), name="image")
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)
    h = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    y = keras.layers.Dense(5, activation="softmax", name="logits")(h)
    return keras.Model(x, y, name=name)


def write_out(model, out_dir, layers=("conv1", "conv2", "pool")):
    """Save ``model`` and a manifest with cut 0 (cloud-only), one cut per layer, and edge-only."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    inp = model.inputs[0]
    in_shape = [1, *inp.shape[1:]]

    def spec(name, shape):
        return {"name": name, "shape": [int(s) for s in shape], "dtype": "float32", "signature_key": name}

    cuts = [{"id": 0, "layers": [], "prefix": None, "boundary": [spec("image", in_shape)],
             "boundary_bytes": int(np.prod(in_shape)) * 4, "prefix_macs": 0, "suffix_macs": 1}]
    for i, name in enumerate(layers, start=1):
        shape = [1, *model.get_layer(name).output.shape[1:]]
        cuts.append({"id": i, "layers": [name], "prefix": f"prefixes/cut_{i}.tflite",
                     "boundary": [spec(name, shape)], "boundary_bytes": int(np.prod(shape)) * 4,
                     "prefix_macs": i, "suffix_macs": 1})
    n = len(cuts)
    cuts.append({"id": n, "layers": [model.layers[-1].name], "prefix": f"prefixes/cut_{n}.tflite",
                 "boundary": [], "boundary_bytes": 0, "prefix_macs": n, "suffix_macs": 0})
    manifest = {
        "format": "partnner-manifest",
        "version": 1,
        "model": {"name": model.name, "file": "model.keras",
                  "input": {"name": "image", "shape": in_shape, "dtype": "float32"},
                  "outputs": [{"name": "logits", "shape": [1, 5], "dtype": "float32"}]},
        "cuts": cuts,
    }
    write_json_atomic(out / "manifest.json", manifest)
    return out
