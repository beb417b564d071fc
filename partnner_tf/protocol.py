"""The edge-cloud wire protocol: a JSON header frame, then one raw frame per tensor.

A message is a ZeroMQ multipart message. Frame 0 is a UTF-8 JSON object (the header); frames
1..N are the raw bytes of N tensors, C order, native little-endian, described in order by the
header's ``tensors`` list. Nothing is pickled. See docs/protocol.md for the full description.

Every decoder here validates strictly and raises :class:`ProtocolError` whose ``code``
attribute is one of :data:`ERROR_CODES`, so the daemon can answer with it.
"""

import json
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from partnner_tf.constants import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from partnner_tf.errors import ProtocolError

#: Request types a client may send.
REQUEST_TYPES = ("infer", "ping", "describe", "stats")
#: Reply types the daemon sends.
REPLY_TYPES = ("ok", "error")
#: Tensor dtypes allowed on the wire (native little-endian).
DTYPES = (
    "float16", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "bool",
)
#: Codecs for tensor frames; "raw" is the bytes as they lie in memory.
CODECS = ("raw",)
#: Error codes an error reply may carry.
ERROR_CODES = (
    "bad_message",     # frames or header not decodable: not JSON, not an object, empty
    "bad_version",     # header.v is not this protocol's version
    "bad_type",        # unknown message type
    "bad_header",      # a header field is missing or of the wrong type
    "bad_frames",      # tensor frame count differs from the header's tensor list
    "bad_tensor",      # dtype/shape/codec invalid, or not what the cut expects
    "bad_size",        # a frame's byte size differs from dtype x shape
    "too_large",       # a declared tensor or header exceeds the limits
    "bad_value",       # NaN or infinity in a float tensor
    "unknown_model",   # no model of that name is served
    "unknown_cut",     # the model has no such cut, or it is edge-only
    "overloaded",      # the request queue is full
    "shutting_down",   # the daemon is draining and takes no new work
    "internal",        # the suffix failed; the reason says how
)
#: Largest request header, bytes (a header describes tensors; it never carries them).
MAX_HEADER_BYTES = 64 * 1024
#: Largest reply header (describe replies list every cut of every model).
MAX_REPLY_HEADER_BYTES = 16 * 1024 * 1024
#: Most tensors in one message and most dimensions per tensor.
MAX_TENSORS = 64
MAX_NDIM = 8
#: Largest request id (ids are unsigned 63-bit so every JSON reader keeps them exact).
MAX_REQUEST_ID = 2**63 - 1
MAX_NAME_CHARS = 256

if sys.byteorder != "little":  # pragma: no cover - every supported board is little-endian
    raise ImportError("partnner_tf.protocol supports little-endian hosts only")


def _fail(code, message):
    err = ProtocolError(message)
    err.code = code
    return err


@dataclass
class Message:
    """A decoded message (request or reply).

    Attributes:
        type: one of :data:`REQUEST_TYPES` or :data:`REPLY_TYPES`.
        id: the request id (None when a reply answers a message whose id could not be read).
        model, cut: for infer requests.
        tensors: decoded arrays, read-only views of the received frames (no copy).
        names: the tensor names given by the sender (None where not given).
        info: other header fields (timings, load, describe/stats bodies).
        code, reason: for error replies.
    """

    type: str
    id: int = None
    model: str = None
    cut: int = None
    tensors: list = field(default_factory=list)
    names: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    code: str = None
    reason: str = None


# -- encoding --------------------------------------------------------------------------------


def _tensor_frames(tensors):
    """Header entries and frames for tensors given as a list of arrays or a dict name->array."""
    if isinstance(tensors, dict):
        items = list(tensors.items())
    else:
        items = [(None, t) for t in tensors]
    if len(items) > MAX_TENSORS:
        raise _fail("too_large", f"at most {MAX_TENSORS} tensors per message; received {len(items)}")
    specs, frames = [], []
    for name, t in items:
        arr = np.ascontiguousarray(t)
        dtype = arr.dtype
        if dtype.byteorder == ">" or dtype.name not in DTYPES:
            raise _fail("bad_tensor", f"tensor dtype must be one of {DTYPES} (little-endian); received {dtype}")
        spec = {"dtype": dtype.name, "shape": list(arr.shape), "codec": "raw"}
        if name is not None:
            spec["name"] = str(name)
        specs.append(spec)
        # 0-d and empty arrays still make a valid buffer; reshape keeps it a view.
        frames.append(arr.reshape(-1) if arr.ndim == 0 else arr)
    return specs, frames


