"""Offline: a Keras model becomes per-cut TFLite prefixes, a cloud model and a manifest."""

from partnner_tf.converters.convert import convert

__all__ = ["convert"]
