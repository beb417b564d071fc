"""The cloud executor daemon: TensorFlow suffixes behind a ZeroMQ ROUTER."""
