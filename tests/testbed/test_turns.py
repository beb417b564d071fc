"""Runs in turns: each process's link time runs only in its own turns, and a turn does not end
while the cloud link is down (the runtime's probe pings in wall time)."""

from partnner_tf.manifest import load_manifest
from partnner_tf.testbed.bench import resolve_link
from partnner_tf.testbed.session import run_in_turns

#: Link seconds: the uplink all but dies at 0.05 s and comes back at 1.3 s.
DIES, RETURNS = 0.05, 1.3


def test_a_turn_goes_on_while_the_link_is_down_so_the_probe_finds_it_back(converted_tiny, tmp_path):
    from partnner_tf.runtime.cloud.spawn import start_daemon

    out = converted_tiny("chain")
    edge_cut = load_manifest(out).edge_only
    link = resolve_link(f"steps:0=50e6,{DIES}=1e3,{RETURNS}=50e6|const:50e6|1")
    # Two slow edge-only processes take turns of 0.5 s beside the cloud-only one: longer than a
    # ping's timeout, so a probe that had to wait for its process's next turn would miss.
    slow = {"cpus": 1, "quota": 0.0003}
    # The cloud-only process runs for link time past the link's return, not for a number of
    # frames: its edge-only frames take ~1 ms here, and 200 of them ended at 1.26 s of link time,
    # before the link came back.
    cloud = dict(frames=100_000, duration_s=RETURNS + 0.7, emulation={"cpus": 1, "quota": 0.01})
    with start_daemon([out]) as daemon:
        specs = {name: dict(out=out, policy=name.split("_")[0], log_path=tmp_path / f"{name}.jsonl",
                            daemon_endpoint=daemon.endpoint, link=link,
                            **(cloud if name == "cloud" else dict(frames=16, emulation=slow)))
                 for name in ("cloud", "edge_a", "edge_b")}
        got = run_in_turns(specs)
    frames = got["cloud"]
    assert not isinstance(frames, Exception), frames
    timeouts = [i for i, f in enumerate(frames) if f["fallback"] and f["cut"] != edge_cut]
    assert timeouts, "the cloud request across the dead link should have timed out"
    t = timeouts[0]
    back = next((i for i in range(t + 1, len(frames)) if not frames[i]["fallback"]), None)
    assert back is not None, "the cloud link was never found up again"
    # While the link is down every frame runs edge-only; the first one back in the cloud comes
    # soon after the link's rate returns (a ping queued behind the abandoned payload, answered
    # once it drains), in link time, which runs only in this process's turns ("wall").
    assert all(f["cut"] == edge_cut for f in frames[t + 1:back])
    assert back - t > 3
    assert RETURNS <= frames[back]["wall"] < RETURNS + 0.3, frames[back]["wall"]
    assert len(got["edge_a"]) == len(got["edge_b"]) == 16
