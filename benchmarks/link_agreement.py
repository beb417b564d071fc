"""The two link modes, user-space relay and tc in a namespace, on the same trace piece: do they agree?

    sudo .venv/bin/python benchmarks/link_agreement.py [--trace ../shared/traces/Verizon-LTE-short.up]
        [--offset-s 20] [--duration-s 40]

A bulk TCP sender pushes as fast as it can for the duration through each mode in turn; a sink
counts the bytes delivered per second. Prints the trace's mean over the piece, each mode's
delivered mean, their ratio (goal: within 10%) and the per-second agreement, and writes
benchmarks/results/link_agreement.md. The tc mode needs root; without it only the relay runs.
"""

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from partnner_tf.errors import EmulationError
from partnner_tf.testbed.link import LinkProcess, parse_schedule
from partnner_tf.testbed.procs import terminate, spawn

HERE = Path(__file__).resolve().parent
DEFAULT_TRACE = HERE.parent.parent / "shared" / "traces" / "Verizon-LTE-short.up"

SENDER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
buf = b"x" * 65536
end = time.monotonic() + float(sys.argv[3])
s.settimeout(0.2)
while time.monotonic() < end:
    try:
        s.send(buf)
    except socket.timeout:
        pass
s.close()
"""


class Sink:
    """Accepts one connection and records (time, bytes) of everything received."""

    def __init__(self, host):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.t_first = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        conn, _ = self.sock.accept()
        self.t_first = time.monotonic()
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            self.got.append((time.monotonic(), len(data)))

    def per_second(self, t0, duration):
        out = np.zeros(int(duration))
        for t, n in self.got:
            k = int(t - t0)
            if 0 <= k < len(out):
                out[k] += n
        return out * 8.0


def run_relay(trace, offset, duration):
    sink = Sink("127.0.0.1")
    with LinkProcess(f"tcp://127.0.0.1:{sink.port}", trace, "const:1e9", offset_s=offset) as link:
        t0 = time.monotonic()
        proc = spawn([sys.executable, "-c", SENDER, "127.0.0.1", str(link.port), str(duration)])
        proc.wait(duration + 30)
        time.sleep(0.5)
        terminate(proc)
    return sink.per_second(t0, duration)


def run_tc(trace, offset, duration):
    from partnner_tf.testbed.tc import TcLink

    with TcLink(trace, "const:1e9", offset_s=offset) as link:
        sink = Sink(link.host_addr)
        link.start()
        t0 = time.monotonic()
        proc = spawn(link.exec_prefix + [sys.executable, "-c", SENDER, link.host_addr, str(sink.port), str(duration)])
        proc.wait(duration + 30)
        time.sleep(0.5)
        terminate(proc)
    return sink.per_second(t0, duration)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trace", default=str(DEFAULT_TRACE))
    p.add_argument("--offset-s", type=float, default=20.0)
    p.add_argument("--duration-s", type=float, default=40.0)
    p.add_argument("--out", default=str(HERE / "results" / "link_agreement.md"))
    a = p.parse_args()
    from partnner_tf.testbed.procs import install_handlers

    install_handlers()  # SIGTERM, like Ctrl-C, ends the processes this benchmark started
    sched = parse_schedule(a.trace)
    expected = np.array([sched.rate_bps(a.offset_s + k, 1.0) for k in range(int(a.duration_s))])
    relay = run_relay(a.trace, a.offset_s, a.duration_s)
    try:
        tc = run_tc(a.trace, a.offset_s, a.duration_s)
        tc_note = ""
    except EmulationError as exc:
        tc, tc_note = None, str(exc)
    # Skip the first second: TCP slow start is not the link's doing.
    sl = slice(1, None)
    rows = [("trace (opportunities x 1500 B)", expected)]
    rows.append(("relay (user space)", relay))
    if tc is not None:
        rows.append(("tc tbf in a namespace", tc))
    lines = [
        "# Link modes: delivered throughput on the same trace piece",
        "",
        f"Command: `sudo .venv/bin/python benchmarks/link_agreement.py --trace {Path(a.trace).name} "
        f"--offset-s {a.offset_s:g} --duration-s {a.duration_s:g}`",
        "",
        f"Trace {Path(a.trace).name}, {a.duration_s:g} s from {a.offset_s:g} s; one bulk TCP flow; "
        "first second (slow start) excluded.",
        "",
        "| source | mean Mbit/s | vs trace | per-second mean abs. error vs trace |",
        "|---|---|---|---|",
    ]
    for name, series in rows:
        mean = series[sl].mean()
        err = np.mean(np.abs(series[sl] - expected[sl])) / max(expected[sl].mean(), 1)
        lines.append(f"| {name} | {mean / 1e6:.3f} | {mean / expected[sl].mean():.3f} | {err:.1%} |")
    if tc is not None:
        ratio = tc[sl].mean() / relay[sl].mean()
        lines += ["", f"**tc / relay delivered throughput: {ratio:.3f}** (goal: within 10%, "
                  f"{'met' if abs(ratio - 1) <= 0.10 else 'NOT met'})."]
    else:
        lines += ["", f"tc mode not run: {tc_note}"]
    lines += ["", "Per second (Mbit/s): " + ", ".join(
        f"{k}: {expected[k] / 1e6:.2f}/{relay[k] / 1e6:.2f}" + (f"/{tc[k] / 1e6:.2f}" if tc is not None else "")
        for k in range(len(expected))) + " (trace/relay" + ("/tc)" if tc is not None else ")")]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
