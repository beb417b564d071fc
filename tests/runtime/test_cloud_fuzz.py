"""Fuzz the real daemon: thousands of malformed messages, then valid requests still right, memory flat."""

import json
import random
import time

import numpy as np
import pytest
import zmq

from partnner_tf import protocol
from partnner_tf.client import CloudClient
from partnner_tf.runtime.cloud.spawn import start_daemon
from tests.runtime.cloud_helpers import RawSocket, Reference, assert_close, rss_bytes

BATCH = 250
#: Bound on the daemon's resident growth across the fuzz rounds after the first (warm-up) one.
RSS_GROWTH_LIMIT = 40 * 1024 * 1024

_JUNK_VALUES = [None, True, -1, 0, 2**70, 1.5, float("1e308"), "", "x" * 300, [], [1, -2], {}, {"a": 1},
                "float32", [2**31] * 4]


def _valid(ref, rng, rid):
    cut = rng.choice(ref.cloud_cuts)
    b = ref.manifest.cuts[cut].boundary[0]
    t = np.random.default_rng(rid).standard_normal(b.shape).astype(b.dtype)
    return protocol.encode_request("infer", rid, model=ref.manifest.name, cut=cut, tensors=[t])


def _mutant(ref, rng, rid):
    """One malformed (or merely odd) message, from a seeded choice of ways to break one."""
    frames = [bytes(memoryview(f)) for f in _valid(ref, rng, rid)]
    head = json.loads(frames[0])
    how = rng.randrange(11)
    if how == 0:  # random bytes as header
        return [rng.randbytes(rng.randrange(0, 200))] + frames[1:] * rng.randrange(2)
    if how == 1:  # JSON that is not an object
        return [json.dumps(rng.choice(_JUNK_VALUES)).encode()] + frames[1:]
    if how == 2:  # a header field replaced by junk
        head[rng.choice(list(head))] = rng.choice(_JUNK_VALUES)
    elif how == 3:  # a header field removed
        del head[rng.choice(list(head))]
    elif how == 4:  # a tensor spec field replaced by junk
        spec = head["tensors"][0]
        spec[rng.choice(["dtype", "shape", "codec", "name"])] = rng.choice(_JUNK_VALUES)
    elif how == 5:  # a declared shape that would allocate gigabytes
        head["tensors"][0]["shape"] = [rng.choice([2**16, 2**31, 2**62])] * rng.randrange(2, 5)
    elif how == 6:  # frame count off
        return [json.dumps(head).encode()] + frames[1:] * rng.choice([0, 2, 3])
    elif how == 7:  # tensor bytes truncated or padded
        body = frames[1]
        frames[1] = body[: rng.randrange(len(body))] if rng.random() < 0.5 else body + b"\0" * rng.randrange(1, 64)
    elif how == 8:  # NaN or infinity in a tensor of the right shape
        arr = np.frombuffer(frames[1], np.float32).copy()
        arr[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf])
        frames[1] = arr.tobytes()
    elif how == 9:  # well-formed tensor of the wrong shape or dtype for the cut
        head["tensors"][0]["shape"] = [1, 3]
        head["tensors"][0]["dtype"] = rng.choice(["float32", "int8"])
        nbytes = 3 * np.dtype(head["tensors"][0]["dtype"]).itemsize
        frames[1] = rng.randbytes(nbytes)
    else:  # garbage frames only
        return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 5))]
    frames[0] = json.dumps(head).encode()
    return frames


@pytest.fixture(scope="module")
def fuzz_target(converted_tiny):
    out = converted_tiny("chain")
    with start_daemon(out, args=("--workers", "2", "--max-queue", str(2 * BATCH),
                                 "--max-message-bytes", str(1 << 20))) as d:
        yield d, Reference(out)
        assert d.alive(), d.log()


def _round(d, ref, rng, n, next_id):
    """Send ``n`` mutants in batches; every one must be answered (ok or a known error code)."""
    raw = RawSocket(d.endpoint)
    codes = {}
    try:
        for start in range(0, n, BATCH):
            count = min(BATCH, n - start)
            for i in range(count):
                raw.send(_mutant(ref, rng, next_id + start + i))
            deadline = time.monotonic() + 30
            got = 0
            while got < count:
                reply = raw.recv(timeout_s=max(deadline - time.monotonic(), 0.01))
                assert reply is not None, f"{count - got} of {count} messages got no reply; log:\n{d.log()[-2000:]}"
                got += 1
                key = reply.code if reply.type == "error" else "ok"
                codes[key] = codes.get(key, 0) + 1
        # A client that vanishes with its request in flight.
        for i in range(20):
            gone = RawSocket(d.endpoint, ctx=zmq.Context.instance())
            gone.send(_valid(ref, rng, next_id + n + i))
            gone.close()
    finally:
        raw.close()
    assert set(codes) <= set(protocol.ERROR_CODES) | {"ok"}, codes
    return codes


def _check_valid(d, ref):
    with CloudClient(d.endpoint) as c:
        for seed, cut in enumerate(ref.cloud_cuts):
            x = ref.frame(100 + seed)
            assert_close(c.infer(ref.manifest.name, cut, ref.boundary(cut, x), timeout_s=10).outputs,
                         ref.expected(x))


def test_fuzz_then_valid_requests_and_flat_memory(fuzz_target):
    d, ref = fuzz_target
    rng = random.Random(1234)
    _check_valid(d, ref)
    _round(d, ref, rng, 500, 0)  # warm-up: allocator pools and caches settle
    base = rss_bytes(d.pid)
    codes = {}
    for r in range(1, 7):
        for k, v in _round(d, ref, rng, 500, r * 10_000).items():
            codes[k] = codes.get(k, 0) + v
    grown = rss_bytes(d.pid) - base
    assert sum(codes.values()) == 3000
    # The generator must really exercise the validation, not just one path of it.
    for code in ("bad_message", "bad_header", "bad_frames", "bad_tensor", "bad_size", "too_large", "bad_value"):
        assert codes.get(code, 0) > 10, codes
    _check_valid(d, ref)
    assert grown < RSS_GROWTH_LIMIT, f"daemon RSS grew {grown / 2**20:.1f} MiB over 3000 malformed messages"
    with CloudClient(d.endpoint) as c:
        stats = c.stats()
    assert sum(stats["errors"].values()) >= 3000 - codes.get("ok", 0)


def test_message_over_the_size_limit_is_refused_by_zeromq(fuzz_target):
    d, ref = fuzz_target
    raw = RawSocket(d.endpoint)
    try:
        big = np.zeros(((1 << 20) // 4) + 1024, np.float32)
        raw.send(protocol.encode_request("infer", 1, model=ref.manifest.name, cut=0, tensors=[big]))
        # libzmq drops the connection on an oversized message: no reply, no allocation.
        assert raw.recv(timeout_s=1.0) is None
    finally:
        raw.close()
    _check_valid(d, ref)
