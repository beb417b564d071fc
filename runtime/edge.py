"""The edge runtime: per frame, run the chosen cut's prefix, send the boundary, never lose a frame."""

import gc
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from partnner_tf.constants import (DEADLINE_S, MAX_DEADLINE_S, MIN_DEADLINE_S, PROBE_BACKOFF_S,
                                   PROBE_TIMEOUT_S)
from partnner_tf.errors import Abandoned, CloudError, CloudTimeout, InputError, PartnnerError
from partnner_tf.manifest import load_manifest, verify_paths
from partnner_tf.runtime.cache import DEFAULT_BUDGET_BYTES, PrefixCache
from partnner_tf.runtime.interpreter import default_threads
from partnner_tf.runtime.link import Link
from partnner_tf.runtime.onboard import board_selector
from partnner_tf.runtime.plan import plan_prefixes, usable_delegate
from partnner_tf.selector import Observation

log = logging.getLogger(__name__)
_now = time.perf_counter

#: option -> default; anything else passed to EdgeRuntime is an error.
OPTIONS = {
    "deadline_s": DEADLINE_S,  # cloud deadline when the selector suggests none
    "min_deadline_s": MIN_DEADLINE_S,  # bounds on the selector's suggestion
    "max_deadline_s": MAX_DEADLINE_S,
    "budget_bytes": DEFAULT_BUDGET_BYTES,  # memory for loaded prefixes
    "prefetch_radius": 2,  # neighbours of the current cut loaded ahead
    "defer_swap": True,  # run the loaded cut while the chosen one loads
    "delegate": None,  # "edgetpu", a delegate library, or None (the board decides)
    "verify": True,  # check the hashes of the prefixes it will load at start
    "probe_timeout_s": PROBE_TIMEOUT_S,
    "backoff_s": PROBE_BACKOFF_S,
    "selector_options": None,  # dict passed to make_selector
    "server_public_key": None,  # CURVE: the daemon's public key (z85 or certificate path)
    "client_keypair": None,  # CURVE: this device's key pair or its .key_secret file
}


#: Share of a board's ``memory_mb`` the prefix cache may fill (the rest: Python, the runtime, frames).
BOARD_MEMORY_SHARE = 0.6


@dataclass
class _Hedge:
    """An edge-only run going alongside a cloud request; ``done`` is set when it ends."""

    future: object
    done: object  # a partnner_tf.client.Wakeup
    unreported: bool = False  # the cloud won: the selector has not seen this run's time yet


@dataclass
class FrameResult:
    """What one frame gave: the outputs (model output order), the cut, and where the time went."""

    frame: int
    outputs: list = field(repr=False)
    cut: int
    edge_s: float
    transfer_s: float
    cloud_s: float
    total_s: float
    bytes_sent: int
    fallback: bool
    queue_s: float = 0.0
    compute_s: float = 0.0
    chosen: Optional[int] = None  # the selector's cut when a swap was deferred or a frame fell back
    error: Optional[str] = None  # why the frame fell back
    hedged: Optional[str] = None  # the edge-only model ran beside the request: "edge" or "cloud" answered
    edge_only_s: Optional[float] = None  # the time of a hedged edge-only run the selector heard of here

    def to_dict(self):
        """Everything but the outputs, for a JSON log line."""
        d = asdict(self)
        del d["outputs"]
        return d


def freeze_heap():
    """Before streaming: collect, then put every object alive now out of the collector's reach
    (``gc.freeze``). A full collection walks every tracked object, the interpreter's modules and
    the loaded runtime included: 9-13 ms in a testbed edge process here (24k objects), one
    frame's stall each time a long stream runs one, and far more on a board's slower CPU; after
    this, 0-0.5 ms, walking only what frames made since. The objects frozen live as long as the
    process anyway."""
    gc.collect()
    gc.freeze()


