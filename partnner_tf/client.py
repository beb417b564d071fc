"""The edge's client of the cloud daemon: infer with a deadline, ping, describe, stats."""

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from partnner_tf import protocol
from partnner_tf.constants import DEFAULT_ENDPOINT, MAX_MESSAGE_BYTES
from partnner_tf.errors import Abandoned, CloudError, CloudTimeout, PartnnerError, ProtocolError

log = logging.getLogger(__name__)

#: How often libzmq retries a lost connection, and the most it backs off to (ms).
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1000
#: ZMTP heartbeats find a dead peer on a half-open TCP connection (ms).
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
#: A wait cancelled by a plain ``threading.Event`` looks at it this often (s); a :class:`Wakeup`
#: ends the wait at once and costs no CPU meanwhile.
CANCEL_POLL_S = 0.002


class Wakeup:
    """A one-shot event a wait for the cloud can block on: ``set()``, from any thread, makes
    ``fileno()`` readable, so the wait ends at once. A ``threading.Event`` can only be looked at,
    every CANCEL_POLL_S: 500 wake-ups a second beside the edge-only run of a hedged frame, whose
    CPU that run then shares (over a cloud that never answered, a CPU-quota Pi 3B's hedged runs
    took 1.33x a plain one's time with them and 0.90x with a Wakeup; benchmarks/hedge_cost.py).
    ``close()`` releases the pipe; a ``set()`` after it does nothing."""

    def __init__(self):
        self._r, self._w = os.pipe()
        self._lock = threading.Lock()
        self._set = False

    def set(self):
        with self._lock:
            if not self._set and self._w is not None:
                os.write(self._w, b"\0")
            self._set = True

    def is_set(self):
        return self._set

    def fileno(self):
        return self._r

    def close(self):
        with self._lock:
            for fd in (self._r, self._w):
                if fd is not None:
                    os.close(fd)
            self._r = self._w = None


@dataclass
class InferReply:
    """The cloud's answer to one infer request.

    Attributes:
        outputs: the model's outputs, in the model's output order.
        queue_s: time the request waited in the daemon before a worker took it.
        compute_s: time the suffix ran.
        queue_depth, busy_workers, workers: the daemon's load when it replied.
        request_id: the id this reply matched.
    """

    outputs: list
    queue_s: float
    compute_s: float
    queue_depth: int
    busy_workers: int
    workers: int
    request_id: int
    info: dict = field(default_factory=dict, repr=False)


def _reported(info, key, kind):
    """A reply's ``key`` (a time or a count; 0 if absent) as ``kind``, or the ProtocolError that
    names it: a NaN or negative time would reach the selector's estimates."""
    value = info.get(key, 0)
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or isinstance(value, bool) or not 0 <= number < float("inf"):
        raise ProtocolError(f"reply field {key!r} must be a finite number >= 0, received {value!r}")
    return number


def _load_key(value, secret=False):
    """A CURVE key given as z85 bytes/str or as a path to a zmq.auth certificate file."""
    if value is None:
        return None
    if isinstance(value, bytes) and len(value) == 40:
        return value
    if isinstance(value, str) and len(value) == 40 and not os.path.exists(value):
        return value.encode("ascii")
    import zmq.auth

    public, sec = zmq.auth.load_certificate(str(Path(value)))
    if secret and sec is None:
        raise CloudError("bad_key", f"{value} holds no secret key; pass the .key_secret file")
    return (public, sec) if secret else public


