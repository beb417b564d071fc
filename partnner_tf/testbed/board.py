"""Run the edge process slowed like a board: a CPU quota (cgroup v1 or v2) and a core count (taskset)."""

import logging
import math
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from partnner_tf.errors import EmulationError, PartnnerError, UnknownBoardError
from partnner_tf.testbed import procs

log = logging.getLogger(__name__)

CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")
#: Our cgroups live under this name so they are easy to find and remove.
GROUP = "partnner-testbed"
#: A short period keeps a capped process steady at frame scale (100 ms is bursty: MEASURED.md);
#: the period is the shortest that still gives the 1 ms minimum quota, within these bounds.
MIN_PERIOD_US = 2_000
MAX_PERIOD_US = 50_000
#: The kernel refuses quotas under 1 ms; small caps get a longer period instead.
MIN_QUOTA_US = 1_000

#: Emulation presets used until (or when) the boards registry has none for a name:
#: {"cpus": cores, "quota": fraction of one core per core}, calibrated on MobileNetV2 (224x224,
#: LiteRT float32) against the board's published latency; see benchmarks/results/board_calibration.md.
PRESETS = {
    "rpi3b": {"cpus": 2, "quota": 0.040},
    "rpi4": {"cpus": 2, "quota": 0.130},
    "rpi5": {"cpus": 2, "quota": 0.350},
    "jetson-nano": {"cpus": 2, "quota": 0.085},
    "coral-dev-board": {"cpus": 2, "quota": 0.045},
}


@dataclass(frozen=True)
class Capability:
    """What this host can emulate: ``method`` is "cgroup-v1", "cgroup-v2" or None."""

    method: object
    taskset: bool
    reason: str

    @property
    def can_cap(self):
        return self.method is not None


def detect():
    """Find how this host can cap a process's CPU, and why not when it cannot."""
    taskset = shutil.which("taskset") is not None
    if os.geteuid() != 0:
        return Capability(None, taskset, "not root: CPU quotas need root (cgroups); the edge runs uncapped")
    if (CGROUP_V1_CPU / "cpu.cfs_quota_us").exists():
        return Capability("cgroup-v1", taskset, "cgroup v1 cpu controller")
    controllers = CGROUP_V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return Capability("cgroup-v2", taskset, "cgroup v2 cpu.max")
    return Capability(None, taskset, "neither cgroup v1 cpu nor cgroup v2 cpu.max is available: "
                                     "the edge runs uncapped")


def board_budget_mb(board):
    """The edge runtime's prefix cache budget (MB) on a registry board, as the runtime itself
    sets it from the board's memory; None for a preset or dict the registry does not know."""
    if not isinstance(board, str):
        return None
    try:
        from partnner_tf.boards import get_board
        from partnner_tf.runtime.edge import board_budget_bytes

        return round(board_budget_bytes(get_board(board)) / 2**20, 1)
    except (ImportError, UnknownBoardError):
        return None


def emulation_for(board):
    """The ``{"cpus", "quota"}`` preset of a board name (the registry first), or a dict as is."""
    if isinstance(board, dict):
        emu = board
    else:
        emu = None
        try:
            from partnner_tf.boards import get_board

            emu = get_board(board).emulation
        except (ImportError, AttributeError):
            pass
        except UnknownBoardError:
            if board not in PRESETS:
                raise
        emu = emu or PRESETS.get(board)
        if emu is None:
            raise UnknownBoardError(
                f"no emulation preset for board {board!r}; known presets: {', '.join(sorted(PRESETS))}"
            )
    try:
        cpus, quota = int(emu["cpus"]), float(emu["quota"])
    except (KeyError, TypeError, ValueError):
        raise PartnnerError(f"board emulation: expected {{'cpus': int, 'quota': float}}, received {emu!r}") from None
    if cpus < 1 or not 0 < quota <= 1:
        raise PartnnerError(f"board emulation: expected cpus >= 1 and 0 < quota <= 1, received {emu!r}")
    return {"cpus": cpus, "quota": quota}


#: The dilate modes run the interpreter on one thread and stretch its CPU time: one thread's CPU
#: time is the work a prefix did, where with two threads the calling thread's share moved with
#: how each process split the work (four edge-only processes in turns, their means 2-6% apart
#: with two threads and 1-4% with one; docs/testbed.md), and after a frame's sleep two threads
#: ran no faster than one here. A preset's quota is this host's two-thread MobileNetV2 224x224
#: time over the board's, so one core, which takes 1 / DILATE_CORE_SHARE as long as two threads'
#: calling thread (0.61-0.68 for MobileNetV2 at 224 and 96 and a small conv net, measured on
#: 2026-11-28), is stretched by DILATE_CORE_SHARE / quota.
DILATE_CORE_SHARE = 0.65


