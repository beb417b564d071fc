"""Start a cloud daemon as a real process (tests, testbed, demo) and wait until it answers."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from partnner_tf.errors import CloudError, CloudTimeout


class DaemonProcess:
    """A running ``partnner cloud serve``; a context manager that stops it on exit.

    Attributes:
        endpoint: the endpoint it really bound (a random port resolved).
        pid: its process id.
        log_path: its stderr log file.
        owns_log: the log is a temporary file of ours: removed once the daemon has exited
            cleanly (its text stays readable through :meth:`log`), kept after a failure.
    """

    def __init__(self, proc, endpoint, log_path, owns_log=False):
        self.proc = proc
        self.endpoint = endpoint
        self.pid = proc.pid
        self.log_path = log_path
        self.owns_log = owns_log
        self._kept_log = None

    @property
    def returncode(self):
        return self.proc.poll()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout_s=30.0):
        """SIGTERM (the daemon drains its requests in flight), wait; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.owns_log and self.proc.returncode == 0 and self._kept_log is None:
            self._kept_log = self.log()
            Path(self.log_path).unlink(missing_ok=True)
        return self.proc.returncode

    def kill(self):
        """SIGKILL: the daemon dies without draining (a crash)."""
        if self.alive():
            self.proc.kill()
        return self.proc.wait()

    def log(self):
        """What the daemon logged so far."""
        if self._kept_log is not None:
            return self._kept_log
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _read_ready(proc, found, done):
    """Read the daemon's stdout: note the READY line, then keep draining so it never blocks."""
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").strip()
        if line.startswith("READY ") and not found:
            found.append(line.split(" ", 1)[1])
            done.set()
    done.set()


def start_daemon(outs, *, bind="tcp://127.0.0.1:*", args=(), timeout_s=120, server_public_key=None,
                 client_keypair=None, log_path=None, env=None):
    """Run ``python -m partnner_tf.cli cloud serve OUTS --bind BIND ARGS`` and wait until it answers ping.

    Args:
        outs: converted model folder(s).
        bind: endpoint to bind; the default picks a free loopback port.
        args: extra ``serve`` options, e.g. ``("--workers", "2")``.
        timeout_s: how long start-up (model load and warm-up) may take.
        server_public_key, client_keypair: CURVE keys for the readiness ping when the daemon
            requires CURVE (the ping is skipped without them; the READY line suffices).
        log_path: where the daemon's stderr goes (a temporary file by default).

    Raises:
        CloudError: the daemon exited or never printed READY; the message ends with its log.
    """
    if isinstance(outs, (str, os.PathLike)):
        outs = [outs]
    owns_log = log_path is None
    if owns_log:
        fd, log_path = tempfile.mkstemp(prefix="partnner-cloud-", suffix=".log")
        os.close(fd)
    cmd = [sys.executable, "-m", "partnner_tf.cli", "cloud", "serve", *map(str, outs), "--bind", bind, *args]
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, env=child_env)
    try:
        found, done = [], threading.Event()
        threading.Thread(target=_read_ready, args=(proc, found, done), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        done.wait(timeout_s)
        daemon = DaemonProcess(proc, found[0] if found else None, log_path, owns_log)
        if not found:  # (the handler below kills a daemon still running)
            code = proc.poll()
            what = f"exited with code {code}" if code is not None else f"was not ready in {timeout_s} s"
            raise CloudError("start_failed", f"daemon {what}; log {log_path}:\n{daemon.log()[-3000:]}")
        if "--curve-secret" not in args or server_public_key is not None:
            _wait_ping(daemon, deadline, server_public_key, client_keypair)
        return daemon
    except BaseException:
        # A failed start, and also one interrupted (Ctrl-C, or SIGTERM's SystemExit) while the
        # models load: the caller has no handle on the daemon, so it must not outlive this call.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def _wait_ping(daemon, deadline, server_public_key, client_keypair):
    from partnner_tf.client import CloudClient

    with CloudClient(daemon.endpoint, server_public_key=server_public_key, client_keypair=client_keypair) as c:
        while True:
            try:
                c.ping(timeout_s=1.0)
                return
            except CloudTimeout:
                if not daemon.alive() or time.monotonic() > deadline:  # start_daemon kills it
                    raise CloudError("start_failed", f"daemon at {daemon.endpoint} does not answer ping; "
                                     f"log:\n{daemon.log()[-3000:]}") from None
