"""``partnner board flash``: copy a bundle over SSH, install it, start its service, show its first log lines."""

import logging
import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from partnner_tf.errors import PartnnerError

log = logging.getLogger(__name__)

SERVICE = "partnner-edge.service"
DEFAULT_REMOTE_DIR = "partnner"
#: Seconds the service runs before its first log lines are read.
DEFAULT_LOG_WAIT_S = 5.0
LOG_LINES = 20


class FlashError(PartnnerError):
    """A bundle could not be copied, installed or started on a host."""


@dataclass
class FlashResult:
    """What happened on the host."""

    host: str
    remote_dir: str
    mode: str  # "systemd" or "nohup"
    pid: int = None
    log_lines: list = field(default_factory=list)
    frames_logged: int = 0
    output: str = ""


@dataclass(frozen=True)
class Target:
    """Where to flash: ``user@host``, port, private key and extra ``-o`` options for ssh/scp."""

    user: str
    host: str
    port: int = 22
    identity: str = None
    options: tuple = ()

    @classmethod
    def parse(cls, spec, port=22, identity=None, options=()):
        m = re.fullmatch(r"([A-Za-z0-9._-]+)@([A-Za-z0-9.:_\-\[\]]+)", spec or "")
        if not m:
            raise FlashError(f"--host: expected USER@HOST, e.g. pi@raspberrypi.local; received {spec!r}")
        if identity is not None and not Path(identity).is_file():
            raise FlashError(f"--identity: no such key file {identity}")
        return cls(m.group(1), m.group(2), int(port), identity, tuple(options))

    def _common(self):
        # BatchMode: never wait on a password prompt; accept-new: trust a fresh board's host key
        # on first contact but refuse a changed one.
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10"]
        for o in self.options:
            opts += ["-o", o]
        if self.identity:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(self.identity)]
        return opts

    def ssh(self, *remote):
        return ["ssh", *self._common(), "-p", str(self.port), f"{self.user}@{self.host}", *remote]

    def scp(self, local, remote_path):
        return ["scp", "-q", *self._common(), "-P", str(self.port), str(local), f"{self.user}@{self.host}:{remote_path}"]

    @property
    def name(self):
        return f"{self.user}@{self.host}:{self.port}"


def bundle_top(bundle):
    """The bundle's top folder name (``partnner-MODEL-BOARD``), checking it is a bundle."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            names = tar.getnames()
    except (OSError, tarfile.TarError) as exc:
        raise FlashError(f"{bundle}: not a readable .tar.gz bundle ({exc})") from exc
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) != 1 or f"{next(iter(tops))}/install.sh" not in names:
        raise FlashError(f"{bundle}: expected one top folder holding install.sh (a `partnner board bundle` file)")
    return tops.pop()


def remote_script(remote_dir, name, top, log_wait_s):
    """The shell script run on the host: unpack, install, start, print the first log lines."""
    d, n, t = shlex.quote(remote_dir), shlex.quote(name), shlex.quote(top)
    return f"""set -eu
cd {d}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
HAS_SYSTEMD=no; [ -d /run/systemd/system ] && command -v systemctl >/dev/null && HAS_SYSTEMD=yes
# A running service holds the old venv: stop it before replacing the folder.
if [ "$HAS_SYSTEMD" = yes ]; then $SUDO systemctl stop {SERVICE} 2>/dev/null || true; fi
if [ -f partnner-edge.pid ]; then kill "$(cat partnner-edge.pid)" 2>/dev/null || true; rm -f partnner-edge.pid; fi
rm -rf {t}
tar xzf {n}
sh {t}/install.sh
if [ "$HAS_SYSTEMD" = yes ]; then
    $SUDO systemctl enable {SERVICE}
    $SUDO systemctl restart {SERVICE}
    echo "PARTNNER_MODE=systemd"
    sleep {log_wait_s}
    echo "PARTNNER_LOG_BEGIN"
    $SUDO journalctl -u {SERVICE} -n {LOG_LINES} --no-pager || true
