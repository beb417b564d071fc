"""The testbed's edge process: set up uncapped, get capped like the board, wait for "go", run frames.

Start-up (imports, loading and warming prefixes) is not what a board is measured on, and under a
5% CPU cap it would take minutes; so the process prints a JSON ready line once it is ready, the
orchestrator moves it into its cgroup and core set, and it starts the first frame when that writes a line
on its stdin (the link's and the load's clocks restart at that moment too). Each frame becomes a
JSON line with the fields of ``partnner edge run --log`` plus ``wall`` (seconds since "go").
"""

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import replace

import numpy as np


def _join_cgroup(path, cpus):
    """Move this whole process (every thread) into the cgroup and onto the first ``cpus`` cores."""
    if path:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    if cpus:
        allowed = set(range(int(cpus)))
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), allowed)
            except OSError:
                pass  # a thread that just exited


class Dilation:
    """Make this process as slow as a board ``factor`` times slower than this host: every prefix
    run takes ``factor`` times as long as it does here (the real interpreter runs, then the
    process sleeps for the difference). With ``frame_work``, so does the rest of each frame's work
    in the frame thread (the runtime around the interpreter and the selector, which a board runs
    as slowly as it runs the model, or about: its Python may be less far behind this host's than
    its neural-network kernels are), slept after the frame and added to its latency.

    Lengths are the thread's CPU time, not wall time: on this shared host the cloud daemon and
    its load compete for the same cores, and a board's CPU does not slow down when the cloud
    gets busy. A sleep here overshoots (0.12-0.2 ms at the median on this KVM guest) and costs
    the thread 50-90 us of CPU time: the overshoot is carried over as credit, so that the mean
    is right, and the sleep's own CPU time is not charged as the frame's work.

    A run's CPU time still moves with the host (a shared core's caches, a vCPU the hypervisor
    stalls): runs of 1.5-5.4x the run's median came 1-5 times a run in 39 of the paper table's
    90 edge-only runs, and stretched by a slow board's factor (19x) one such run cost a frame
    1.45 s more. A board's CPU is its own, so a run is stretched from at most HICCUP times the median
    of the prefix's last USUAL_RUNS runs, the warm-up runs before the clock starts included
    (``priming``): a run of edge-only may come once, after a hedge, 30 frames into a stream.
    """

    #: The frame work owed is slept once it reaches this.
    MIN_SLEEP_S = 2e-4
    #: A prefix run is stretched from at most this many times its usual CPU time on this host ...
    HICCUP = 1.5
    #: ... the median of its last this many runs (none before the third).
    USUAL_RUNS = 9

    def __init__(self, factor, frame_work=False):
        from partnner_tf.runtime.interpreter import Prefix

        self.factor = float(factor)
        self.frame_work = frame_work
        self.owed_s = 0.0  # frame work owed (negative: a sleep's overshoot, lent to the next)
        self._main = threading.get_ident()
        self._not_work = 0.0  # the frame thread's CPU time in prefix runs and sleeps
        self._prefix_owed = threading.local()  # each thread's prefix runs' account
        self._runs = weakref.WeakKeyDictionary()  # per prefix: its last runs' CPU time here
        self._priming = False  # runs are counted, not stretched (priming())
        self._run = run = Prefix.run

        def slow_run(prefix, inputs):
            t, c = time.perf_counter(), time.thread_time()
            out = run(prefix, inputs)
            wall, cpu = time.perf_counter() - t, time.thread_time() - c
            usual = self._usual(prefix, min(cpu, wall))
            if self._priming:
                return out
            owed = getattr(self._prefix_owed, "s", 0.0) + self.factor * usual - wall
            slept, sleep_cpu = self._sleep(owed)
            self._prefix_owed.s = owed - slept
            if threading.get_ident() == self._main:
                self._not_work += cpu + sleep_cpu
            return out

        Prefix.run = slow_run

    @contextlib.contextmanager
    def priming(self):
        """Prefix runs in this block (loading and warming, before the clock starts) take this
        host's time and count as their prefix's usual runs."""
        self._priming = True
        try:
            yield self
        finally:
            self._priming = False

    def _usual(self, prefix, run_s):
        """``run_s``, or HICCUP times the prefix's usual run if it took longer (see the class)."""
        runs = self._runs.get(prefix)
        if runs is None:
            runs = self._runs.setdefault(prefix, deque(maxlen=self.USUAL_RUNS))
        usual = statistics.median(runs) if len(runs) >= 3 else math.inf
        runs.append(run_s)
        return min(run_s, self.HICCUP * usual)

    @staticmethod
    def _sleep(seconds):
        """Sleep ``seconds`` if positive; returns (wall time slept, CPU time the sleep took)."""
        if seconds <= 0:
            return 0.0, 0.0
        t, c = time.perf_counter(), time.thread_time()
        time.sleep(seconds)
        return time.perf_counter() - t, time.thread_time() - c

    def close(self):
        """Let prefix runs take their own time again."""
        from partnner_tf.runtime.interpreter import Prefix

        Prefix.run = self._run

    def frame(self, infer, x):
        """``infer(x)``, with the frame thread's work outside prefix runs stretched too if asked."""
        if not self.frame_work:
            return infer(x)
        c, n = time.thread_time(), self._not_work
        result = infer(x)
        work = time.thread_time() - c - (self._not_work - n)
        self.owed_s += (self.factor - 1.0) * max(work, 0.0)
        if self.owed_s < self.MIN_SLEEP_S:
            return result
        slept, sleep_cpu = self._sleep(self.owed_s)
        self.owed_s -= slept
        self._not_work += sleep_cpu
        return replace(result, total_s=result.total_s + slept)


