"""partnner-tf: adaptive edge-cloud DNN partitioning (PArtNNer) for TensorFlow and LiteRT."""

__version__ = "0.1.0"
