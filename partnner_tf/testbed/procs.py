"""Child processes of the testbed: each in its own process group, all ended on exit or Ctrl-C."""

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from partnner_tf.errors import EmulationError

log = logging.getLogger(__name__)

#: Every process group the testbed started and has not reaped yet (pid -> Popen).
_LIVE = {}
#: The signal that asked this process to stop, once one has (see :func:`check_stopping`).
stopping = None
_LOCK = threading.Lock()


def python_cmd(module, *args):
    """The command running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def spawn(cmd, *, stdin=None, stdout=None, stderr=None, env=None, cwd=None, prefix=None):
    """Start ``cmd`` in a new session (its own process group) and remember it for cleanup.

    Args:
        prefix: a shell snippet run first in the child (e.g. joining a cgroup) before it execs
            ``cmd``; ``$$`` there is the child's own pid.
    """
    check_stopping()  # nothing new starts once a signal has ended what was running
    if prefix:
        quoted = " ".join(_shell_quote(c) for c in cmd)
        cmd = ["/bin/sh", "-c", f"{prefix} && exec {quoted}"]
    proc = subprocess.Popen(
        cmd, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=True
    )
    with _LOCK:
        _LIVE[proc.pid] = proc
    return proc


def _shell_quote(s):
    import shlex

    return shlex.quote(str(s))


def terminate(proc, timeout_s=10.0):
    """SIGTERM the process group of ``proc``, SIGKILL it after ``timeout_s``; returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0f s: killing it", proc.pid, timeout_s)
    # Children of the leader may still be alive even when the leader has exited.
    _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:
        pass
    with _LOCK:
        _LIVE.pop(proc.pid, None)
    return proc.returncode


def adopt(proc):
    """Track a child started elsewhere (in our own process group) so cleanup ends it too."""
    proc._partnner_adopted = True
    with _LOCK:
        _LIVE[proc.pid] = proc
    return proc


def _signal_group(proc, sig):
    try:
        if getattr(proc, "_partnner_adopted", False):
            # Not a group leader: signal the process alone, never our own group.
            if proc.poll() is None:
                proc.send_signal(sig)
        else:
            os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def cleanup_all():
    """End every process group still alive (atexit and signal handlers call this)."""
    with _LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)
        with _LOCK:
            _LIVE.pop(proc.pid, None)


def check_stopping():
    """Raise SystemExit if SIGTERM or SIGINT came. The handler raises too, but wherever the signal
    lands a ``finally`` may replace it: one that pauses a link relay the handler has just ended
    raises "the relay is gone", which a matrix records as a failed cell and goes on to the next."""
    if stopping is not None:
        raise SystemExit(128 + stopping)


def install_handlers():
    """Clean up on exit, SIGTERM and SIGINT (Ctrl-C still raises KeyboardInterrupt afterwards)."""
    atexit.register(cleanup_all)

    def stop(signum):
        global stopping
        stopping = signum
        cleanup_all()

    def on_term(signum, frame):
        stop(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    prev = signal.getsignal(signal.SIGINT)

    def on_int(signum, frame):
        stop(signum)
        if callable(prev):
            prev(signum, frame)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_int)


def read_ready_line(proc, what, timeout_s=30.0):
    """Read the one JSON line a helper prints on stdout once it is ready."""
    result = {}

    def reader():
        line = proc.stdout.readline()
        if line:
            result["line"] = line

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout_s)
    if "line" not in result:
        code = proc.poll()
        terminate(proc)
        raise EmulationError(
            f"{what} did not become ready within {timeout_s:.0f} s (exit code {code})"
        )
    try:
        return json.loads(result["line"])
    except ValueError:
        terminate(proc)
        raise EmulationError(f"{what}: expected a JSON ready line, received {result['line']!r}") from None
