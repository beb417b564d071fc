"""The wire protocol: round trips, and every malformed message rejected with its code."""

import json

import numpy as np
import pytest

from partnner_tf import protocol
from partnner_tf.constants import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from partnner_tf.errors import ProtocolError


def _head(frames):
    return json.loads(bytes(frames[0]))


def _code(frames, decode=protocol.decode_request):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    return info.value.code


@pytest.mark.parametrize("dtype", protocol.DTYPES)
def test_infer_round_trip_every_dtype(dtype):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((1, 3, 4, 2)) * 10).astype(dtype)
    b = np.arange(5).astype(dtype)
    frames = protocol.encode_request("infer", 7, model="m", cut=3, tensors=[a, b])
    msg = protocol.decode_request([bytes(memoryview(f)) for f in frames])
    assert (msg.type, msg.id, msg.model, msg.cut) == ("infer", 7, "m", 3)
    assert msg.names == [None, None]
    np.testing.assert_array_equal(msg.tensors[0], a)
    np.testing.assert_array_equal(msg.tensors[1], b)
    assert msg.tensors[0].dtype == np.dtype(dtype)


def test_named_tensors_and_non_contiguous_input():
    a = np.arange(24, dtype=np.float32).reshape(4, 6).T  # Fortran-ordered view
    frames = protocol.encode_request("infer", 1, model="m", cut=0, tensors={"x": a})
    msg = protocol.decode_request(frames)
    assert msg.names == ["x"]
    np.testing.assert_array_equal(msg.tensors[0], a)


def test_tensor_frames_are_not_copied():
    a = np.ones((256, 256), np.float32)
    frames = protocol.encode_request("infer", 1, model="m", cut=0, tensors=[a])
    assert frames[1] is a  # the array itself is the frame: zmq sends it with copy=False


@pytest.mark.parametrize("kind", ["ping", "describe", "stats"])
def test_control_requests(kind):
    msg = protocol.decode_request(protocol.encode_request(kind, 2**63 - 1))
    assert (msg.type, msg.id) == (kind, 2**63 - 1)


def test_ok_and_error_replies_round_trip():
    out = np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10)
    ok = protocol.decode_reply(protocol.encode_ok(5, tensors=[out], queue_s=0.001, compute_s=0.002, workers=2))
    assert ok.type == "ok" and ok.id == 5 and ok.info == {"queue_s": 0.001, "compute_s": 0.002, "workers": 2}
    np.testing.assert_array_equal(ok.tensors[0], out)
    err = protocol.decode_reply(protocol.encode_error(None, "bad_tensor", "why"))
    assert (err.type, err.id, err.code, err.reason) == ("error", None, "bad_tensor", "why")


def _infer_frames(**over):
    head = {"v": PROTOCOL_VERSION, "type": "infer", "id": 1, "model": "m", "cut": 1,
            "tensors": [{"dtype": "float32", "shape": [1, 4], "codec": "raw"}]}
    head.update(over)
    return [json.dumps(head).encode(), np.zeros((1, 4), np.float32).tobytes()]


