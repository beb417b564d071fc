"""The cloud daemon in a real process on tcp://127.0.0.1: correctness, errors, control requests, CLI."""

import json
import time

import numpy as np
import pytest
import zmq
from click.testing import CliRunner

from partnner_tf import protocol
from partnner_tf.client import CloudClient
from partnner_tf.errors import CloudError, CloudTimeout
from partnner_tf.runtime.cloud.cli import cloud as cloud_cli
from partnner_tf.runtime.cloud.spawn import start_daemon
from tests.runtime.cloud_helpers import RawSocket, Reference, assert_close

KINDS = ("chain", "residual")


@pytest.fixture(scope="module")
def outs(converted_tiny):
    return {kind: converted_tiny(kind) for kind in KINDS}


@pytest.fixture(scope="module")
def refs(outs):
    return {kind: Reference(out) for kind, out in outs.items()}


@pytest.fixture(scope="module")
def daemon(outs):
    """Two models served at once by one daemon with two workers."""
    with start_daemon([outs[k] for k in KINDS], args=("--workers", "2")) as d:
        yield d
        assert d.alive(), d.log()
    assert d.returncode == 0, d.log()


@pytest.fixture()
def client(daemon):
    with CloudClient(daemon.endpoint) as c:
        yield c


@pytest.mark.parametrize("kind", KINDS)
def test_every_cut_matches_full_model(kind, refs, client):
    ref = refs[kind]
    name = ref.manifest.name
    assert len(ref.cloud_cuts) >= 3
    for seed in (1, 2):
        x = ref.frame(seed)
        want = ref.expected(x)
        for cut in ref.cloud_cuts:
            reply = client.infer(name, cut, ref.boundary(cut, x), timeout_s=10)
            assert_close(reply.outputs, want)
            assert reply.compute_s > 0 and reply.queue_s >= 0
            assert reply.workers == 2 and 0 <= reply.busy_workers <= 2 and reply.queue_depth >= 0


def test_positional_and_named_tensors_agree(refs, client):
    ref = refs["chain"]
    x = ref.frame(3)
    cut = ref.cloud_cuts[2]
    named = ref.boundary(cut, x)
    by_name = client.infer(ref.manifest.name, cut, named, timeout_s=10)
    by_pos = client.infer(ref.manifest.name, cut, list(named.values()), timeout_s=10)
    np.testing.assert_array_equal(by_name.outputs[0], by_pos.outputs[0])
    assert by_name.request_id != by_pos.request_id


def test_bad_infer_requests_get_error_codes(refs, client):
    ref = refs["chain"]
    name, cuts = ref.manifest.name, ref.manifest.cuts
    x = ref.frame(4)
    edge_only = ref.manifest.edge_only
    mid = ref.cloud_cuts[1]
    good = list(ref.boundary(mid, x).values())[0]
    nan = good.copy()
    nan.flat[3] = np.nan
    inf = good.copy()
    inf.flat[0] = -np.inf
    cases = [
        (("nope", 0, [x]), "unknown_model"),
        ((name, len(cuts), [x]), "unknown_cut"),
        ((name, edge_only, [x]), "unknown_cut"),
        ((name, mid, [x]), "bad_tensor"),  # the input's shape is not this cut's boundary
        ((name, mid, [good.astype(np.float64)]), "bad_tensor"),
        ((name, mid, [good, good]), "bad_tensor"),
        ((name, mid, {"not_a_boundary": good}), "bad_tensor"),
        ((name, mid, [np.concatenate([good] * 65)]), "bad_tensor"),  # batch over the limit
        ((name, mid, [nan]), "bad_value"),
        ((name, mid, [inf]), "bad_value"),
    ]
    for args, code in cases:
        with pytest.raises(CloudError) as info:
            client.infer(*args, timeout_s=10)
        assert info.value.code == code, (args[:2], info.value)
        assert info.value.reason
    # Still serving, and batches within the limit work.
    batch = client.infer(name, mid, [np.concatenate([good, good])], timeout_s=10)
    assert batch.outputs[0].shape[0] == 2
    assert_close(client.infer(name, mid, [good], timeout_s=10).outputs, ref.expected(x))


def test_malformed_frames_get_error_replies(daemon):
    raw = RawSocket(daemon.endpoint)
    try:
        raw.send([b"not json"])
        assert raw.recv().code == "bad_message"
        raw.send([b'{"v": 99, "type": "ping", "id": 5}'])
        reply = raw.recv()
        assert (reply.type, reply.code, reply.id) == ("error", "bad_version", 5)
        raw.send(protocol.encode_request("ping", 6) + [b"junk"])
        assert raw.recv().code == "bad_frames"
        raw.send(protocol.encode_request("ping", 7))
        assert (raw.recv().type, 7) == ("ok", 7)
    finally:
        raw.close()


