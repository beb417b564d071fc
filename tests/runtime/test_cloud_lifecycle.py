"""Daemon lifecycle in real processes: SIGTERM drain, kill and restart, lazy warm-up, refusals."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from partnner_tf import protocol
from partnner_tf.client import CloudClient
from partnner_tf.errors import CloudTimeout
from partnner_tf.runtime.cloud.spawn import start_daemon
from tests.runtime.cloud_helpers import RawSocket, Reference, assert_close, free_port


@pytest.fixture(scope="module")
def out(converted_tiny):
    return converted_tiny("chain")


@pytest.fixture(scope="module")
def ref(out):
    return Reference(out)


def test_sigterm_drains_requests_in_flight(out, ref):
    x = ref.frame(0)
    want = ref.expected(x)
    n = 300
    with start_daemon(out, args=("--workers", "1", "--max-queue", str(n), "--max-per-client", str(n), "--log-json")) as d:
        raw = RawSocket(d.endpoint)
        for i in range(n):
            raw.send(protocol.encode_request("infer", i, model=ref.manifest.name, cut=0, tensors=[x]))
        first = raw.recv(timeout_s=30)  # the daemon is at work: the rest are queued or on the wire
        d.proc.send_signal(15)
        replies = [first] + _collect(raw, n - 1, timeout_s=60)
        raw.close()
        code = d.proc.wait(30)
    assert code == 0, d.log()
    assert len(replies) == n, f"{n - len(replies)} request(s) neither answered nor refused; log:\n{d.log()}"
    assert sorted(r.id for r in replies) == list(range(n))
    ok = [r for r in replies if r.type == "ok"]
    refused = [r for r in replies if r.type == "error"]
    assert ok, "nothing was answered before the drain"
    assert {r.code for r in refused} <= {"shutting_down"}, {r.code for r in refused}
    for r in ok:
        assert_close(r.tensors, want)
    # --log-json: one JSON object per event line (TensorFlow's own C++ lines aside).
    events = [json.loads(line) for line in d.log().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert {"serving", "draining", "stopped"} <= set(names), names
    # Every request queued when the signal came was answered; later ones were refused explicitly.
    in_flight = events[names.index("draining")]["in_flight"]
    assert in_flight > 0 and len(ok) >= in_flight + 1, (in_flight, len(ok))
    serving = events[names.index("serving")]
    assert serving["endpoint"] == d.endpoint and serving["cuts_warmed"] == len(ref.cloud_cuts)
    assert all({"ts", "level", "logger"} <= set(e) for e in events)


def _collect(raw, n, timeout_s):
    """Up to ``n`` replies, within one overall deadline."""
    deadline = time.monotonic() + timeout_s
    replies = []
    while len(replies) < n and time.monotonic() < deadline:
        reply = raw.recv(timeout_s=max(deadline - time.monotonic(), 0.01))
        if reply is not None:
            replies.append(reply)
    return replies


def test_same_client_survives_kill_and_restart(out, ref, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    x = ref.frame(1)
    want = ref.expected(x)
    with CloudClient(endpoint) as client:
        with start_daemon(out, bind=endpoint, log_path=tmp_path / "killed.log") as d:  # its log is kept
            assert_close(client.infer(ref.manifest.name, 0, [x], timeout_s=10).outputs, want)
            d.kill()
        with pytest.raises(CloudTimeout):
            client.infer(ref.manifest.name, 0, [x], timeout_s=0.5)
        with start_daemon(out, bind=endpoint) as d2:
            deadline = time.monotonic() + 30
            while True:
                try:
                    reply = client.infer(ref.manifest.name, 0, [x], timeout_s=1.0)
                    break
                except CloudTimeout:
                    assert time.monotonic() < deadline, "the client never reconnected"
            assert_close(reply.outputs, want)
            assert d2.alive()


def test_preload_none_warms_lazily_and_answers(out, ref):
    cuts = ref.cloud_cuts
    with start_daemon(out, args=("--preload", str(cuts[1]), "--log-level", "debug")) as d, \
            CloudClient(d.endpoint) as client:
        desc = client.describe()
        assert desc["startup"]["cuts_warmed"] == 1
        assert desc["startup"]["cuts_lazy"] == len(cuts) - 1
        x = ref.frame(2)
        want = ref.expected(x)
        # Every cut answers correctly whether the background warmer got to it yet or not.
        for cut in reversed(cuts):
            assert_close(client.infer(ref.manifest.name, cut, ref.boundary(cut, x), timeout_s=30).outputs, want)
        deadline = time.monotonic() + 30
        while not all(c["ready"] for c in client.describe()["models"][ref.manifest.name]["cuts"] if c["cloud"]):
            assert time.monotonic() < deadline, "the background warm-up never finished"
            time.sleep(0.2)
    # --log-level debug: one line per answered request.
    assert d.log().count(" answered ") >= len(cuts), d.log()[-2000:]


def _serve(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "partnner_tf.cli", "cloud", "serve", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test_non_loopback_bind_without_curve_refuses(out):
    result = _serve(out, "--bind", "tcp://0.0.0.0:*")
    assert result.returncode != 0
    assert "refusing to bind" in result.stderr and "--insecure" in result.stderr
    assert "READY" not in result.stdout


def test_bad_preload_and_duplicate_models_refuse(out):
    bad = _serve(out, "--bind", "tcp://127.0.0.1:*", "--preload", "first")
    assert bad.returncode != 0 and "--preload" in bad.stderr
    dup = _serve(out, out, "--bind", "tcp://127.0.0.1:*")
    assert dup.returncode != 0 and "each served model needs its own name" in dup.stderr


def test_full_queue_answers_overloaded_and_taken_port_is_a_clean_error(out, ref):
    n = 200
    with start_daemon(out, args=("--max-queue", "2")) as d:
        raw = RawSocket(d.endpoint)
        x = ref.frame(5)
        for i in range(n):
            raw.send(protocol.encode_request("infer", i, model=ref.manifest.name, cut=0, tensors=[x]))
        replies = _collect(raw, n, timeout_s=60)
        raw.close()
        assert len(replies) == n
        codes = {r.code if r.type == "error" else "ok" for r in replies}
        assert codes == {"ok", "overloaded"}, codes
        for r in replies:
            if r.type == "ok":
                assert_close(r.tensors, ref.expected(x))
        result = _serve(out, "--bind", d.endpoint, "--preload", "none")
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and "Address already in use" in result.stderr


def test_manifest_missing_is_a_clean_error(tmp_path):
    result = _serve(tmp_path, "--bind", "tcp://127.0.0.1:*")
    assert result.returncode != 0 and "manifest" in result.stderr and "Traceback" not in result.stderr


def test_finite_input_check_covers_float16_boundary():
    # bad_value applies to every float dtype the protocol carries, not only float32.
    from partnner_tf.errors import ProtocolError
    from partnner_tf.runtime.cloud.models import check_finite

    with pytest.raises(ProtocolError) as info:
        check_finite([np.array([1.0, np.inf], np.float16)])
    assert info.value.code == "bad_value"
    check_finite([np.array([1, 2], np.int8), np.zeros(3, np.float32)])


def test_a_clean_exit_removes_the_temporary_log_and_a_crash_keeps_it(out):
    from pathlib import Path

    with start_daemon(out) as d:
        pass
    assert d.returncode == 0 and not Path(d.log_path).exists()
    assert "serving" in d.log()  # still readable
    d = start_daemon(out)
    d.kill()
    assert Path(d.log_path).exists(), "a crashed daemon's log is kept for its reader"
    Path(d.log_path).unlink()


def test_a_daemon_not_ready_in_time_is_killed_and_said_so(out):
    # The message said "exited with code -9": the daemon's exit code was read after killing it.
    from partnner_tf.errors import CloudError

    with pytest.raises(CloudError) as info:
        start_daemon(out, timeout_s=0.2)
    assert "was not ready in 0.2 s" in str(info.value), str(info.value)[:300]
