"""Small synthetic worlds with known best cuts, shared by the selector and simulator tests."""

from partnner_tf.sim_world import make_world, synthetic_manifest, synthetic_profile
from partnner_tf.traces import constant, steps


def world(n_cuts=30, seed=0, uplink=None, **kw):
    """A synthetic model and profile; ``kw`` as for :func:`make_world`."""
    m = synthetic_manifest(n_cuts, seed=seed)
    prof = synthetic_profile(m, seed=seed)
    kw.setdefault("edge_factor", 20.0)
    kw.setdefault("cloud_speedup", 5.0)
    kw.setdefault("rtt_s", 0.02)
    return make_world(prof, uplink=uplink or constant(50e6), name=f"test{n_cuts}", **kw)


__all__ = ["world", "constant", "steps"]
