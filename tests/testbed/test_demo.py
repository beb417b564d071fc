"""`partnner demo` and `partnner bench` clean up every process they started when interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path



def _children(pid):
    """Every descendant of ``pid`` (from /proc)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt(cmd, ready, sig, settle_s=0.0, least=3):
    """Run ``cmd`` until a line of its output satisfies ``ready``, send ``sig``, wait for it to end
    and assert that none of its descendants (at least ``least`` of them when the signal goes)
    outlived it; returns (its output, its exit code)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines, seen = [], set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if not line or ready(line):
                break
        time.sleep(settle_s)
        seen = set(_children(proc.pid))
        assert len(seen) >= least, "".join(lines)  # by default: daemon, relay(s), edge process(es)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
    finally:
        # Also when the command did not stop: its children run in sessions of their own.
        if proc.poll() is None:
            seen.update(_children(proc.pid))
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.5)
        left = [p for p in seen if _alive(p)]
        for p in left:
            os.kill(p, signal.SIGKILL)
    assert not left, f"processes left after signal {sig}: {left}"
    return "".join(lines) + rest, proc.returncode


def test_demo_leaves_no_process_after_sigint(converted_tiny, tmp_path):
    out = converted_tiny("chain")
    cmd = [sys.executable, "-m", "partnner_tf.cli", "demo", "--model", str(out), "-o", str(tmp_path),
           "--duration", "30"]
    # Once the partnner run is going: daemon, relay, load clients and edge all alive.
    _, code = _interrupt(cmd, lambda line: line.startswith("t "), signal.SIGINT)
    assert code != 0


def test_bench_stops_and_leaves_no_process_after_sigterm(converted_tiny, tmp_path):
    # SIGTERM ended the relays while a turn's `finally` paused one: "the relay is gone" replaced
    # the SystemExit, the cell was recorded as failed, and the matrix went on to the next cell.
    out = converted_tiny("chain")
    cmd = [sys.executable, "-m", "partnner_tf.cli", "bench", "--model", str(out), "--board", "rpi4",
           "--link", "wifi", "--link", "const:5e6|const:20e6|15", "--policies", "edge,cloud,partnner",
           "--frames", "100000", "--no-sim", "-o", str(tmp_path / "bench")]
    # Once the first cell's runs are going.
    text, code = _interrupt(cmd, lambda line: "in turns" in line, signal.SIGTERM, settle_s=2.0)
    assert code == 128 + signal.SIGTERM, text
    assert "[2/2]" not in text and not (tmp_path / "bench" / "table.md").exists(), text


def test_bench_sigterm_while_the_daemon_starts_leaves_no_daemon(converted_tiny, tmp_path):
    # The daemon was adopted for cleanup only once ready: a SIGTERM while its models loaded
    # left it running (seen with benchmarks/paper_table.py).
    out = converted_tiny("chain")
    cmd = [sys.executable, "-m", "partnner_tf.cli", "bench", "--model", str(out), "--board", "rpi4",
           "--link", "wifi", "--policies", "edge", "--frames", "10", "--no-sim", "-o", str(tmp_path / "bench")]
    _, code = _interrupt(cmd, lambda line: "starting the cloud daemon" in line, signal.SIGTERM,
                         settle_s=1.0, least=1)
    assert code == 128 + signal.SIGTERM
