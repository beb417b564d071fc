"""No frame lost: the cloud daemon SIGKILLed mid-stream and restarted; and no TensorFlow on the edge."""

import json
import subprocess
import sys
import textwrap

import numpy as np

from partnner_tf.runtime.cloud.spawn import start_daemon
from partnner_tf.runtime.edge import EdgeRuntime
from tests.runtime.edge_fixtures import (  # noqa: F401 (fixtures)
    ATOL, assert_matches, daemon, keras_reference, residual_out)

N_FRAMES = 300
KILL_AT, RESTART_AT = 80, 140


def test_sigkill_mid_stream_loses_no_frame(residual_out, tmp_path):
    x = np.random.default_rng(7).random((N_FRAMES, 8, 8, 3), dtype=np.float32)
    ref = keras_reference(residual_out, x)
    d = start_daemon([residual_out], log_path=tmp_path / "killed.log")  # killed: its log is kept
    endpoint = d.endpoint
    results = []
    try:
        with EdgeRuntime(residual_out, cloud=endpoint, selector="fixed:2", deadline_s=1.0,
                         backoff_s=(0.02, 0.2)) as rt:
            for i, r in enumerate(rt.stream(x)):
                results.append(r)
                if i == KILL_AT:
                    d.kill()
                elif i == RESTART_AT:
                    d = start_daemon([residual_out], bind=endpoint, log_path=tmp_path / "restarted.log")
                    assert rt.link.wait_up(30), "the runtime never saw the restarted daemon"
            downs = rt.link.downs
    finally:
        d.kill()
    assert [r.frame for r in results] == list(range(N_FRAMES))  # one result per frame, in order
    for i, r in enumerate(results):
        assert_matches(r, ref, i)
    fell = [r.frame for r in results if r.fallback]
    assert fell and min(fell) > KILL_AT and max(fell) < N_FRAMES
    assert downs >= 1
    after = results[RESTART_AT + 1:]
    assert any(not r.fallback and r.cut == 2 and r.bytes_sent > 0 for r in after)
    assert all(not r.fallback for r in results[:KILL_AT + 1])


def test_late_reply_never_lands_on_the_next_frame(residual_out, daemon):
    """A deadline far below the daemon's time: every frame falls back, none takes a stale reply."""
    x = np.random.default_rng(3).random((20, 8, 8, 3), dtype=np.float32)
    ref = keras_reference(residual_out, x)
    with EdgeRuntime(residual_out, cloud=daemon.endpoint, selector="fixed:1", deadline_s=1e-6,
                     min_deadline_s=1e-6, backoff_s=(0.001, 0.002)) as rt:
        results = []
        for frame in x:
            results.append(rt.infer(frame))
            rt.link.wait_up(5)  # let the probe bring the link back so the next frame tries again
    for i, r in enumerate(results):
        assert_matches(r, ref, i)
    assert sum(r.fallback for r in results) >= 10


_NO_TF = textwrap.dedent("""
    import json, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
                raise ImportError('blocked on the edge: ' + name)
    sys.meta_path.insert(0, Block())
    import numpy as np
    from partnner_tf.runtime.edge import EdgeRuntime
    from partnner_tf.runtime.cli import edge
    out, endpoint = sys.argv[1], sys.argv[2]
    x = np.load(sys.argv[3])
    res = {}
    with EdgeRuntime(out, cloud=None, selector="edge") as rt:
        res["edge"] = [r.outputs[0].tolist() for r in rt.stream(x)]
    with EdgeRuntime(out, cloud=endpoint, selector="fixed:2") as rt:
        rs = list(rt.stream(x))
        res["cloud"] = [r.outputs[0].tolist() for r in rs]
        res["fallbacks"] = sum(r.fallback for r in rs)
    res["tf_loaded"] = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]
    print(json.dumps(res))
""")


def test_runtime_runs_where_tensorflow_cannot_be_imported(residual_out, daemon, tmp_path):
    x = np.random.default_rng(5).random((4, 8, 8, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _NO_TF, str(residual_out), daemon.endpoint,
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["tf_loaded"] == [] and res["fallbacks"] == 0
    ref = keras_reference(residual_out, x)[0]
    for key in ("edge", "cloud"):
        np.testing.assert_allclose(np.array(res[key])[:, 0], ref, atol=ATOL, rtol=1e-4)
