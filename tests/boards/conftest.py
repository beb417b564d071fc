"""Fixtures for the board tests: a tiny converted model, a built wheel, a loopback OpenSSH server."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


@pytest.fixture(scope="session")
def tiny_out(converted_tiny):
    """The shared tiny chain model, converted with every cut."""
    return Path(converted_tiny("chain"))


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory):
    """The partnner-tf wheel built once from the source tree."""
    from partnner_tf.boards.wheels import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def wheel_cache():
    """The user's wheel cache: downloads happen once per machine, not once per test run."""
    from partnner_tf.boards.wheels import default_cache

    return default_cache()


@pytest.fixture(scope="session")
def x86_bundle(tiny_out, built_wheel, wheel_cache, tmp_path_factory):
    """A generic x86_64 bundle of the tiny model (policy fixed:2, a made-up cloud endpoint)."""
    from partnner_tf.boards.bundle import make_bundle

    path = tmp_path_factory.mktemp("bundle") / "tiny-x86.tar.gz"
    return make_bundle(tiny_out, "generic-x86_64", path, policy="fixed:2", cloud="tcp://127.0.0.1:7777",
                       wheel=built_wheel, cache=wheel_cache)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1:<random port> accepting one test key for this user.

    Yields a dict: port, user, key (private key path), wrong_key, known_hosts, options.
    """
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("scp"):
        pytest.skip("OpenSSH server/client not installed: run .ci/setup-sshd.sh as root")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here to log a user in (privilege separation)")
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host_ed25519")
    key = _keygen(d / "user_ed25519")
    wrong_key = _keygen(d / "other_ed25519")
    (d / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(d / "sshd.log", "w"))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
                time.sleep(0.1)
        yield {
            "port": port,
            "user": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
            "key": key,
            "wrong_key": wrong_key,
            "options": (f"UserKnownHostsFile={d}/known_hosts",),
            "dir": d,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
