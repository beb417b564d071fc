"""The models a daemon serves: manifests, suffixes built and warmed on demand, input checks."""

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from partnner_tf.errors import ManifestError, ProtocolError
from partnner_tf.manifest import load_manifest

log = logging.getLogger(__name__)

#: Largest batch a request may carry (the boundary's first dimension).
MAX_BATCH = 64


def _fail(code, message):
    err = ProtocolError(message)
    err.code = code
    return err


@dataclass(frozen=True)
class Boundary:
    """What one boundary tensor of a cut must look like on the wire."""

    name: str
    key: str
    shape: tuple
    dtype: str

    def to_dict(self):
        return {"name": self.name, "signature_key": self.key, "shape": list(self.shape), "dtype": self.dtype}


class ServedModel:
    """One converted model: its manifest, its Keras model, and a suffix per cut once built."""

    def __init__(self, manifest):
        self.manifest = manifest
        self.name = manifest.name
        self.keras_model = None
        self._suffixes = {}
        self.boundaries = {c.id: self._boundary(c) for c in manifest.cuts}

    def _boundary(self, cut):
        specs = cut.boundary
        if not specs and cut.is_cloud_only:
            specs = (self.manifest.input,)
        out = []
        for s in specs:
            key = None
            for b in self.manifest.raw["cuts"][cut.id].get("boundary") or []:
                if b.get("name") == s.name:
                    key = b.get("signature_key")
            out.append(Boundary(s.name, key or s.name, tuple(s.shape), s.dtype))
        return tuple(out)

    def runnable(self, cut_id):
        """Whether a cut has a cloud part (the edge-only cut has none)."""
        return not self.manifest.cuts[cut_id].is_edge_only

    @property
    def cut_ids(self):
        return [c.id for c in self.manifest.cuts if self.runnable(c.id)]

    def ready(self, cut_id):
        return cut_id in self._suffixes

    def describe(self):
        raw_model = self.manifest.raw.get("model", {})
        return {
            "name": self.name,
            "input": self.manifest.input.to_dict(),
            "outputs": raw_model.get("outputs", []),
            "cuts": [
                {
                    "id": c.id,
                    "layers": list(c.layers),
                    "boundary": [b.to_dict() for b in self.boundaries[c.id]],
                    "boundary_bytes": c.boundary_bytes,
                    "cloud": self.runnable(c.id),
                    "ready": self.ready(c.id),
                }
                for c in self.manifest.cuts
            ],
        }


