"""CURVE key pairs and the rule that a daemon off loopback must encrypt and authenticate."""

from pathlib import Path
from urllib.parse import urlsplit

from partnner_tf.constants import LOOPBACK_HOSTS
from partnner_tf.errors import PartnnerError


class SecurityError(PartnnerError):
    """A daemon would be exposed, or its keys cannot be read."""


def is_local(endpoint):
    """True for ipc://, inproc:// and tcp:// on a loopback host."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = urlsplit(endpoint).hostname or ""
    # A tcp://eth0;127.0.0.1:5555 source spec or '*' is never local.
    return host in LOOPBACK_HOSTS or f"[{host}]" in LOOPBACK_HOSTS


def check_exposure(bind, curve, insecure):
    """Refuse a non-loopback bind without CURVE unless ``insecure`` was asked for."""
    if curve or insecure or is_local(bind):
        return
    raise SecurityError(
        f"refusing to bind {bind} without CURVE: anyone who reaches it could use the daemon. "
        "Pass --curve-secret FILE --allowed-clients DIR (see `partnner keys generate`), "
        "or --insecure if the network itself is trusted"
    )


def load_server_curve(secret_file, allowed_dir):
    """(public, secret, allowed_dir) for the daemon, checking both paths."""
    import zmq.auth

    if allowed_dir is None:
        raise SecurityError("--curve-secret needs --allowed-clients DIR holding the clients' public keys")
    allowed = Path(allowed_dir)
    if not allowed.is_dir() or not any(allowed.glob("*.key")):
        raise SecurityError(f"--allowed-clients {allowed}: expected a folder of *.key public key files; found none")
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise SecurityError(f"--curve-secret {secret_file}: cannot read a key pair ({exc})") from exc
    if secret is None:
        raise SecurityError(f"--curve-secret {secret_file}: holds a public key only; pass the .key_secret file")
    return public, secret, allowed


def generate_keys(folder, names=("server", "client")):
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` for each name; returns the paths.

    Refuses to overwrite an existing key: a replaced key locks out every device holding the old one.
    """
    import zmq.auth

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing = [n for n in names if (folder / f"{n}.key").exists() or (folder / f"{n}.key_secret").exists()]
    if existing:
        raise SecurityError(f"{folder}: keys for {existing} already exist; remove them first or pick other names")
    out = []
    for name in names:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        Path(secret).chmod(0o600)
        out.append((Path(public), Path(secret)))
    return out
