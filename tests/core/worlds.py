"""Small synthetic worlds with known best cuts, shared by the selector and simulator tests."""

from partnner_tf.sim_world import make_world, manifest_from_table, synthetic_manifest, synthetic_profile
from partnner_tf.traces import constant, steps


def world(n_cuts=30, seed=0, uplink=None, **kw):
    """A synthetic model and profile; ``kw`` as for :func:`make_world`."""
    m = synthetic_manifest(n_cuts, seed=seed)
    prof = synthetic_profile(m, seed=seed)
    kw.setdefault("edge_factor", 20.0)
    kw.setdefault("cloud_speedup", 5.0)
    kw.setdefault("rtt_s", 0.02)
    return make_world(prof, uplink=uplink or constant(50e6), name=f"test{n_cuts}", **kw)


def table_world(name, cuts, edge_s, cloud_s, **kw):
    """A world from a hand-written cut table: ``cuts`` as (boundary bytes, prefix MACs, suffix
    MACs) per cut, with each cut's edge and cloud seconds; ``kw`` as for :func:`make_world`."""
    table = [{"boundary_bytes": b, "prefix_macs": p, "suffix_macs": s} for b, p, s in cuts]
    profile = {"format": "partnner-profile", "version": 1, "model": name, "cuts": table,
               "edge": {"threads": 1, "cut_s": list(edge_s)}, "cloud": {"cut_s": list(cloud_s)}}
    return make_world(profile, manifest_from_table(name, table), name=name, **kw)


__all__ = ["world", "table_world", "constant", "steps"]