class ModelStore:
    """Every served model, keyed by the manifest's ``model.name``.

    Suffixes are built one at a time (Keras graph building is not made for concurrent use) under
    one lock; a built suffix is then called from any worker thread.
    """

    def __init__(self, outs):
        self.models = {}
        for out in outs:
            manifest = load_manifest(out)
            if manifest.name in self.models:
                raise ManifestError(
                    f"two manifests name the model {manifest.name!r} ({self.models[manifest.name].manifest.root} "
                    f"and {manifest.root}); each served model needs its own name"
                )
            self.models[manifest.name] = ServedModel(manifest)
        self._build_lock = threading.Lock()
        self._pending = {}
        self.build_s = {}

    def load(self):
        """Load every model's Keras file (weights once per model)."""
        from partnner_tf.runtime.cloud.suffix import load_model

        for m in self.models.values():
            t0 = time.perf_counter()
            m.keras_model = load_model(m.manifest.path(m.manifest.model_file))
            log.info("loaded model %s in %.2f s", m.name, time.perf_counter() - t0)

    def plan(self, preload):
        """(model, cut) pairs to warm before serving, from ``--preload all|none|IDS``."""
        pairs = [(m.name, c) for m in self.models.values() for c in m.cut_ids]
        if preload == "all":
            return pairs, []
        if preload == "none":
            return [], pairs
        try:
            wanted = {int(x) for x in preload.split(",") if x.strip()}
        except ValueError:
            raise ManifestError(f"--preload: expected all, none or cut ids like 0,3,5; received {preload!r}") from None
        first = [p for p in pairs if p[1] in wanted]
        return first, [p for p in pairs if p[1] not in wanted]

    def warm_order(self, pairs):
        """``pairs`` with each model's likely cuts first: cloud-only, then the Pareto cuts (each
        boundary smaller than every earlier one), then the rest, so lazy warm-up helps soonest."""

        def rank(pair):
            m = self.models[pair[0]]
            smaller = [c.boundary_bytes for c in m.manifest.cuts[: pair[1]] if m.runnable(c.id)]
            cut = m.manifest.cuts[pair[1]]
            pareto = cut.is_cloud_only or all(cut.boundary_bytes < b for b in smaller)
            return (0 if cut.is_cloud_only else 1 if pareto else 2, pair[1])

        return sorted(pairs, key=rank)

    def suffix(self, model_name, cut_id):
        """The warmed suffix for a cut, built now if it is not yet (that caller pays the build).

        Keras graph building and tracing run under one lock (they are not made for concurrent
        use); the first run, where TensorFlow optimises the graph in C++, runs outside it, so two
        warming threads overlap one cut's tracing with another's first run.
        """
        m = self.models[model_name]
        fn = m._suffixes.get(cut_id)
        if fn is not None:
            return fn
        key = (model_name, cut_id)
        with self._build_lock:
            fn = m._suffixes.get(cut_id)
            if fn is not None:
                return fn
            pending = self._pending.get(key)
            if pending is None:
                from partnner_tf.runtime.cloud.suffix import build_suffix

                t0 = time.perf_counter()
                fn = build_suffix(m.keras_model, m.manifest.cuts[cut_id], warm=False)
                if fn.fn is not None:
                    fn.fn.get_concrete_function()  # trace now, under the lock
                self._pending[key] = pending = threading.Event()
        if fn is None:  # another thread is warming this cut: wait for it (and retry if it failed)
            pending.wait()
            return m._suffixes.get(cut_id) or self.suffix(model_name, cut_id)
        try:
            fn([np.zeros(s, d) for s, d in fn.specs])
            m._suffixes[cut_id] = fn
        finally:
            with self._build_lock:
                del self._pending[key]
            pending.set()
        self.build_s[key] = time.perf_counter() - t0
        log.debug("built %s cut %d in %.2f s", model_name, cut_id, self.build_s[key])
        return fn

    def warm(self, pairs, threads=2):
        """Warm ``pairs`` with ``threads`` threads; returns when all are warm.

        Raises:
            the first build error.
        """
        if threads <= 1 or len(pairs) <= 1:
            for name, cut in pairs:
                self.suffix(name, cut)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads, thread_name_prefix="warm") as pool:
            for f in [pool.submit(self.suffix, name, cut) for name, cut in pairs]:
                f.result()

    def check(self, msg):
        """Check an infer request against its cut; returns the tensors in boundary order.

        Raises:
            ProtocolError: unknown model/cut, or tensors that do not match the cut's boundary.
        """
        m = self.models.get(msg.model)
        if m is None:
            raise _fail("unknown_model", f"no model {msg.model!r} here; served: {sorted(self.models)}")
        n = len(m.manifest.cuts)
        if msg.cut >= n:
            raise _fail("unknown_cut", f"model {msg.model!r} has cuts 0..{n - 1}; received cut {msg.cut}")
        if not m.runnable(msg.cut):
            raise _fail("unknown_cut", f"cut {msg.cut} of {msg.model!r} is edge-only: nothing runs in the cloud")
        expected = m.boundaries[msg.cut]
        tensors = _order(msg, expected)
        for b, t in zip(expected, tensors):
            if t.dtype.name != b.dtype:
                raise _fail("bad_tensor", f"cut {msg.cut} tensor {b.name!r}: expected dtype {b.dtype}; received {t.dtype.name}")
            if t.shape[1:] != b.shape[1:] or t.ndim != len(b.shape) or not 1 <= t.shape[0] <= MAX_BATCH:
                raise _fail(
                    "bad_tensor",
                    f"cut {msg.cut} tensor {b.name!r}: expected shape {list(b.shape)} (batch 1..{MAX_BATCH}); "
                    f"received {list(t.shape)}",
                )
        return tensors


def _order(msg, expected):
    """The request's tensors in boundary order: by name where every tensor is named, else by position."""
    if len(msg.tensors) != len(expected):
        raise _fail(
            "bad_tensor",
            f"cut {msg.cut} takes {len(expected)} boundary tensor(s) {[b.name for b in expected]}; "
            f"received {len(msg.tensors)}",
        )
    if not msg.names or any(n is None for n in msg.names):
        return list(msg.tensors)
    by_name = dict(zip(msg.names, msg.tensors))
    out = []
    for b in expected:
        t = by_name.get(b.name, by_name.get(b.key))
        if t is None:
            raise _fail(
                "bad_tensor",
                f"cut {msg.cut} expects a tensor named {b.name!r} (or {b.key!r}); received names {msg.names}",
            )
        out.append(t)
    return out


def check_finite(tensors):
    """Reject NaN and infinity in float tensors: they would poison the outputs silently."""
    for i, t in enumerate(tensors):
        # min/max propagate NaN and expose +-inf without allocating a mask the tensor's size.
        if t.dtype.kind == "f" and t.size and not (np.isfinite(t.min()) and np.isfinite(t.max())):
            raise _fail("bad_value", f"tensor {i} holds NaN or infinity; finite values expected")
