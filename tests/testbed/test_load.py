"""The load generator: concurrent clients on a schedule make the daemon's reported queueing rise and fall."""

import time

import numpy as np
import pytest

from partnner_tf.errors import PartnnerError
from partnner_tf.testbed.load import LoadProcess, clients_at, parse_load


def test_parse_load_and_lookup():
    sched = parse_load("0=0,2=3,5=1")
    assert sched == [(0.0, 0), (2.0, 3), (5.0, 1)]
    assert [clients_at(sched, t) for t in (0, 1.9, 2, 4.9, 9)] == [0, 0, 3, 3, 1]
    with pytest.raises(PartnnerError, match="T=CLIENTS"):
        parse_load("soon=many")


@pytest.mark.slow
def test_load_raises_then_releases_queue_time(mobilenet_out):
    from partnner_tf.client import CloudClient
    from partnner_tf.manifest import load_manifest
    from partnner_tf.runtime.cloud.spawn import start_daemon
    from partnner_tf.testbed.load import _input_tensor

    m = load_manifest(mobilenet_out)
    x = _input_tensor(m, 0)
    with start_daemon([mobilenet_out], args=("--workers", "1")) as daemon, CloudClient(daemon.endpoint) as c:

        def probe(seconds):
            out, t_end = [], time.monotonic() + seconds
            while time.monotonic() < t_end:
                r = c.infer(m.name, 0, x, 30.0)
                out.append((r.queue_s, r.queue_depth))
            return np.array(out)

        idle = probe(1.5)
        with LoadProcess(daemon.endpoint, mobilenet_out, "0=3,4=0", nice=0):
            time.sleep(0.5)
            loaded = probe(3.0)
            time.sleep(1.0)
            after = probe(1.5)
    assert np.median(loaded[:, 0]) > 2 * np.median(idle[:, 0]) + 1e-4
    assert loaded[:, 1].max() >= 1  # the daemon saw other requests waiting
    assert np.median(after[:, 0]) < np.median(loaded[:, 0]) / 2