else
    # No systemd: the service command detached from this session, its output in logs/.
    mkdir -p {t}/logs
    if command -v setsid >/dev/null; then DETACH=setsid; else DETACH=""; fi
    nohup $DETACH {t}/run.sh > {t}/logs/service.log 2>&1 < /dev/null &
    echo $! > partnner-edge.pid
    echo "PARTNNER_MODE=nohup PARTNNER_PID=$!"
    sleep {log_wait_s}
    echo "PARTNNER_LOG_BEGIN"
    head -n {LOG_LINES} {t}/logs/service.log || true
fi
echo "PARTNNER_LOG_END"
echo "PARTNNER_FRAMES=$(cat {t}/logs/frames.jsonl 2>/dev/null | wc -l)"
"""


def _check(proc, target, step):
    if proc.returncode == 0:
        return proc
    err = (proc.stderr or "").strip()
    if proc.returncode == 255 or "Permission denied" in err or "Connection refused" in err:
        if "Permission denied" in err:
            why = "the host refused the key (Permission denied): check --identity and the user"
        elif "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
            why = "the host key differs from the known one"
        else:
            why = "the host cannot be reached"
        raise FlashError(f"{step} on {target.name} failed: {why}\n{err.splitlines()[-1] if err else ''}".rstrip())
    tail = "\n".join((proc.stdout + "\n" + err).strip().splitlines()[-15:])
    raise FlashError(f"{step} on {target.name} failed (exit {proc.returncode}):\n{tail}")


def _parse(out, target, remote_dir):
    mode = "systemd" if "PARTNNER_MODE=systemd" in out else "nohup"
    pid = re.search(r"PARTNNER_PID=(\d+)", out)
    frames = re.search(r"PARTNNER_FRAMES=\s*(\d+)", out)
    body = out.split("PARTNNER_LOG_BEGIN", 1)[-1].split("PARTNNER_LOG_END", 1)[0]
    return FlashResult(
        host=target.name,
        remote_dir=remote_dir,
        mode=mode,
        pid=int(pid.group(1)) if pid else None,
        log_lines=[line for line in body.strip("\n").splitlines()],
        frames_logged=int(frames.group(1)) if frames else 0,
        output=out,
    )


def flash_commands(bundle, target, remote_dir=DEFAULT_REMOTE_DIR, log_wait_s=DEFAULT_LOG_WAIT_S):
    """The three steps as (description, argv, stdin) without running them (``--dry-run``)."""
    bundle = Path(bundle)
    top = bundle_top(bundle)
    script = remote_script(remote_dir, bundle.name, top, log_wait_s)
    return [
        ("make the remote folder", target.ssh("mkdir", "-p", shlex.quote(remote_dir)), None),
        ("copy the bundle", target.scp(bundle, f"{remote_dir}/{bundle.name}"), None),
        ("unpack, install, start the service", target.ssh("sh", "-s"), script),
    ]


def flash(bundle, target, remote_dir=DEFAULT_REMOTE_DIR, log_wait_s=DEFAULT_LOG_WAIT_S, timeout_s=900):
    """Copy ``bundle`` to ``target``, install it, start its service; returns a :class:`FlashResult`.

    Raises:
        FlashError: naming the step that failed and why (unreachable, key refused, install failed).
    """
    proc = None
    for step, argv, stdin in flash_commands(bundle, target, remote_dir, log_wait_s):
        log.info("%s: %s", step, " ".join(argv))
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout_s)
        except FileNotFoundError as exc:
            raise FlashError(f"{step}: {argv[0]} is not installed here (openssh-client)") from exc
        except subprocess.TimeoutExpired as exc:
            raise FlashError(f"{step} on {target.name}: no answer within {timeout_s} s") from exc
        _check(proc, target, step)
    return _parse(proc.stdout, target, remote_dir)
