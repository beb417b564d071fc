"""Helpers for the cloud tests: boundaries from the real TFLite prefixes, ports, memory, raw sockets."""

import socket
from pathlib import Path

import numpy as np
import zmq

from partnner_tf import protocol
from partnner_tf.manifest import load_manifest


def free_port():
    """A loopback port free right now (for tests that must restart a daemon at one endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Reference:
    """The full Keras model and the real LiteRT prefixes of a converted folder."""

    def __init__(self, out):
        import keras

        from partnner_tf.runtime.interpreter import load_prefix

        self.out = Path(out)
        self.manifest = load_manifest(out)
        self.model = keras.saving.load_model(self.out / self.manifest.model_file, compile=False)
        self._load_prefix = load_prefix
        self._prefixes = {}
        self.input_key = self.manifest.raw["model"]["input"].get("signature_key", self.manifest.input.name)

    def frame(self, seed):
        return np.random.default_rng(seed).standard_normal(self.manifest.input.shape).astype(np.float32)

    def expected(self, x):
        out = self.model(x, training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o) for o in outs]

    def boundary(self, cut_id, x):
        """{signature_key: array} the edge would send for ``cut_id`` (cut 0: the input itself)."""
        cut = self.manifest.cuts[cut_id]
        if cut.prefix is None:
            return {self.input_key: x}
        if cut_id not in self._prefixes:
            self._prefixes[cut_id] = self._load_prefix(self.out / cut.prefix, threads=1)
        return self._prefixes[cut_id].run({self.input_key: x})

    @property
    def cloud_cuts(self):
        return [c.id for c in self.manifest.cuts if not c.is_edge_only]


def assert_close(actual, expected):
    """float32 suffix(prefix(x)) against the full model, relative to the output's scale."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        scale = float(np.abs(e).max()) or 1.0
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * scale)


class RawSocket:
    """A bare DEALER speaking (or abusing) the protocol, for what CloudClient will not send."""

    def __init__(self, endpoint, ctx=None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def send(self, frames):
        self.sock.send_multipart(frames, copy=False)

    def recv(self, timeout_s=5.0):
        """The next reply, decoded; None if none came in time."""
        if not self.sock.poll(timeout_s * 1000):
            return None
        return protocol.decode_reply(self.sock.recv_multipart())

    def close(self):
        self.sock.close(linger=0)
