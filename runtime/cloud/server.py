"""The cloud executor daemon: a ROUTER front end, validation, and a pool of worker threads."""

import logging
import queue
import signal
import threading
from collections import Counter
import time
from dataclasses import dataclass

import zmq

from partnner_tf import protocol
from partnner_tf.constants import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from partnner_tf.errors import CloudError, ProtocolError
from partnner_tf.runtime.cloud.logs import event
from partnner_tf.runtime.cloud.models import ModelStore, check_finite
from partnner_tf.runtime.cloud.stats import Stats

log = logging.getLogger(__name__)

REPLIES = "inproc://partnner-cloud-replies"
#: How often the front end wakes to notice a signal or a finished drain (ms).
POLL_MS = 100


@dataclass
class Job:
    ident: object
    msg: protocol.Message
    tensors: list
    t_recv: float


class Daemon:
    """Serves ``outs`` (converted model folders) at ``bind``.

    Args:
        outs: folders holding manifest.json and the model file.
        bind: a ZeroMQ endpoint; ``tcp://127.0.0.1:*`` picks a free port.
        workers: worker threads running suffixes.
        max_queue: requests waiting for a worker beyond which new ones get ``overloaded``.
        preload: ``all``, ``none`` or cut ids ``0,3,5`` to warm before serving; the rest is
            warmed in the background after start.
        curve: None, or ``(public, secret, allowed_dir)`` to require CURVE.
        max_per_client: requests one client may have waiting or running (default max_queue/4).
        max_message_bytes: ZMQ_MAXMSGSIZE; a peer sending more is disconnected by libzmq.
        drain_timeout_s: on SIGTERM, how long to wait for requests in flight.
        intra_op_threads: TensorFlow's per-op threads as configured by the caller (reported only).
    """

    def __init__(self, outs, bind, *, workers=1, max_queue=64, preload="all", curve=None,
                 max_message_bytes=MAX_MESSAGE_BYTES, drain_timeout_s=30.0, intra_op_threads=None,
                 max_per_client=None):
        self.bind = bind
        self.workers = workers
        self.preload = preload
        self.curve = curve
        self.drain_timeout_s = drain_timeout_s
        self.max_message_bytes = max_message_bytes
        self.intra_op_threads = intra_op_threads
        self.store = ModelStore(outs)
        self.jobs = queue.Queue(maxsize=max_queue)
        self.stats = Stats()
        self.busy = 0
        self._busy_lock = threading.Lock()
        self._stopping = threading.Event()
        self._inflight = 0
        # Requests waiting or running per client identity: one client cannot take every slot.
        self._per_client = Counter()
        self.max_per_client = max(1, max_queue // 4) if max_per_client is None else max_per_client
        self._threads = []
        self.endpoint = None
        self.startup = {}

    # -- start-up ------------------------------------------------------------------------------

    def start(self):
        """Bind, load models, warm the preloaded cuts, start workers; returns the bound endpoint.

        Binding comes first so that a taken port fails in milliseconds, not after the warm-up;
        requests that arrive meanwhile wait in the socket.
        """
        t0 = time.perf_counter()
        # One tf.function per cut, each traced once, trips TensorFlow's "retracing" heuristic.
        logging.getLogger("tensorflow").addFilter(_NoRetraceWarning())
        self._bind()
        self.store.load()
        t_load = time.perf_counter() - t0
        first, later = self.store.plan(self.preload)
        self.store.warm(first, threads=2)
        t_warm = time.perf_counter() - t0 - t_load
        self.replies = self.ctx.socket(zmq.PULL)
        self.replies.bind(REPLIES)
        # One worker runs inline in the front-end thread: no thread hand-off per request
        # (two wake-ups saved, measured in benchmarks/cloud_bench.py); more get a thread each.
        for i in range(self.workers if self.workers > 1 else 0):
            t = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if later:
            later = self.store.warm_order(later)
            t = threading.Thread(target=self._warm, args=(later,), name="warmer", daemon=True)
            t.start()
        self.startup = {
            "load_s": round(t_load, 3),
            "warm_s": round(t_warm, 3),
            "cuts_warmed": len(first),
            "cuts_lazy": len(later),
            "total_s": round(time.perf_counter() - t0, 3),
        }
        event(log, logging.INFO, "serving", endpoint=self.endpoint, models=sorted(self.store.models),
              workers=self.workers, intra_op_threads=self.intra_op_threads, curve=self.curve is not None,
              **self.startup)
        return self.endpoint

    def _bind(self):
        self.ctx = zmq.Context()
        self._auth = None
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        # Report a vanished client as an error we can log instead of dropping silently.
        self.front.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.front.linger = 1000
        if self.curve is not None:
            self._auth = _start_auth(self.ctx, self.curve[2])
            self.front.curve_server = True
            self.front.curve_publickey, self.front.curve_secretkey = self.curve[0], self.curve[1]
        try:
            self.front.bind(self.bind)
        except zmq.ZMQError as exc:
            self.front.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()
            raise CloudError("bind_failed", f"cannot bind {self.bind}: {exc.strerror}") from None
        self.endpoint = self.front.getsockopt_string(zmq.LAST_ENDPOINT)

    def _warm(self, pairs):
        t0 = time.perf_counter()
        for name, cut in pairs:
            if self._stopping.is_set():
                return
            try:
                self.store.suffix(name, cut)
            except Exception as exc:  # noqa: BLE001 - one bad cut must not stop the others
                event(log, logging.ERROR, "warm failed", model=name, cut=cut, error=str(exc))
        event(log, logging.INFO, "background warm done", cuts=len(pairs), seconds=round(time.perf_counter() - t0, 3))

    # -- the front end -------------------------------------------------------------------------

    def serve_forever(self, install_signals=True):
        """Answer requests until SIGTERM/SIGINT (or :meth:`stop`), then drain and close."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.replies, zmq.POLLIN)
        drain_until = None
        while True:
            if self._stopping.is_set() and drain_until is None:
                drain_until = time.monotonic() + self.drain_timeout_s
                event(log, logging.INFO, "draining", in_flight=self._inflight)
            inline = not self._threads and not self.jobs.empty()
            events = dict(poller.poll(0 if inline else POLL_MS))
            if self.replies in events:
                self._forward_replies()
            if self.front in events:
                for _ in range(100):  # bounded so replies keep flowing under a flood
                    try:
                        frames = self.front.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)
            if inline:
                # One job per turn, so that pings and new requests are read between jobs.
                job = self.jobs.get_nowait()
                reply = [job.ident, *self._run(job)]
                self._finished(job.ident)
                self._send(reply)
                continue
            # Draining ends once nothing is in flight and a whole poll brought no new message:
            # requests already on the wire when the signal came are answered, not lost.
            if drain_until is not None and (
                (self._inflight == 0 and not events) or time.monotonic() > drain_until
            ):
                break
        self._close()

    def stop(self):
        self._stopping.set()

    def _forward_replies(self):
        while True:
            try:
                frames = self.replies.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._finished(frames[0])
            self._send(frames)

    def _finished(self, ident):
        self._inflight -= 1
        key = ident.bytes
        self._per_client[key] -= 1
        if self._per_client[key] <= 0:
            del self._per_client[key]  # the map holds only clients with work: bounded

    def _send(self, frames):
        try:
            self.front.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            # The client left (EHOSTUNREACH) or stopped reading (EAGAIN): drop, never block.
            self.stats.dropped += 1
            event(log, logging.WARNING, "reply dropped", reason=exc.strerror)

    def _reply_error(self, ident, rid, code, reason):
        self.stats.error(code)
        event(log, logging.WARNING, "request rejected", id=rid, code=code, reason=reason[:300])
        self._send([ident, *protocol.encode_error(rid, code, reason)])

    def _handle(self, frames):
        t_recv = time.perf_counter()
        if len(frames) < 2:
            # A ROUTER always prepends the identity; an empty message has no one to answer.
            self.stats.error("bad_message")
            return
        ident, body = frames[0], frames[1:]
        try:
            msg = protocol.decode_request(body)
        except ProtocolError as exc:
            self._reply_error(ident, protocol.peek_id(body), exc.code, str(exc))
            return
        self.stats.request(msg.type)
        if msg.type == "ping":
            self._send([ident, *protocol.encode_ok(msg.id)])
        elif msg.type == "describe":
            self._send([ident, *protocol.encode_ok(msg.id, **self.describe())])
        elif msg.type == "stats":
            self._send([ident, *protocol.encode_ok(msg.id, **self.stats_body())])
        else:
            self._submit(ident, msg, t_recv)

    def _submit(self, ident, msg, t_recv):
        if self._stopping.is_set():
            self._reply_error(ident, msg.id, "shutting_down", "the daemon is draining and takes no new requests")
            return
        if self._per_client[ident.bytes] >= self.max_per_client:
            self._reply_error(ident, msg.id, "overloaded",
                              f"this client already has {self.max_per_client} requests waiting; retry later")
            return
        try:
            tensors = self.store.check(msg)
        except ProtocolError as exc:
            self._reply_error(ident, msg.id, exc.code, str(exc))
            return
        try:
            self.jobs.put_nowait(Job(ident, msg, tensors, t_recv))
        except queue.Full:
            self._reply_error(ident, msg.id, "overloaded", f"{self.jobs.maxsize} requests already wait; retry later")
            return
        self._inflight += 1
        self._per_client[ident.bytes] += 1

    # -- workers -------------------------------------------------------------------------------

    def _work(self):
        push = self.ctx.socket(zmq.PUSH)
        push.connect(REPLIES)
        while True:
            job = self.jobs.get()
            if job is None:
                break
            push.send_multipart([job.ident, *self._run(job)], copy=False)
        push.close(linger=1000)

    def _run(self, job):
        msg = job.msg
        try:
            check_finite(job.tensors)  # here, not in the front end: it reads every byte
        except ProtocolError as exc:
            return self._error_frames(msg, exc.code, str(exc))
        t_start = time.perf_counter()
        with self._busy_lock:
            self.busy += 1
        try:
            outputs = self.store.suffix(msg.model, msg.cut)(job.tensors)
        except ProtocolError as exc:
            return self._error_frames(msg, exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - a failing suffix must answer, not kill the worker
            log.exception("suffix failed")
            return self._error_frames(msg, "internal", f"{type(exc).__name__}: {exc}")
        finally:
            with self._busy_lock:
                self.busy -= 1
        t_end = time.perf_counter()
        self.stats.done(msg.model, msg.cut, t_start - job.t_recv, t_end - t_start)
        if log.isEnabledFor(logging.DEBUG):  # one line per request only when asked (--log-level debug)
            event(log, logging.DEBUG, "answered", id=msg.id, model=msg.model, cut=msg.cut,
                  queue_s=round(t_start - job.t_recv, 6), compute_s=round(t_end - t_start, 6))
        return protocol.encode_ok(
            msg.id,
            tensors=outputs,
            queue_s=t_start - job.t_recv,
            compute_s=t_end - t_start,
            queue_depth=self.jobs.qsize(),
            busy_workers=self.busy,
            workers=self.workers,
        )

    def _error_frames(self, msg, code, reason):
        self.stats.error(code)
        event(log, logging.WARNING, "request failed", id=msg.id, model=msg.model, cut=msg.cut, code=code,
              reason=reason[:300])
        return protocol.encode_error(msg.id, code, reason)

    # -- bodies of describe and stats ----------------------------------------------------------

    def describe(self):
        return {
            "protocol": PROTOCOL_VERSION,
            "workers": self.workers,
            "intra_op_threads": self.intra_op_threads,
            "startup": self.startup,
            "models": {name: m.describe() for name, m in self.store.models.items()},
        }

    def stats_body(self):
        body = self.stats.snapshot()
        body.update(queue_depth=self.jobs.qsize(), busy_workers=self.busy, workers=self.workers)
        return body

    def _close(self):
        for _ in self._threads:
            self.jobs.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._forward_replies()
        self.replies.close(linger=0)
        self.front.close(linger=1000)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()
        event(log, logging.INFO, "stopped", **self.stats.totals())


class _NoRetraceWarning(logging.Filter):
    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _start_auth(ctx, allowed_dir):
    """A ZAP authenticator admitting only the CURVE public keys found in ``allowed_dir``."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx, log=logging.getLogger(__name__ + ".auth"))
    auth.start()
    auth.configure_curve(domain="*", location=str(allowed_dir))
    return auth