def test_ping_describe_stats(outs, refs, client):
    assert 0 < client.ping() < 1.0
    desc = client.describe()
    assert desc["protocol"] == protocol.PROTOCOL_VERSION and desc["workers"] == 2
    assert desc["startup"]["cuts_warmed"] == sum(len(r.cloud_cuts) for r in refs.values())
    for ref in refs.values():
        model = desc["models"][ref.manifest.name]
        assert [c["id"] for c in model["cuts"]] == [c.id for c in ref.manifest.cuts]
        for c, cut in zip(model["cuts"], ref.manifest.cuts):
            assert c["cloud"] == (not cut.is_edge_only)
            assert c["ready"] == c["cloud"]
            assert [b["shape"] for b in c["boundary"]] == [list(b.shape) for b in cut.boundary]
    before = client.stats()
    ref = refs["residual"]
    client.infer(ref.manifest.name, 0, [ref.frame(0)], timeout_s=10)
    with pytest.raises(CloudError):
        client.infer(ref.manifest.name, 99, [ref.frame(0)], timeout_s=10)
    after = client.stats()
    assert after["requests"]["infer"] == before["requests"].get("infer", 0) + 2
    assert after["errors"]["unknown_cut"] == before["errors"].get("unknown_cut", 0) + 1
    assert after["completed"][f"{ref.manifest.name}:0"] >= 1
    assert after["latency"]["compute_s"]["p50"] > 0
    assert after["workers"] == 2


def test_timeout_then_late_reply_is_discarded(refs, client):
    ref = refs["chain"]
    x1, x2 = ref.frame(10), ref.frame(11)
    with pytest.raises(CloudTimeout):
        client.infer(ref.manifest.name, 0, [x1], timeout_s=1e-6)
    time.sleep(0.3)  # the late reply to x1 is now waiting in the socket
    reply = client.infer(ref.manifest.name, 0, [x2], timeout_s=10)
    assert_close(reply.outputs, ref.expected(x2))
    assert not np.allclose(reply.outputs[0], ref.expected(x1)[0])


def test_client_that_vanishes_does_not_hurt(refs, daemon, client):
    ref = refs["chain"]
    for _ in range(20):
        raw = RawSocket(daemon.endpoint, ctx=zmq.Context.instance())
        raw.send(protocol.encode_request("infer", 1, model=ref.manifest.name, cut=0, tensors=[ref.frame(0)]))
        raw.close()  # gone before the reply
    x = ref.frame(12)
    assert_close(client.infer(ref.manifest.name, 0, [x], timeout_s=10).outputs, ref.expected(x))


def test_cli_ping_describe_stats(daemon, refs):
    runner = CliRunner()
    ok = runner.invoke(cloud_cli, ["ping", daemon.endpoint])
    assert ok.exit_code == 0 and "OK" in ok.output
    desc = runner.invoke(cloud_cli, ["describe", daemon.endpoint])
    assert desc.exit_code == 0
    assert set(json.loads(desc.output)["models"]) == {r.manifest.name for r in refs.values()}
    stats = runner.invoke(cloud_cli, ["stats", daemon.endpoint])
    assert stats.exit_code == 0 and "requests" in json.loads(stats.output)


def test_cli_ping_down_exits_1():
    from tests.runtime.cloud_helpers import free_port

    result = CliRunner().invoke(cloud_cli, ["ping", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.3"])
    assert result.exit_code == 1
    assert "DOWN" in result.output


@pytest.mark.parametrize("command", ["serve", "ping", "stats", "describe"])
def test_cli_help(command):
    result = CliRunner().invoke(cloud_cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_client_that_stops_reading_blocks_no_one(refs, daemon, client):
    ref = refs["chain"]
    ctx = zmq.Context.instance()
    hog = ctx.socket(zmq.DEALER)
    hog.linger = 0
    hog.rcvhwm = 1
    hog.connect(daemon.endpoint)
    x = ref.frame(0)
    try:
        # Thousands of replies it never reads: the daemon must drop them, not wait for it.
        for i in range(3000):
            hog.send_multipart(protocol.encode_request("infer", i, model=ref.manifest.name, cut=0, tensors=[x]),
                               copy=False)
        y = ref.frame(13)
        for _ in range(5):
            assert_close(client.infer(ref.manifest.name, 0, [y], timeout_s=20).outputs, ref.expected(y))
    finally:
        hog.close(linger=0)
    assert client.ping(timeout_s=5) > 0