def dilation(emu):
    """``(threads, slowdown)`` of a dilated board ``{"cpus", "quota"}``: one interpreter thread
    stretched to the board's speed, or, for a board no slower than this host, its own cores at
    this host's speed (slowdown 1)."""
    slowdown = DILATE_CORE_SHARE / float(emu["quota"])
    if slowdown <= 1.0:
        return min(int(emu["cpus"]), os.cpu_count() or 1), 1.0
    return 1, slowdown


def quota_period(cpus, quota):
    """``(quota_us, period_us)`` for a cap of ``quota`` of a core on each of ``cpus`` cores."""
    total = cpus * quota
    period = min(max(math.ceil(MIN_QUOTA_US / total), MIN_PERIOD_US), MAX_PERIOD_US)
    return max(int(round(total * period)), MIN_QUOTA_US), period


class CpuCap:
    """One cgroup with a CPU quota; ``prefix`` is the shell snippet that puts a child in it."""

    def __init__(self, cpus, quota, capability=None):
        self.cap = capability or detect()
        self.cpus = min(int(cpus), os.cpu_count() or 1)
        self.quota = float(quota)
        self.path = None
        if not self.cap.can_cap:
            log.warning("board emulation: %s", self.cap.reason)
            return
        name = f"{GROUP}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        quota_us, period_us = quota_period(self.cpus, self.quota)
        try:
            if self.cap.method == "cgroup-v1":
                self.path = CGROUP_V1_CPU / name
                self.path.mkdir()
                (self.path / "cpu.cfs_period_us").write_text(str(period_us))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))
            else:
                self.path = CGROUP_V2 / name
                self.path.mkdir()
                (self.path / "cpu.max").write_text(f"{quota_us} {period_us}")
        except OSError as exc:
            self.close()
            raise EmulationError(f"cannot set a CPU quota with {self.cap.method}: {exc}") from exc
        self.quota_us, self.period_us = quota_us, period_us

    @property
    def prefix(self):
        """Shell commands run in the child before it execs the edge: join the cgroup."""
        if self.path is None:
            return None
        return f"echo $$ > {self.path}/cgroup.procs"

    def join(self, pid):
        """Move a running process (every thread) into the cgroup and onto the first ``cpus`` cores."""
        if self.path is not None:
            (self.path / "cgroup.procs").write_text(str(pid))
        if self.cap.taskset:
            allowed = set(range(self.cpus))
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    os.sched_setaffinity(int(tid), allowed)
                except OSError:
                    pass  # a thread that just exited

    def wrap(self, cmd):
        """``cmd`` pinned to the first ``cpus`` cores when taskset is there."""
        if self.cap.taskset:
            return ["taskset", "-c", f"0-{self.cpus - 1}", *cmd]
        return list(cmd)

    def describe(self):
        if self.path is None:
            return f"uncapped ({self.cap.reason})"
        return (f"{self.cpus} core(s) at {self.quota:.3f} of a core each "
                f"({self.cap.method}: {self.quota_us}/{self.period_us} us)")

    def close(self):
        """Remove the cgroup (its processes must have exited)."""
        if self.path is None:
            return
        for _ in range(50):
            try:
                self.path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            log.warning("could not remove cgroup %s", self.path)
        self.path = None


def spawn_capped(cmd, emulation, **kwargs):
    """Start ``cmd`` capped like a board; returns ``(proc, cap)``; call ``cap.close()`` after it exits."""
    emu = emulation_for(emulation)
    cap = CpuCap(emu["cpus"], emu["quota"])
    try:
        proc = procs.spawn(cap.wrap(cmd), prefix=cap.prefix, **kwargs)
    except OSError:
        cap.close()
        raise
    return proc, cap


def cpu_seconds(pid):
    """User + system CPU seconds a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_capped(cmd, emulation, timeout_s=600, **kwargs):
    """Run ``cmd`` capped to completion; returns ``CompletedProcess``-like (returncode, stdout)."""
    proc, cap = spawn_capped(cmd, emulation, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        procs.terminate(proc)
        raise EmulationError(f"capped command timed out after {timeout_s} s: {cmd}") from None
    finally:
        procs.terminate(proc)
        cap.close()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
