"""`partnner demo` cleans up every process it started when interrupted with SIGINT."""

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


def test_demo_leaves_no_process_after_sigint(converted_tiny, tmp_path):
    out = converted_tiny("chain")
    cmd = [sys.executable, "-m", "partnner_tf.cli", "demo", "--model", str(out), "-o", str(tmp_path),
           "--duration", "30"]
    demo = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = set()
    lines = []
    try:
        deadline = time.monotonic() + 180
        # Wait until the partnner run is going: daemon, relay, load clients and edge all alive.
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            lines.append(line)
            if not line or line.startswith("t "):
                break
        seen.update(_children(demo.pid))
        assert len(seen) >= 3, "".join(lines)  # daemon, relay, edge (and the load generator)
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    time.sleep(0.5)
    left = [p for p in seen if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes left after SIGINT: {left}"
    assert demo.returncode != 0
