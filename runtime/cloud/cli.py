"""``partnner cloud ...`` and ``partnner keys ...``: serve, health-check and key tooling."""

import json
import logging
import os
import sys

import click

from partnner_tf.constants import DEFAULT_ENDPOINT, ENV_ENDPOINT, MAX_MESSAGE_BYTES


def _client(endpoint, server_key, client_key):
    from partnner_tf.client import CloudClient

    return CloudClient(endpoint, server_public_key=server_key, client_keypair=client_key)


_curve_client_options = [
    click.option("--server-key", type=click.Path(exists=True, dir_okay=False),
                 help="The daemon's public key file (enables CURVE)."),
    click.option("--client-key", type=click.Path(exists=True, dir_okay=False),
                 help="This client's .key_secret file."),
    click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for the answer."),
]


def curve_client_options(f):
    for opt in reversed(_curve_client_options):
        f = opt(f)
    return f


@click.group()
def cloud():
    """The cloud executor daemon: serve suffixes, health-check, describe, stats."""


@cloud.command()
@click.argument("outs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--bind", default=DEFAULT_ENDPOINT, envvar=ENV_ENDPOINT, show_default=True,
              help="ZeroMQ endpoint; tcp://127.0.0.1:* picks a free port (printed on the READY line).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Workers running suffixes: 1 runs them in the front-end thread, more run in threads "
                   "(see docs/protocol.md).")
@click.option("--intra-op-threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="TensorFlow threads inside one op; 0: all cores for one worker, cores/workers for several.")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(1, 100000),
              help="Waiting requests beyond which new ones are answered 'overloaded'.")
@click.option("--max-per-client", type=click.IntRange(1, 100000), default=None,
              help="Requests one client may have waiting or running [default: max-queue / 4].")
@click.option("--preload", default="all", show_default=True,
              help="Cuts warmed before serving: all, none, or ids like 0,3,5; the rest warm in the background.")
@click.option("--curve-secret", type=click.Path(exists=True, dir_okay=False),
              help="The daemon's .key_secret file: require CURVE.")
@click.option("--allowed-clients", type=click.Path(exists=True, file_okay=False),
              help="Folder of the clients' public .key files admitted under CURVE.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback bind without CURVE.")
@click.option("--max-message-bytes", default=MAX_MESSAGE_BYTES, show_default=True, type=click.IntRange(1024),
              help="Largest request ZeroMQ accepts; a peer sending more is disconnected.")
@click.option("--drain-timeout", default=30.0, show_default=True,
              help="On SIGTERM/SIGINT, seconds to finish the requests in flight.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(outs, bind, workers, intra_op_threads, max_queue, max_per_client, preload, curve_secret,
          allowed_clients, insecure, max_message_bytes, drain_timeout, log_json, log_level):
    """Serve the converted models in OUTS (folders with manifest.json) until SIGTERM."""
    from partnner_tf.runtime.cloud import logs, security

    logs.setup(json_lines=log_json, level=getattr(logging, log_level.upper()))
    curve = security.load_server_curve(curve_secret, allowed_clients) if curve_secret else None
    security.check_exposure(bind, curve is not None, insecure)
    # TensorFlow loads only here: every other command of this group stays light.
    from partnner_tf.runtime.cloud.server import Daemon

    if not intra_op_threads and workers > 1:
        # Workers sharing one pool of all-core ops wait on each other; a share each runs better.
        intra_op_threads = max(1, (os.cpu_count() or 1) // workers)
    if intra_op_threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)

    daemon = Daemon(outs, bind, workers=workers, max_queue=max_queue, preload=preload, curve=curve,
                    max_message_bytes=max_message_bytes, drain_timeout_s=drain_timeout,
                    intra_op_threads=intra_op_threads or None, max_per_client=max_per_client)
    endpoint = daemon.start()
    click.echo(f"READY {endpoint}")
    sys.stdout.flush()
    daemon.serve_forever()


@cloud.command()
@click.argument("endpoint", default=DEFAULT_ENDPOINT, envvar=ENV_ENDPOINT)
@curve_client_options
def ping(endpoint, server_key, client_key, timeout):
    """Health check: exit 0 and print the round trip if ENDPOINT answers, else exit 1."""
    from partnner_tf.errors import PartnnerError

    try:
        with _client(endpoint, server_key, client_key) as c:
            rtt = c.ping(timeout_s=timeout)
    except PartnnerError as exc:
        click.echo(f"{endpoint} DOWN: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{endpoint} OK {rtt * 1000:.2f} ms")


@cloud.command()
@click.argument("endpoint", default=DEFAULT_ENDPOINT, envvar=ENV_ENDPOINT)
@curve_client_options
def stats(endpoint, server_key, client_key, timeout):
    """Print the daemon's request counts, latencies, errors and load as JSON."""
    with _client(endpoint, server_key, client_key) as c:
        click.echo(json.dumps(c.stats(timeout_s=timeout), indent=1))


@cloud.command()
@click.argument("endpoint", default=DEFAULT_ENDPOINT, envvar=ENV_ENDPOINT)
@curve_client_options
def describe(endpoint, server_key, client_key, timeout):
    """Print the models, cuts and boundary shapes the daemon serves, as JSON."""
    with _client(endpoint, server_key, client_key) as c:
        click.echo(json.dumps(c.describe(timeout_s=timeout), indent=1))


@click.group()
def keys():
    """CURVE key pairs for the cloud daemon and its clients."""


@keys.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--name", "names", multiple=True, default=("server", "client"), show_default=True,
              help="Key pair names (repeat); each gives NAME.key and NAME.key_secret.")
def generate(folder, names):
    """Create CURVE key pairs in FOLDER (public NAME.key, secret NAME.key_secret)."""
    from partnner_tf.runtime.cloud.security import generate_keys

    for public, secret in generate_keys(folder, names):
        click.echo(f"{public}\n{secret}")
