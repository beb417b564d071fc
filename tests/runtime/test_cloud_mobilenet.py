"""MobileNetV2 through the real daemon: every converted cut's suffix(prefix(x)) equals the full model."""

import pytest

from partnner_tf.client import CloudClient
from partnner_tf.runtime.cloud.spawn import start_daemon
from tests.runtime.cloud_helpers import Reference, assert_close


@pytest.mark.slow
def test_mobilenet_every_cut_through_the_daemon(mobilenet_out):
    ref = Reference(mobilenet_out)
    assert len(ref.cloud_cuts) >= 3
    x = ref.frame(0)
    want = ref.expected(x)
    with start_daemon(mobilenet_out, timeout_s=300) as d, CloudClient(d.endpoint) as client:
        startup = client.describe()["startup"]
        assert startup["cuts_warmed"] == len(ref.cloud_cuts)
        for cut in ref.cloud_cuts:
            reply = client.infer(ref.manifest.name, cut, ref.boundary(cut, x), timeout_s=30)
            assert_close(reply.outputs, want)
    assert d.returncode == 0, d.log()