def _header(obj):
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_request(type, request_id, *, model=None, cut=None, tensors=()):
    """Frames of a request; send them with ``send_multipart(frames, copy=False)``.

    Args:
        type: one of :data:`REQUEST_TYPES`.
        request_id: integer 0..2**63-1 chosen by the client.
        model, cut: required for ``infer``.
        tensors: for ``infer``, a list of arrays in boundary order or a dict name -> array.
    """
    if type not in REQUEST_TYPES:
        raise _fail("bad_type", f"request type must be one of {REQUEST_TYPES}; received {type!r}")
    _check_id(request_id)
    head = {"v": PROTOCOL_VERSION, "type": type, "id": request_id}
    frames = []
    if type == "infer":
        if not isinstance(model, str) or not model:
            raise _fail("bad_header", f"infer needs a model name; received {model!r}")
        if isinstance(cut, bool) or not isinstance(cut, (int, np.integer)) or cut < 0:
            raise _fail("bad_header", f"infer needs a cut id >= 0; received {cut!r}")
        specs, frames = _tensor_frames(tensors)
        head.update(model=model, cut=int(cut), tensors=specs)
    return [_header(head), *frames]


def encode_ok(request_id, *, tensors=(), **info):
    """Frames of an ok reply: ``info`` holds timings/load (infer) or the body (other types)."""
    head = {"v": PROTOCOL_VERSION, "type": "ok", "id": request_id}
    specs, frames = _tensor_frames(tensors)
    head.update(info)
    head["tensors"] = specs
    return [_header(head), *frames]


