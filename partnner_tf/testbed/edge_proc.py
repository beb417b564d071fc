"""The testbed's edge process: set up uncapped, get capped like the board, wait for "go", run frames.

Start-up (imports, loading and warming prefixes) is not what a board is measured on, and under a
5% CPU cap it would take minutes; so the process prints a JSON ready line once it is ready, the
orchestrator moves it into its cgroup and core set, and it starts the first frame when that writes a line
on its stdin (the link's and the load's clocks restart at that moment too). Each frame becomes a
JSON line with the fields of ``partnner edge run --log`` plus ``wall`` (seconds since "go").
"""

import argparse
import json
import os
import sys
import time

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


def _dilate(factor):
    """Make every prefix run ``factor`` times as long as it takes here, like a slower CPU would:
    the real interpreter runs, then the process sleeps for the difference.

    The run's length is the calling thread's CPU time (it works in the interpreter's thread pool
    throughout), not wall time: on this shared host the cloud daemon and its load compete for the
    same cores, and a board's CPU does not slow down when the cloud gets busy.
    """
    from partnner_tf.runtime.interpreter import Prefix

    run = Prefix.run

    def slow_run(self, inputs):
        t, c = time.perf_counter(), time.thread_time()
        out = run(self, inputs)
        wall, cpu = time.perf_counter() - t, time.thread_time() - c
        time.sleep(max(factor * min(cpu, wall) - wall, 0.0))
        return out

    Prefix.run = slow_run


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration-s", type=float, default=0.0, help="stop after this long (0: run every frame)")
    a = p.parse_args(argv)

    from partnner_tf.runtime.edge import EdgeRuntime

    cloud = None if a.cloud in ("", "none") else a.cloud
    options = {"profile": a.profile} if a.profile else None
    budget = {"budget_bytes": int(a.budget_mb * 2**20)} if a.budget_mb else {}
    runtime = EdgeRuntime(a.out, cloud=cloud, selector=a.policy, threads=a.threads,
                          deadline_s=a.deadline, selector_options=options, **budget)
    spec = runtime.manifest.input
    shape = tuple(int(d) if d else 1 for d in spec.shape)
    rng = np.random.default_rng(a.seed)
    frames = [rng.random(shape).astype(spec.dtype) for _ in range(4)]
    _preload(runtime, a.policy)
    _join_cgroup(a.cgroup, a.cpus)
    if a.slowdown > 1.0:
        _dilate(a.slowdown)
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    with runtime, open(a.log, "w", encoding="utf-8") as log:
        return _serve(runtime, frames, a, log)


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


def _serve(runtime, frames, a, log):
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
            r = runtime.infer(frames[done % len(frames)])
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