@pytest.mark.parametrize(
    "frames, code",
    [
        ([], "bad_message"),
        ([b"\xff\xfe"], "bad_message"),
        ([b"[1, 2]"], "bad_message"),
        ([b"{"], "bad_message"),
        ([b" " * (protocol.MAX_HEADER_BYTES + 1)], "too_large"),
        (_infer_frames(v=2), "bad_version"),
        (_infer_frames(type="shell"), "bad_type"),
        (_infer_frames(id=-1), "bad_header"),
        (_infer_frames(id=True), "bad_header"),
        (_infer_frames(id=2**64), "bad_header"),
        (_infer_frames(model=5), "bad_header"),
        (_infer_frames(model=""), "bad_header"),
        (_infer_frames(cut="1"), "bad_header"),
        (_infer_frames(cut=-3), "bad_header"),
        (_infer_frames(tensors="x"), "bad_header"),
        (_infer_frames(tensors=[]), "bad_frames"),
        (_infer_frames()[:1], "bad_frames"),
        (_infer_frames() + [b""], "bad_frames"),
        (_infer_frames(tensors=[{"dtype": "object", "shape": [1, 4]}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": ">f4", "shape": [1, 4]}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1, 4], "codec": "zip"}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1, -4]}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1, 4.0]}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1] * 9}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": "1,4"}]), "bad_tensor"),
        (_infer_frames(tensors=["float32"]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1, 4], "name": 3}]), "bad_tensor"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1, 5]}]), "bad_size"),
        (_infer_frames(tensors=[{"dtype": "float64", "shape": [1, 4]}]), "bad_size"),
        # Declared shapes that would allocate gigabytes (or overflow int64) never allocate.
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [65536, 65536]}]), "too_large"),
        (_infer_frames(tensors=[{"dtype": "float64", "shape": [2**62, 2**62, 4]}]), "too_large"),
        (_infer_frames(tensors=[{"dtype": "float32", "shape": [1, 4]}] * 65), "too_large"),
        ([protocol.encode_request("ping", 1)[0], b"extra"], "bad_frames"),
    ],
)
def test_malformed_requests_rejected(frames, code):
    assert _code(frames) == code


def test_size_limit_is_the_message_limit():
    n = MAX_MESSAGE_BYTES // 4
    frames = _infer_frames(tensors=[{"dtype": "float32", "shape": [n + 1]}])
    assert _code(frames) == "too_large"


def test_peek_id():
    assert protocol.peek_id(_infer_frames(id=42, v=9)) == 42
    assert protocol.peek_id([b"garbage"]) is None
    assert protocol.peek_id([b'{"id": "x"}']) is None


def test_reply_validation():
    assert _code([b'{"v": 1, "type": "infer", "id": 1}'], protocol.decode_reply) == "bad_type"
    assert _code([b'{"v": 1, "type": "error", "id": 1}', b"x"], protocol.decode_reply) == "bad_frames"


def test_encoder_refuses_bad_arguments():
    with pytest.raises(ProtocolError, match="model name"):
        protocol.encode_request("infer", 1, model=None, cut=0)
    with pytest.raises(ProtocolError, match="cut id"):
        protocol.encode_request("infer", 1, model="m", cut=-1)
    with pytest.raises(ProtocolError, match="dtype"):
        protocol.encode_request("infer", 1, model="m", cut=0, tensors=[np.array(["a"])])
    with pytest.raises(ProtocolError, match="request type"):
        protocol.encode_request("exec", 1)


@pytest.mark.parametrize("field,value", [("queue_s", b"NaN"), ("compute_s", b"-0.5"), ("queue_s", b'"soon"'),
                                         ("workers", b"1e400"), ("busy_workers", b"true")])
def test_a_reply_with_bad_timings_is_refused_by_name(field, value):
    # A real ROUTER socket answers as a broken daemon would: the client refuses the reply,
    # naming the field, before a NaN or negative time reaches the selector's estimates. (Our
    # encoder refuses NaN; JSON parsers, ours included, accept it from another implementation.)
    import threading

    import zmq

    from partnner_tf.client import CloudClient

    server = zmq.Context.instance().socket(zmq.ROUTER)
    port = server.bind_to_random_port("tcp://127.0.0.1")

    def answer():
        if server.poll(5000):
            peer, *frames = server.recv_multipart()
            rid = protocol.decode_request(frames).id
            head, *rest = protocol.encode_ok(rid, tensors=[np.zeros(2, np.float32)], **{field: "VALUE"})
            server.send_multipart([peer, head.replace(b'"VALUE"', value), *rest])

    thread = threading.Thread(target=answer)
    thread.start()
    client = CloudClient(f"tcp://127.0.0.1:{port}")
    try:
        with pytest.raises(ProtocolError, match=f"reply field '{field}' must be a finite number"):
            client.infer("m", 0, [np.zeros(4, np.float32)], 5.0)
    finally:
        thread.join()
        client.close()
        server.close(linger=0)