#: Runs of each preloaded prefix before the clock starts.
WARM_RUNS = 3


def _preload(runtime, policy):
    """Load, before the clock starts, the prefixes the policy will use (as many as the cache holds).

    A fixed policy needs its own cut only; an adaptive one gets the smallest prefixes first, up
    to the cache's budget, so its swaps cost what a warm cache costs and nothing is evicted.
    """
    if policy in ("edge", "cloud"):
        cuts = []
    else:
        cuts = runtime.preload([int(policy.split(":", 1)[1])] if policy.startswith("fixed:") else None)
    # A prefix's first runs after loading take up to 1.6x its usual time (caches, thread pool):
    # start-up, not what a board is measured on. Left in, one slow first edge-only frame
    # anchors the selector's edge-only estimate high for the whole short run.
    for cut in dict.fromkeys([runtime.edge_cut] + cuts):  # each once
        if runtime.cache.is_ready(cut):
            prefix = runtime.cache.get(cut)
            for _ in range(WARM_RUNS):
                prefix.warm()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("--cloud", default="none")
    p.add_argument("--policy", default="partnner")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--log", required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--budget-mb", type=float, default=None, help="prefix cache budget (the board's memory share)")
    p.add_argument("--profile", default=None)
    p.add_argument("--deadline", type=float, default=1.0)
    p.add_argument("--cgroup", default="")
    p.add_argument("--cpus", type=int, default=0)
    p.add_argument("--slowdown", type=float, default=1.0, help="stretch every prefix run this many times")
    p.add_argument("--stretch-frame-work", action="store_true", help="... and the rest of each frame's work too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-s", type=float, default=0.0, help="stop after this long (0: run every frame)")
    p.add_argument("--heartbeat-timeout-s", type=float, default=None,
                   help="the cloud client's heartbeat timeout (default: the client's)")
    a = p.parse_args(argv)

    from partnner_tf.client import CloudClient
    from partnner_tf.runtime.edge import EdgeRuntime, freeze_heap

    cloud = None if a.cloud in ("", "none") else a.cloud
    if cloud is not None and a.heartbeat_timeout_s:
        cloud = CloudClient(cloud, heartbeat_timeout_s=a.heartbeat_timeout_s)
    options = {"profile": a.profile} if a.profile else None
    budget = {"budget_bytes": int(a.budget_mb * 2**20)} if a.budget_mb else {}
    runtime = EdgeRuntime(a.out, cloud=cloud, selector=a.policy, threads=a.threads,
                          deadline_s=a.deadline, selector_options=options, **budget)
    spec = runtime.manifest.input
    shape = tuple(int(d) if d else 1 for d in spec.shape)
    rng = np.random.default_rng(a.seed)
    frames = [rng.random(shape).astype(spec.dtype) for _ in range(4)]
    dilation = Dilation(a.slowdown, frame_work=a.stretch_frame_work) if a.slowdown > 1.0 else None
    with dilation.priming() if dilation else contextlib.nullcontext():
        _preload(runtime, a.policy)
    freeze_heap()
    _join_cgroup(a.cgroup, a.cpus)
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    client = cloud if isinstance(cloud, CloudClient) else contextlib.nullcontext()
    with client, runtime, open(a.log, "w", encoding="utf-8") as log:
        return _serve(runtime, frames, a, log, dilation)


#: A turn goes on this long past its budget while the cloud link is down (see _turn_goes_on).
PROBE_WAIT_S = 10.0


def _turn_goes_on(runtime, ran, limit, elapsed_s, budget_s):
    """Whether a turn runs another frame: within its frames and seconds, or while the cloud link
    is down (for up to PROBE_WAIT_S more). The runtime's probe pings in wall time, and a link
    paused for another process's turn would answer none of them; alone, the frames would go on
    edge-only until one is answered, and so they do here."""
    if ran < limit and elapsed_s < budget_s:
        return True
    down = runtime.link is not None and not runtime.link.is_up
    return down and elapsed_s < budget_s + PROBE_WAIT_S


def _serve(runtime, frames, a, log, dilation=None):
    """Run frames as stdin says: "go" runs them all; "step K S" runs up to K frames or S seconds
    (longer while the cloud link is down), waits for any work still running beside them, and
    answers ``{"ran": n, "done": bool}``.

    Steps let the testbed run several edge processes in turns on one host, so that all of them
    see the same stretches of the host's speed; ``wall`` and ``--duration-s`` count the time of
    this process's own turns only.
    """
    done, active = 0, 0.0
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["go"]:
            limit, budget_s = a.frames, float("inf")
        elif words[:1] == ["step"] and len(words) == 3:
            limit, budget_s = int(words[1]), float(words[2])
        else:
            print(json.dumps({"error": f"expected 'go' or 'step K S', received {line.strip()!r}"}), flush=True)
            continue
        t0, ran = time.monotonic(), 0
        while done < a.frames and _turn_goes_on(runtime, ran, limit, time.monotonic() - t0, budget_s):
            if a.duration_s and active + time.monotonic() - t0 > a.duration_s:
                done = a.frames
                break
            x = frames[done % len(frames)]
            r = dilation.frame(runtime.infer, x) if dilation else runtime.infer(x)
            d = r.to_dict()
            d["wall"] = active + time.monotonic() - t0
            log.write(json.dumps(d) + "\n")
            log.flush()
            done += 1
            ran += 1
        runtime.settle()
        active += time.monotonic() - t0
        finished = done >= a.frames
        if words[0] == "go":
            return 0
        print(json.dumps({"ran": ran, "done": finished}), flush=True)
        if finished:
            return 0
    return 0 if done >= a.frames else 1


if __name__ == "__main__":
    sys.exit(main())
