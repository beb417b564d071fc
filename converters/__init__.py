"""Offline: a Keras model becomes per-cut TFLite prefixes, a cloud model and a manifest."""