def encode_error(request_id, code, reason):
    """Frames of an error reply (``request_id`` None when the request's id was unreadable)."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    head = {"v": PROTOCOL_VERSION, "type": "error", "id": request_id, "code": code, "reason": str(reason)}
    return [_header(head)]


# -- decoding --------------------------------------------------------------------------------


def _buffer(frame):
    """A memoryview of a frame given as bytes, memoryview or zmq.Frame (no copy)."""
    buf = getattr(frame, "buffer", None)
    return buf if buf is not None else memoryview(frame)


def _check_id(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REQUEST_ID:
        raise _fail("bad_header", f"header.id: expected an integer 0..2**63-1; received {value!r}")
    return value


def peek_id(frames):
    """Best-effort request id of a message, for replying to one that fails validation."""
    try:
        head = json.loads(bytes(_buffer(frames[0])[:MAX_HEADER_BYTES]))
        return _check_id(head.get("id"))
    except Exception:  # noqa: BLE001 - any garbage means "no id"
        return None


def _parse_header(frames, limit):
    if not isinstance(frames, (list, tuple)) or not frames:
        raise _fail("bad_message", "a message needs at least one frame (the header); received none")
    raw = _buffer(frames[0])
    if raw.nbytes > limit:
        raise _fail("too_large", f"header frame is limited to {limit} bytes; received {raw.nbytes}")
    try:
        head = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail("bad_message", f"header frame must be a UTF-8 JSON object; it is not ({exc})") from None
    if not isinstance(head, dict):
        raise _fail("bad_message", f"header must be a JSON object; received {type(head).__name__}")
    if head.get("v") != PROTOCOL_VERSION:
        raise _fail("bad_version", f"header.v: this side speaks version {PROTOCOL_VERSION}; received {head.get('v')!r}")
    return head


def _decode_spec(spec, i):
    where = f"header.tensors[{i}]"
    if not isinstance(spec, dict):
        raise _fail("bad_tensor", f"{where}: expected an object; received {type(spec).__name__}")
    dtype = spec.get("dtype")
    if dtype not in DTYPES:
        raise _fail("bad_tensor", f"{where}.dtype: expected one of {DTYPES}; received {dtype!r}")
    codec = spec.get("codec", "raw")
    if codec not in CODECS:
        raise _fail("bad_tensor", f"{where}.codec: expected one of {CODECS}; received {codec!r}")
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _fail(
            "bad_tensor",
            f"{where}.shape: expected a list of at most {MAX_NDIM} integers >= 0; received {shape!r}",
        )
    itemsize = np.dtype(dtype).itemsize
    # Python integers: a hostile shape cannot overflow the product into something small.
    nbytes = math.prod(shape) * itemsize
    if nbytes > MAX_MESSAGE_BYTES:
        raise _fail(
            "too_large",
            f"{where}: shape {shape} x {dtype} is {nbytes} bytes; the limit is {MAX_MESSAGE_BYTES}",
        )
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
        raise _fail("bad_tensor", f"{where}.name: expected a string of at most {MAX_NAME_CHARS} chars; received {name!r}")
    return np.dtype(dtype), tuple(shape), nbytes, name


def _decode_tensors(head, frames):
    specs = head.get("tensors", [])
    if not isinstance(specs, list):
        raise _fail("bad_header", f"header.tensors: expected a list; received {type(specs).__name__}")
    if len(specs) > MAX_TENSORS:
        raise _fail("too_large", f"at most {MAX_TENSORS} tensors per message; received {len(specs)}")
    if len(frames) - 1 != len(specs):
        raise _fail(
            "bad_frames",
            f"header lists {len(specs)} tensor(s) but the message has {len(frames) - 1} tensor frame(s)",
        )
    tensors, names = [], []
    for i, (spec, frame) in enumerate(zip(specs, frames[1:])):
        dtype, shape, nbytes, name = _decode_spec(spec, i)
        buf = _buffer(frame)
        if buf.nbytes != nbytes:
            raise _fail(
                "bad_size",
                f"tensor {i}: shape {list(shape)} x {dtype.name} needs {nbytes} bytes; frame has {buf.nbytes}",
            )
        tensors.append(np.frombuffer(buf, dtype=dtype).reshape(shape))
        names.append(name)
    return tensors, names


def decode_request(frames):
    """Validate and decode a request's frames (without the ROUTER identity) into a Message.

    Raises:
        ProtocolError: with ``code`` set, naming the first thing that is wrong.
    """
    head = _parse_header(frames, MAX_HEADER_BYTES)
    kind = head.get("type")
    if kind not in REQUEST_TYPES:
        raise _fail("bad_type", f"header.type: expected one of {REQUEST_TYPES}; received {kind!r}")
    msg = Message(type=kind, id=_check_id(head.get("id")))
    if kind != "infer":
        if len(frames) != 1:
            raise _fail("bad_frames", f"a {kind} request is one frame; received {len(frames)}")
        return msg
    model, cut = head.get("model"), head.get("cut")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_NAME_CHARS:
        raise _fail("bad_header", f"header.model: expected a model name; received {model!r}")
    if isinstance(cut, bool) or not isinstance(cut, int) or cut < 0:
        raise _fail("bad_header", f"header.cut: expected an integer >= 0; received {cut!r}")
    msg.model, msg.cut = model, cut
    msg.tensors, msg.names = _decode_tensors(head, frames)
    return msg


def decode_reply(frames):
    """Validate and decode a reply's frames into a Message (``type`` "ok" or "error")."""
    head = _parse_header(frames, MAX_REPLY_HEADER_BYTES)
    kind = head.pop("type", None)
    if kind not in REPLY_TYPES:
        raise _fail("bad_type", f"reply header.type: expected one of {REPLY_TYPES}; received {kind!r}")
    rid = head.pop("id", None)
    msg = Message(type=kind, id=None if rid is None else _check_id(rid))
    if kind == "error":
        if len(frames) != 1:
            raise _fail("bad_frames", f"an error reply is one frame; received {len(frames)}")
        msg.code, msg.reason = str(head.get("code")), str(head.get("reason"))
        return msg
    msg.tensors, msg.names = _decode_tensors(head, frames)
    head.pop("tensors", None)
    head.pop("v", None)
    msg.info = head
    return msg