class EdgeRuntime:
    """Runs a converted model's frames on the edge, partitioned with a cloud daemon.

    On a board bundle that left cuts out (``bundle.cuts``), only the cuts it carries are
    verified, loaded and chosen: a policy name gets a selector over those alone. With an Edge
    TPU board (or ``delegate="edgetpu"``) the cuts' full-int8 prefixes (``edgetpu`` entries)
    run instead of the float ones, quantized in and dequantized out.

    Args:
        out_dir: the converter's output folder (``manifest.json`` + ``prefixes/``), or a
            bundle's ``model/`` folder.
        cloud: an endpoint string, a :class:`partnner_tf.client.CloudClient`, or None (edge only).
        selector: a policy name for :func:`make_selector`, or a selector object speaking the
            manifest's cut ids (it must not choose a cut the bundle left out).
        board: a board name or record; its ``threads`` and ``delegate`` are the defaults, and
            its memory (:data:`BOARD_MEMORY_SHARE` of ``memory_mb``) the prefix cache's budget
            unless ``budget_bytes`` is given.
        threads: interpreter threads (overrides the board's).
        **options: see :data:`OPTIONS`.
    """

    def __init__(self, out_dir, cloud=None, selector="partnner", board=None, threads=None, **options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise PartnnerError(f"EdgeRuntime: unknown option(s) {unknown}; known: {sorted(OPTIONS)}")
        self.options = {**OPTIONS, **options}
        if board is not None and "budget_bytes" not in options:
            self.options["budget_bytes"] = board_budget_bytes(board)
        self.manifest = m = load_manifest(out_dir)
        self.cuts = m.on_board  # the cut ids whose files are here
        self.edge_cut = m.edge_only
        if self.edge_cut is None:
            raise PartnnerError(f"{m.root}: model {m.name!r} has no edge-only cut; the edge cannot fall back")
        if self.edge_cut not in self.cuts:
            raise PartnnerError(
                f"{m.root}: this bundle carries cuts {list(self.cuts)}, not the edge-only cut "
                f"{self.edge_cut}, which the runtime needs for its fallback"
            )
        threads, delegate, board_name = _board_defaults(board, threads, self.options["delegate"])
        self.threads = threads = int(threads) if threads else default_threads()
        library, edgetpu = usable_delegate(delegate, board_name)
        self.files = plan_prefixes(m, self.cuts, library, edgetpu, board_name)
        if self.options["verify"]:
            verify_paths(m, [(f.path, f.sha256) for f in self.files.values()])
        self._keys(m)
        self.selector = self._selector(selector, cloud is not None)
        self._owns_client = False
        self.client = self.link = None
        self.cache = PrefixCache(self.files, lambda f: f.load(m, threads).warm(), self.options["budget_bytes"])
        try:
            self.client = self._connect(cloud)
            if self.client is not None:
                self.link = Link(self.client, self.options["probe_timeout_s"], self.options["backoff_s"])
                self.link.warm()
                offer = getattr(self.selector, "offer_hedge", None)
                if offer is not None:
                    offer()  # this runtime runs hedged frames
            # The fallback must never wait for a load: the whole model stays in memory.
            self.cache.pin(self.edge_cut)
        except BaseException:
            self.close()
            raise
        self._current = None
        self._count = 0
        self.stats = {"frames": 0, "fallbacks": 0, "swaps": 0, "deferred": 0, "hedged": 0}
        self._hedge_pool = self._hedged = self._news = None
        self._asked = None  # _prefetch: (cut, hints) it last asked the cache for

    # -- set-up -------------------------------------------------------------------------------

    def _keys(self, m):
        """Signature keys of the input, each cut's boundary and the outputs (never positions)."""
        raw_model = m.raw.get("model", {})
        self.input_key = raw_model.get("input", {}).get("signature_key") or m.input.name
        self.boundary_keys = {}
        for c, raw in zip(m.cuts, m.raw["cuts"]):
            self.boundary_keys[c.id] = [b.get("signature_key") or b["name"] for b in raw.get("boundary") or []]
        outs = raw_model.get("outputs")
        self.output_keys = [o.get("signature_key") or o["name"] for o in outs] if outs else None

    def _connect(self, cloud):
        if cloud is None:
            return None
        if isinstance(cloud, str):
            from partnner_tf.client import CloudClient

            self._owns_client = True
            return CloudClient(cloud, server_public_key=self.options["server_public_key"],
                               client_keypair=self.options["client_keypair"])
        return cloud

    def _selector(self, selector, has_cloud):
        if not isinstance(selector, str):
            return selector
        if not has_cloud and selector != "edge":
            if selector in ("cloud",) or selector.startswith("fixed:"):
                raise PartnnerError(f"policy {selector!r} needs a cloud endpoint; none was given")
            log.info("no cloud endpoint: policy %r runs every frame edge-only", selector)
            selector = "edge"
        return board_selector(selector, self.manifest, self.cuts, **(self.options["selector_options"] or {}))

    def preload(self, cuts=None):
        """Load now, smallest first, as many of ``cuts`` (default: every prefix on this board) as
        the prefix cache's budget holds beside the edge-only one; returns the cuts loaded.

        For before the first frame: a prefix loaded while frames run stalls one (see
        :meth:`PrefixCache.fill`). What does not fit is still loaded when wanted, in the background.
        """
        cuts = [c for c in (self.files if cuts is None else cuts) if c in self.files]

        def size(cut):
            return os.path.getsize(self.manifest.path(self.files[cut].path))

        return self.cache.fill(sorted(cuts, key=size), size)

    # -- frames -------------------------------------------------------------------------------

    def infer(self, frame):
        """Run one frame; returns a :class:`FrameResult`. Never raises for a cloud failure."""
        x = self._check(frame)
        n = self._count
        self._count += 1
        t0 = _now()  # choosing is part of the frame's latency
        chosen = int(self.selector.choose())
        if chosen not in self.cuts:  # a selector returning a bad id is a bug: say so
            self.manifest.cut(chosen)
            raise PartnnerError(f"the selector chose cut {chosen}, which is not on this board; "
                                f"the bundled cuts are {list(self.cuts)}")
        if chosen == self.edge_cut or self.client is None:
            result = self._edge_frame(n, x, chosen, t0, fallback=False)
        elif not self.link.is_up:
            result = self._edge_frame(n, x, chosen, t0, fallback=True, error="cloud link down")
        else:
            result = self._partitioned(n, x, chosen, t0)
        self.stats["frames"] += 1
        self.stats["fallbacks"] += result.fallback
        # What ran: a hedge the edge won ran edge-only (a swap deferred for a load then keeps
        # running edge-only, not a cut the selector only tried).
        ran = self.edge_cut if result.hedged == "edge" else result.cut
        if ran != self._current:
            self.stats["swaps"] += self._current is not None
            self._current = ran
        self._prefetch(result.cut)
        return result

    def stream(self, frames):
        """Yield a :class:`FrameResult` for each frame of an iterable, in order."""
        for frame in frames:
            yield self.infer(frame)

    def _check(self, frame):
        spec = self.manifest.input
        if not isinstance(frame, np.ndarray):
            raise InputError(f"expected a numpy array frame of shape {spec.shape}, received {type(frame).__name__}")
        if frame.shape == spec.shape[1:]:
            frame = frame[np.newaxis]
        if frame.shape != spec.shape or frame.dtype != spec.dtype:
            raise InputError(
                f"model {self.manifest.name!r} expects frames of shape {spec.shape} (or "
                f"{spec.shape[1:]}) and dtype {spec.dtype}; received shape {frame.shape}, dtype {frame.dtype}"
            )
        return np.ascontiguousarray(frame)

    def _edge_frame(self, n, x, chosen, t0, fallback, error=None):
        outputs, edge_s = self._run_edge(x)
        news = self._hedge_news()
        self.selector.observe(Observation(cut=self.edge_cut, edge_s=edge_s, bytes_sent=0, edge_only_s=news))
        return FrameResult(n, outputs, self.edge_cut, edge_s, 0.0, 0.0, _now() - t0, 0, fallback,
                           chosen=chosen if chosen != self.edge_cut else None, error=error, edge_only_s=news)

    def _run_edge(self, x):
        self._await_hedge()
        return self._edge_now(x)

    def _edge_now(self, x):
        prefix = self.cache.get(self.edge_cut)
        t = _now()
        out = prefix.run({self.input_key: x})
        keys = self.output_keys or list(out)
        outputs = [prefix.dequantize(k, out[k]) for k in keys]
        return outputs, _now() - t

    def _prefix_for(self, chosen):
        """The cut to run now and its prefix; a swap to a cut still loading waits a frame or two."""
        cut = chosen
        if (self.options["defer_swap"] and self._current is not None and chosen != self._current
                and not self._ready(chosen) and self._ready(self._current)):
            self.cache.prefetch([chosen])
            self.stats["deferred"] += 1
            cut = self._current
        if cut == self.edge_cut:
            return cut, None
        prefix = self.cache.get(cut) if cut in self.files else None
        return cut, prefix

    def _ready(self, cut):
        return cut not in self.files or self.cache.is_ready(cut)

    def _partitioned(self, n, x, chosen, t0):
        cut, prefix = self._prefix_for(chosen)
        if cut == self.edge_cut:  # a deferred swap away from edge-only
            return self._edge_frame(n, x, chosen, t0, fallback=False)
        edge_s = 0.0
        if prefix is None:  # cloud-only: the raw input goes
            tensors = [x]
        else:
            t = _now()
            out = prefix.run({self.input_key: x})
            edge_s = _now() - t
            tensors = [out[k] for k in self.boundary_keys[cut]]
        nbytes = sum(t.nbytes for t in tensors)
        hedge = getattr(self.selector, "hedge", None)
        hedged = self._hedge(x) if hedge is not None and hedge(cut) else None
        deadline = self._deadline(cut)
        t1 = _now()
        self.cache.idle.set()  # background loads may hold the GIL while we wait for the cloud
        try:
            reply = self.client.infer(self.manifest.name, cut, tensors, deadline,
                                      cancel=hedged.done if hedged else None)
            outputs = list(reply.outputs)
            self._check_reply(cut, outputs)
        except (PartnnerError, OSError, RuntimeError) as exc:
            # zmq.ZMQError is a RuntimeError; any failure of the cloud leg is finished on the edge.
            self.cache.idle.clear()
            if hedged is not None:
                return self._hedge_won(n, cut, chosen, t0, edge_s, _now() - t1, nbytes, hedged, exc)
            return self._fallback(n, x, cut, chosen, t0, edge_s, _now() - t1, nbytes, exc)
        rtt = _now() - t1
        self.cache.idle.clear()
        cloud_s = float(reply.queue_s) + float(reply.compute_s)
        transfer_s = max(0.0, rtt - cloud_s)
        if hedged is not None:
            hedged.unreported = True  # the cloud won; the edge-only run's time goes with a later frame
        news = self._hedge_news()
        self.selector.observe(Observation(
            cut=cut, edge_s=edge_s, transfer_s=transfer_s, cloud_s=cloud_s, bytes_sent=nbytes, edge_only_s=news,
            queue_s=reply.queue_s, compute_s=reply.compute_s, queue_depth=reply.queue_depth,
            busy_workers=reply.busy_workers, workers=reply.workers))
        return FrameResult(n, outputs, cut, edge_s, transfer_s, cloud_s, _now() - t0, nbytes, False,
                           queue_s=reply.queue_s, compute_s=reply.compute_s,
                           chosen=chosen if chosen != cut else None, hedged="cloud" if hedged else None,
                           edge_only_s=news)

    def _check_reply(self, cut, outputs):
        expected = len(self.output_keys) if self.output_keys else None
        if expected is not None and len(outputs) != expected:
            raise CloudError("bad_reply", f"cut {cut}: expected {expected} outputs, received {len(outputs)}")

    def _fallback(self, n, x, cut, chosen, t0, edge_s, waited, nbytes, exc):
        if not isinstance(exc, CloudError) or exc.code == "bad_reply":
            self.link.down(exc)  # timeout or broken link: probe before using the cloud again
        log.info("frame %d: cut %d failed in the cloud (%s); finished on the edge", n, cut, exc)
        news = self._hedge_news()
        self.selector.observe(Observation(cut=cut, edge_s=edge_s, transfer_s=waited,
                                          bytes_sent=nbytes, timed_out=True, edge_only_s=news))
        outputs, full_s = self._run_edge(x)
        return FrameResult(n, outputs, cut, edge_s + full_s, waited, 0.0, _now() - t0, nbytes, True,
                           chosen=chosen if chosen != cut else None, error=str(exc), edge_only_s=news)

    def _hedge(self, x):
        """Start the edge-only run beside a cloud request (the selector asked: a probe)."""
        self._await_hedge()
        if self._hedge_pool is None:
            self._hedge_pool = ThreadPoolExecutor(1, thread_name_prefix="partnner-hedge")
        from partnner_tf.client import Wakeup

        done = Wakeup()  # ends the wait for the cloud the moment the run ends, without polling
        future = self._hedge_pool.submit(self._edge_now, x)
        future.add_done_callback(lambda _: done.set())
        self._hedged = _Hedge(future, done)
        self.stats["hedged"] += 1
        return self._hedged

    def _await_hedge(self):
        """The edge-only interpreter is not shared: a hedge still running is waited for."""
        if self._hedged is not None:
            self._hedged.future.exception()  # waits; its error, if any, was the hedge's to report
            self._collect_hedge()

    def _collect_hedge(self):
        """Once a hedge has ended: keep the time of one the cloud beat for the next observation."""
        h = self._hedged
        if h is not None and h.future.done():
            self._hedged = None
            h.done.close()
            if h.unreported and h.future.exception() is None:
                self._news = h.future.result()[1]

    def _hedge_news(self):
        """The time of an edge-only hedge the cloud beat, once it has ended (else None), once."""
        self._collect_hedge()
        news, self._news = self._news, None
        return news

    def _hedge_won(self, n, cut, chosen, t0, edge_s, waited, nbytes, hedged, exc):
        """The edge-only run beside the request finished first (or the cloud leg failed)."""
        if not isinstance(exc, (CloudError, CloudTimeout)) or getattr(exc, "code", None) == "bad_reply":
            self.link.down(exc)  # a broken link, not a slow one
        outputs, full_s = hedged.future.result()
        self._collect_hedge()  # it has ended: drop it (its time is this frame's, not news)
        self.selector.observe(Observation(cut=cut, edge_s=edge_s, transfer_s=waited, bytes_sent=nbytes,
                                          timed_out=True, edge_only_s=full_s))
        # The edge answering first is what a hedge is for; a cloud leg that failed is a fallback.
        failed = not isinstance(exc, Abandoned)
        return FrameResult(n, outputs, cut, edge_s + full_s, waited, 0.0, _now() - t0, nbytes, failed,
                           chosen=chosen if chosen != cut else None, error=str(exc) if failed else None,
                           hedged="edge", edge_only_s=full_s)

    def _deadline(self, cut):
        o = self.options
        hint = getattr(self.selector, "deadline_s", None)
        d = hint(cut) if hint is not None else None
        d = o["deadline_s"] if d is None else d
        return min(max(float(d), o["min_deadline_s"]), o["max_deadline_s"])

    def _prefetch(self, cut):
        """Queue loads of the cuts the next frames may ask for: neighbours and the selector's hints.
        A fixed cut needs none (its fallback runs edge-only, which is always loaded)."""
        if not getattr(self.selector, "adaptive", True):
            return
        likely = getattr(self.selector, "likely_cuts", None)
        hinted = list(likely()) if likely is not None else []
        if (cut, hinted) == self._asked:  # asked last frame: loaded or queued since (most frames)
            return
        self._asked = (cut, hinted)
        r = self.options["prefetch_radius"]
        near = sorted(range(max(0, cut - r), min(len(self.manifest.cuts), cut + r + 1)), key=lambda c: abs(c - cut))
        self.cache.prefetch([c for c in hinted + near if c in self.files])

    # -- life cycle ---------------------------------------------------------------------------

    def settle(self):
        """Wait for the work a frame leaves running: an edge-only hedge, prefix loads in the background."""
        self._await_hedge()
        self.cache.drain()

    def close(self):
        if getattr(self, "_hedge_pool", None) is not None:
            self._hedge_pool.shutdown(wait=True)
            self._collect_hedge()  # the last hedge has ended: drop it and its Wakeup
            self._hedge_pool = None
        if self.link is not None:
            self.link.close()
        if self._owns_client and self.client is not None:
            self.client.close()
            self._owns_client = False
        self.cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def board_budget_bytes(board):
    """The prefix cache's budget on ``board``: a share of the memory its service may use."""
    if isinstance(board, str):
        from partnner_tf.boards import get_board

        board = get_board(board)
    memory_mb = getattr(board, "memory_mb", None)
    return int(BOARD_MEMORY_SHARE * memory_mb * 2**20) if memory_mb else DEFAULT_BUDGET_BYTES


def _board_defaults(board, threads, delegate):
    """(threads, delegate, board name): arguments first, then the board's record, then the host's."""
    if board is None:
        return threads, delegate, None
    if isinstance(board, str):
        from partnner_tf.boards import get_board

        board = get_board(board)
    threads = threads or getattr(board, "threads", None)
    if delegate is None and getattr(board, "accelerator", None):
        # The Edge TPU is named as such, so that its int8 prefixes are chosen whatever the path.
        delegate = "edgetpu" if board.accelerator == "edgetpu" else getattr(board, "delegate", None)
    return threads, delegate, getattr(board, "name", None)