class CloudClient:
    """A DEALER socket to one cloud daemon. Not thread-safe: one client per thread.

    Args:
        endpoint: the daemon's endpoint, e.g. ``tcp://127.0.0.1:5555``.
        server_public_key: the daemon's CURVE public key (z85 or certificate path); enables CURVE.
        client_keypair: ``(public, secret)`` z85 keys, or the path of a ``.key_secret`` file.
        context: a zmq.Context to share; a private one is used otherwise.
        heartbeat_timeout_s: how long the connection may stay silent after a heartbeat before
            it is dropped and made again (default HEARTBEAT_TIMEOUT_MS). A request in flight on
            a dropped connection is lost: its reply has nowhere to go.
    """

    def __init__(self, endpoint=DEFAULT_ENDPOINT, *, server_public_key=None, client_keypair=None, context=None,
                 heartbeat_timeout_s=None):
        if heartbeat_timeout_s is not None and not heartbeat_timeout_s > 0:
            raise PartnnerError(f"heartbeat_timeout_s: expected a positive number of seconds, "
                                f"received {heartbeat_timeout_s!r}")
        self._heartbeat_timeout_ms = (HEARTBEAT_TIMEOUT_MS if heartbeat_timeout_s is None
                                      else max(1, round(heartbeat_timeout_s * 1000)))
        self.endpoint = endpoint
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._server_key = _load_key(server_public_key)
        if isinstance(client_keypair, (str, Path)):
            client_keypair = _load_key(client_keypair, secret=True)
        self._keypair = client_keypair
        if self._server_key is not None and self._keypair is None:
            # A throwaway key pair: the server's allow-list then rejects us, which is the point.
            self._keypair = zmq.curve_keypair()
        self._ids = itertools.count(int.from_bytes(os.urandom(4), "little"))
        self._sock = None
        self._poller = None
        self._connect()

    def _connect(self):
        s = self._ctx.socket(zmq.DEALER)
        s.linger = 0
        # Send only on a completed connection: a request is never queued for a dead daemon and
        # replayed, stale, when it comes back.
        s.setsockopt(zmq.IMMEDIATE, 1)
        s.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        s.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, self._heartbeat_timeout_ms)
        if self._server_key is not None:
            s.curve_serverkey = self._server_key
            s.curve_publickey, s.curve_secretkey = self._keypair
        s.connect(self.endpoint)
        self._sock = s
        self._poller = zmq.Poller()
        self._poller.register(s, zmq.POLLIN)

    # -- requests ------------------------------------------------------------------------------

    def _call(self, frames_for, timeout_s, cancel=None):
        """Send a request built by ``frames_for(id)`` and wait for the reply with that id
        (until the deadline, or until the ``cancel`` event is set)."""
        if self._sock is None:
            raise CloudError("closed", "this CloudClient is closed")
        deadline = time.monotonic() + timeout_s
        rid = next(self._ids) & protocol.MAX_REQUEST_ID
        frames = frames_for(rid)
        while True:
            try:
                self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                break
            except zmq.Again:
                # No connection yet (IMMEDIATE): wait for one, up to the deadline.
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CloudTimeout(f"no connection to {self.endpoint} within {timeout_s:.3g} s") from None
                if not self._sock.poll(min(left, 0.05) * 1000, zmq.POLLOUT):
                    continue
        poller, slice_s = self._poller, None
        if cancel is not None and hasattr(cancel, "fileno"):
            poller = zmq.Poller()  # the reply or the cancel, whichever comes first
            poller.register(self._sock, zmq.POLLIN)
            poller.register(cancel.fileno(), zmq.POLLIN)
        elif cancel is not None:
            slice_s = CANCEL_POLL_S
        while True:
            if cancel is not None and cancel.is_set():
                raise Abandoned(f"request {rid} to {self.endpoint} abandoned: the answer came from elsewhere")
            left = deadline - time.monotonic()
            if left <= 0:
                raise CloudTimeout(f"{self.endpoint} did not answer request {rid} within {timeout_s:.3g} s")
            if self._sock not in dict(poller.poll(min(left, slice_s or left) * 1000)):
                continue  # the deadline, the cancel or the next look at a plain event
            reply = self._sock.recv_multipart(copy=False)
            try:
                msg = protocol.decode_reply(reply)
            except ProtocolError as exc:
                log.warning("discarding an undecodable reply from %s: %s", self.endpoint, exc)
                continue
            if msg.id != rid:
                # A late reply to a request we gave up on: never take it for this one.
                log.debug("discarding reply %s while waiting for %s", msg.id, rid)
                continue
            if msg.type == "error":
                raise CloudError(msg.code, msg.reason)
            return msg

    def infer(self, model, cut, tensors, timeout_s, cancel=None):
        """Run ``model``'s suffix from ``cut`` on the boundary ``tensors``.

        Args:
            model: the manifest's model name.
            cut: the manifest cut id.
            tensors: boundary arrays in boundary order, or a dict boundary name -> array.
            timeout_s: the deadline, seconds from now.
            cancel: a :class:`Wakeup` (or a ``threading.Event``, looked at every few ms); once
                set, the wait ends with :class:`Abandoned` (a hedged request whose edge-only run
                finished first). A late reply is discarded.

        Raises:
            CloudTimeout: no reply before the deadline.
            Abandoned: ``cancel`` was set first.
            CloudError: the daemon answered with an error (``code``, ``reason``).
        """
        msg = self._call(
            lambda rid: protocol.encode_request("infer", rid, model=model, cut=cut, tensors=tensors), timeout_s,
            cancel,
        )
        info = msg.info
        return InferReply(
            outputs=msg.tensors,
            queue_s=_reported(info, "queue_s", float),
            compute_s=_reported(info, "compute_s", float),
            queue_depth=_reported(info, "queue_depth", int),
            busy_workers=_reported(info, "busy_workers", int),
            workers=_reported(info, "workers", int),
            request_id=msg.id,
            info=info,
        )

    def ping(self, timeout_s=1.0):
        """Round trip of an empty request, seconds."""
        t0 = time.perf_counter()
        self._call(lambda rid: protocol.encode_request("ping", rid), timeout_s)
        return time.perf_counter() - t0

    def describe(self, timeout_s=5.0):
        """The models the daemon serves: their cuts, boundaries and outputs."""
        return self._call(lambda rid: protocol.encode_request("describe", rid), timeout_s).info

    def stats(self, timeout_s=5.0):
        """The daemon's request counts, latencies, errors and load."""
        return self._call(lambda rid: protocol.encode_request("stats", rid), timeout_s).info

    # -- lifetime ------------------------------------------------------------------------------

    def close(self):
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._own_context:
            self._ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if self._sock is not None:
                self._sock.close(linger=0)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
