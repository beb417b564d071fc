"""Tiny Keras models for tests: one factory, ``get_model(kind)``, plus models the converter refuses."""

KINDS = ("chain", "residual", "branching", "sequential")
INPUT_SHAPE = (8, 8, 3)


def get_model(kind, seed=0):
    """A small, deterministic (seeded) model of the given kind with float logits out.

    No softmax at the end: a random model's softmax is near-constant and would hide errors.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    if kind == "sequential":
        return keras.Sequential(
            [
                keras.Input(INPUT_SHAPE, name="image"),
                layers.Conv2D(4, 3, padding="same", name="conv"),
                layers.BatchNormalization(name="bn"),
                layers.ReLU(name="relu"),
                layers.MaxPooling2D(name="pool"),
                layers.Flatten(name="flat"),
                layers.Dense(5, name="logits"),
            ],
            name="tiny_sequential",
        )
    inp = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="stem")(inp)
    if kind == "chain":
        x = layers.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)
        x = layers.ReLU(name="relu2")(x)
        x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    elif kind == "residual":
        y = layers.Conv2D(4, 3, padding="same", activation="relu", name="res_a")(x)
        y = layers.Conv2D(4, 3, padding="same", name="res_b")(y)
        x = layers.Add(name="add")([x, y])
        x = layers.ReLU(name="relu_out")(x)
    elif kind == "branching":
        a = layers.Conv2D(4, 1, name="branch_a")(x)
        b = layers.DepthwiseConv2D(3, padding="same", name="branch_b")(x)
        b = layers.Conv2D(2, 1, name="branch_b_pw")(b)
        x = layers.Concatenate(name="concat")([a, b])
        x = layers.Conv2D(6, 3, strides=2, padding="same", name="merge")(x)
    else:
        raise ValueError(f"unknown tiny model kind {kind!r}; known: {KINDS}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(5, name="logits")(x)
    return keras.Model(inp, out, name=f"tiny_{kind}")


#: Single-tensor cut layers of each kind (what the converter must find).
EXPECTED_CUTS = {
    "chain": ["stem", "conv2", "relu2", "dw", "gap"],
    "residual": ["stem", "add", "relu_out", "gap"],
    "branching": ["stem", "concat", "merge", "gap"],
    "sequential": ["conv", "bn", "relu", "pool", "flat"],
}


def subclassed_model():
    """A subclassed model: no layer graph to cut."""
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed_net")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(keras.ops.zeros((1, 4)))
    return net


def multi_input_model():
    import keras

    a = keras.Input((4,), name="left")
    b = keras.Input((4,), name="right")
    out = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], out, name="two_inputs")


def multi_output_model():
    """Two heads on one trunk: the edge-only prefix has two outputs."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="trunk")(inp)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    a = layers.Dense(3, name="head_a")(x)
    b = layers.Dense(2, name="head_b")(x)
    return keras.Model(inp, [a, b], name="two_heads")


def nested_model():
    """A backbone model used as one layer of an outer model (cuts must reach inside it)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    bin_ = keras.Input((8, 8, 3), name="backbone_in")
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="bb_conv1")(bin_)
    x = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="bb_conv2")(x)
    backbone = keras.Model(bin_, x, name="backbone")
    inp = keras.Input((8, 8, 3), name="image")
    y = backbone(inp)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    out = layers.Dense(3, name="logits")(y)
    return keras.Model(inp, out, name="nested")


def unsupported_op_model():
    """A model with an op TFLite has no builtin for (a matrix determinant; a Flex op)."""
    import keras

    keras.utils.set_random_seed(2)
    inp = keras.Input((4, 4), name="mat")
    x = keras.layers.Dense(4, name="proj")(inp)
    x = Determinant(name="det")(x)
    out = keras.layers.Dense(2, name="head")(keras.layers.Reshape((1,), name="col")(x))
    return keras.Model(inp, out, name="uses_det")


def _determinant_class():
    import keras

    @keras.saving.register_keras_serializable(package="partnner_tests")
    class Determinant(keras.layers.Layer):
        """Determinant of each matrix: tf.linalg.det, not a TFLite builtin (a Flex op)."""

        def call(self, x):
            import tensorflow as tf

            return tf.linalg.det(x)

        def compute_output_shape(self, shape):
            return shape[:-2]

    return Determinant


class _Lazy:
    """Defers defining the Keras layer class until first use (no Keras import at collection)."""

    cls = None

    def __call__(self, *args, **kwargs):
        if _Lazy.cls is None:
            _Lazy.cls = _determinant_class()
        return _Lazy.cls(*args, **kwargs)


Determinant = _Lazy()
