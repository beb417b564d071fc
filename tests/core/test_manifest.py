"""The manifest's bundle fields and its restriction to the cuts a board carries."""

import copy

import pytest

from partnner_tf.errors import ManifestError
from partnner_tf.manifest import manifest_from_dict
from partnner_tf.selector import make_selector
from partnner_tf.sim_world import synthetic_manifest


def _bundled(n_cuts, present):
    """A synthetic manifest as a bundle writes it: ``bundle.cuts`` and ``on_board: false``."""
    data = copy.deepcopy(synthetic_manifest(n_cuts).raw)
    data["bundle"] = {"board": "tight", "cuts": list(present)}
    for cut in data["cuts"]:
        if cut["id"] not in present:
            cut["on_board"] = False
    return manifest_from_dict(data)


def test_a_plain_manifest_has_every_cut_on_board():
    m = synthetic_manifest(5)
    assert m.board_cuts is None and m.on_board == (0, 1, 2, 3, 4)
    assert m.original_id(3) == 3 and m.local_id(3) == 3


def test_bundle_cuts_are_read_and_checked():
    m = _bundled(6, [0, 1, 2, 5])
    assert m.on_board == (0, 1, 2, 5)
    data = copy.deepcopy(m.raw)
    data["bundle"]["cuts"] = [0, 1, 3]  # cut 3 is marked on_board: false
    with pytest.raises(ManifestError, match=r"lists cut\(s\) \[3\].*on_board: false"):
        manifest_from_dict(data)
    data["bundle"]["cuts"] = [0, 9]
    with pytest.raises(ManifestError, match=r"bundle.cuts: expected a list of cut ids 0..5, received \[0, 9\]"):
        manifest_from_dict(data)


def test_restricted_renumbers_and_maps_back():
    m = _bundled(6, [0, 1, 2, 5])
    r = m.restricted(m.on_board)
    assert [c.id for c in r.cuts] == [0, 1, 2, 3]
    assert r.original_ids == (0, 1, 2, 5)
    assert r.cloud_only == 0 and r.edge_only == 3 and m.edge_only == 5
    for local, original in enumerate(r.original_ids):
        assert r.original_id(local) == original and r.local_id(original) == local
        assert r.cuts[local].boundary_bytes == m.cuts[original].boundary_bytes
        assert r.cuts[local].prefix_macs == m.cuts[original].prefix_macs
    assert [c["id"] for c in r.raw["cuts"]] == [0, 1, 2, 3] and "bundle" not in r.raw
    with pytest.raises(ManifestError, match=r"cut 4 was left out; the cuts here are \[0, 1, 2, 5\]"):
        r.local_id(4)
    # Restricting again composes the mappings.
    rr = r.restricted([0, 3])
    assert rr.original_ids == (0, 5) and rr.edge_only == 1
    with pytest.raises(ManifestError, match="needs at least one cut"):
        m.restricted([])
    with pytest.raises(ManifestError, match="cuts 0..5; received cut=7"):
        m.restricted([0, 7])


def test_a_selector_over_the_restricted_manifest_never_sees_the_cuts_left_out():
    m = _bundled(8, [0, 1, 2, 7])
    r = m.restricted(m.on_board)
    assert make_selector("edge", r).choose() == r.edge_only == 3
    assert make_selector("cloud", r).choose() == 0
    sel = make_selector("partnner", r)
    assert 0 <= sel.choose() < len(r.cuts)
