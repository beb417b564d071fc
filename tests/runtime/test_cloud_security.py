"""CURVE: key generation, an allowed client served, a client with no key or a wrong key gets nothing."""

import pytest
import zmq
from click.testing import CliRunner

from partnner_tf.client import CloudClient
from partnner_tf.errors import CloudTimeout
from partnner_tf.runtime.cloud.cli import keys as keys_cli
from partnner_tf.runtime.cloud.security import SecurityError, check_exposure, is_local
from partnner_tf.runtime.cloud.spawn import start_daemon
from tests.runtime.cloud_helpers import Reference, assert_close


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    result = CliRunner().invoke(keys_cli, ["generate", str(d), "--name", "server", "--name", "edge",
                                           "--name", "intruder"])
    assert result.exit_code == 0, result.output
    allowed = d / "allowed"
    allowed.mkdir()
    (allowed / "edge.key").write_bytes((d / "edge.key").read_bytes())
    return d


@pytest.fixture(scope="module")
def curve_daemon(converted_tiny, keydir):
    out = converted_tiny("chain")
    args = ("--curve-secret", str(keydir / "server.key_secret"), "--allowed-clients", str(keydir / "allowed"))
    with start_daemon(out, args=args, server_public_key=str(keydir / "server.key"),
                      client_keypair=str(keydir / "edge.key_secret")) as d:
        yield d, Reference(out)


def test_generate_writes_pairs_and_refuses_to_overwrite(keydir):
    for name in ("server", "edge", "intruder"):
        public, secret = zmq.auth.load_certificate(str(keydir / f"{name}.key_secret"))
        assert len(public) == 40 and len(secret) == 40
        assert (keydir / f"{name}.key_secret").stat().st_mode & 0o077 == 0
    again = CliRunner().invoke(keys_cli, ["generate", str(keydir), "--name", "server"])
    assert again.exit_code != 0
    assert "already exist" in str(again.exception or again.output)


def test_allowed_client_is_served(curve_daemon, keydir):
    d, ref = curve_daemon
    x = ref.frame(0)
    with CloudClient(d.endpoint, server_public_key=str(keydir / "server.key"),
                     client_keypair=str(keydir / "edge.key_secret")) as c:
        assert_close(c.infer(ref.manifest.name, 0, [x], timeout_s=10).outputs, ref.expected(x))


@pytest.mark.parametrize("who", ["no_key", "intruder_key", "wrong_server_key"])
def test_other_clients_get_nothing(curve_daemon, keydir, who):
    d, ref = curve_daemon
    options = {
        "no_key": {},
        "intruder_key": {"server_public_key": str(keydir / "server.key"),
                         "client_keypair": str(keydir / "intruder.key_secret")},
        "wrong_server_key": {"server_public_key": str(keydir / "intruder.key"),
                             "client_keypair": str(keydir / "edge.key_secret")},
    }[who]
    with CloudClient(d.endpoint, **options) as c:
        with pytest.raises(CloudTimeout):
            c.ping(timeout_s=1.0)
        with pytest.raises(CloudTimeout):
            c.infer(ref.manifest.name, 0, [ref.frame(0)], timeout_s=1.0)
    # ...and the daemon still serves its allowed client afterwards.
    with CloudClient(d.endpoint, server_public_key=str(keydir / "server.key"),
                     client_keypair=str(keydir / "edge.key_secret")) as good:
        assert good.ping(timeout_s=5.0) > 0


def test_exposure_rule():
    assert is_local("tcp://127.0.0.1:5555") and is_local("tcp://localhost:1") and is_local("ipc:///tmp/x")
    assert is_local("tcp://[::1]:5555")
    assert not is_local("tcp://0.0.0.0:5555") and not is_local("tcp://*:5555") and not is_local("tcp://10.0.0.1:1")
    with pytest.raises(SecurityError, match="--insecure"):
        check_exposure("tcp://*:5555", curve=False, insecure=False)
    check_exposure("tcp://*:5555", curve=True, insecure=False)
    check_exposure("tcp://*:5555", curve=False, insecure=True)
