"""Partial bundles: the cuts that do not fit are left out, and the runtime runs on the others alone."""

import json
import tarfile

import numpy as np
import pytest

from partnner_tf.boards import get_board
from partnner_tf.boards.bundle import make_bundle
from partnner_tf.errors import BoardFitError, PartnnerError
from partnner_tf.manifest import load_manifest, manifest_from_dict
from tests.boards.test_bundle import _members


def _tight_board(tiny_out):
    """generic-x86_64 with a memory budget that leaves out the heavier middle cuts (and keeps edge-only)."""
    import dataclasses

    from partnner_tf.boards.fit import fit_model

    full = fit_model(tiny_out, "generic-x86_64")
    edge = load_manifest(tiny_out).edge_only
    mems = sorted({c.memory_mb for c in full.cuts if c.cut in full.edge_cuts and c.cut != edge})
    assert len(mems) > 1
    return dataclasses.replace(get_board("generic-x86_64"), name="x86-tight", memory_mb=(mems[0] + mems[-1]) / 2)


def test_partial_bundle_marks_cuts_left_out(tiny_out, built_wheel, wheel_cache, tmp_path):
    from partnner_tf.boards.fit import fit_model

    board = _tight_board(tiny_out)
    full, fit = fit_model(tiny_out, "generic-x86_64"), fit_model(tiny_out, board)
    m = load_manifest(tiny_out)
    assert 0 < len(fit.edge_cuts) < len(full.edge_cuts) and m.edge_only in fit.edge_cuts
    left_out = sorted(set(full.fitting) - set(fit.fitting))
    # Each needs the edge-only model loaded beside it (the runtime's fallback): that is what overflows.
    assert all("with the edge-only model loaded beside it" in fit.cuts[c].reasons[0] for c in left_out)
    with pytest.raises(BoardFitError, match=f"runs cut {left_out[0]}, which does not fit"):
        make_bundle(tiny_out, board, tmp_path / "p.tar.gz", policy=f"fixed:{left_out[0]}", wheel=built_wheel,
                    cache=wheel_cache)
    r = make_bundle(tiny_out, board, tmp_path / "p.tar.gz", policy="partnner", wheel=built_wheel, cache=wheel_cache)
    members = _members(r.path)
    top = "partnner-tiny_chain-x86-tight"
    bm = json.loads(members[f"{top}/model/manifest.json"][1])
    assert bm["bundle"]["cuts"] == fit.fitting == r.cuts
    for cut in bm["cuts"]:
        present = cut["id"] in fit.fitting
        assert cut.get("on_board", True) is present
        if cut["prefix"]:
            assert (f"{top}/model/{cut['prefix']}" in members) is present
    assert manifest_from_dict(bm).cuts == m.cuts  # ids and fields unchanged: the cloud's cut ids


def test_a_bundle_without_room_for_the_edge_only_model_is_refused(tiny_out, built_wheel, wheel_cache, tmp_path):
    import dataclasses

    from partnner_tf.boards.fit import fit_model

    edge = load_manifest(tiny_out).edge_only
    need = fit_model(tiny_out, "generic-x86_64").cuts[edge].memory_mb
    board = dataclasses.replace(get_board("generic-x86_64"), name="x86-starved", memory_mb=need - 0.001)
    fit = fit_model(tiny_out, board)
    assert fit.fitting == []  # even cut 1, lighter than the whole model, needs it beside it
    with pytest.raises(BoardFitError, match="no cut with an edge prefix fits"):
        make_bundle(tiny_out, board, tmp_path / "s.tar.gz", wheel=built_wheel, cache=wheel_cache)
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def tight_model(tiny_out, built_wheel, wheel_cache, tmp_path_factory):
    """The partial bundle of the tiny model (heavy middle cuts left out), unpacked: its model/ folder."""
    board = _tight_board(tiny_out)
    d = tmp_path_factory.mktemp("tight")
    r = make_bundle(tiny_out, board, d / "tight.tar.gz", policy="partnner", wheel=built_wheel, cache=wheel_cache)
    with tarfile.open(r.path, "r:gz") as tar:
        tar.extractall(d / "unpacked", filter="tar")
    return d / "unpacked" / "partnner-tiny_chain-x86-tight" / "model", r.cuts


def test_the_runtime_runs_a_partial_bundle_on_its_cuts_alone(tight_model, tiny_out, tmp_path):
    from partnner_tf.runtime.cloud.spawn import start_daemon
    from partnner_tf.runtime.edge import EdgeRuntime
    from partnner_tf.runtime.onboard import OnBoard
    from tests.runtime.edge_fixtures import assert_matches, keras_reference

    model, bundled = tight_model
    m = load_manifest(model)
    left_out = [c.id for c in m.cuts if c.id not in bundled]
    assert left_out and all(not (model / m.cuts[c].prefix).exists() for c in left_out)
    x = np.random.default_rng(2).random((24, *m.input.shape[1:]), dtype=np.float32)
    ref = keras_reference(tiny_out, x)
    # A profile of every cut (as `partnner profile` writes) where the cuts left out look free:
    # neurosurgeon over the whole manifest would choose them at once.
    cheap = [0.0 if c.id in left_out else 1.0 for c in m.cuts]
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"edge": {"cut_s": cheap}, "cloud": {"cut_s": cheap}}))
    policies = ["partnner", "neurosurgeon", "cloud", "edge"] + [f"fixed:{c}" for c in bundled]
    with start_daemon([tiny_out]) as d:  # the cloud has every cut, under the same ids
        for policy in policies:
            with EdgeRuntime(model, cloud=d.endpoint, selector=policy, prefetch_radius=len(m.cuts),
                             selector_options={"profile": str(profile)} if policy == "neurosurgeon" else None) as rt:
                assert isinstance(rt.selector, OnBoard) and set(rt.files) == set(bundled) - {0}
                results = list(rt.stream(x))
                loaded = rt.cache.loaded()
            for i, r in enumerate(results):
                assert not r.fallback, (policy, r.error)
                assert r.cut in bundled and r.chosen in (None, *bundled), (policy, r.cut, r.chosen)
                assert_matches(r, ref, i)
            assert set(loaded) <= set(bundled)
            if policy.startswith("fixed:"):
                assert {r.cut for r in results} == {int(policy[6:])}  # ids are the cloud's, not renumbered
        # A selector object of the caller's choosing that picks a cut left out is refused, by name.
        class Wrong:
            def choose(self):
                return left_out[0]

            def observe(self, obs):
                pass

        with EdgeRuntime(model, cloud=d.endpoint, selector=Wrong()) as rt:
            with pytest.raises(PartnnerError, match=f"chose cut {left_out[0]}, which is not on this board"):
                rt.infer(x[0])
    with pytest.raises(PartnnerError, match=rf"fixed:{left_out[0]}'?: cut {left_out[0]} is not on this board; "
                                            rf"the bundled cuts are \[{', '.join(map(str, bundled))}\]"):
        EdgeRuntime(model, cloud="tcp://127.0.0.1:9", selector=f"fixed:{left_out[0]}")


def test_a_partial_bundle_verifies_the_prefixes_it_carries(tight_model, tmp_path):
    import shutil

    from partnner_tf.errors import ManifestError
    from partnner_tf.runtime.edge import EdgeRuntime

    model, bundled = tight_model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    victim = copy / load_manifest(copy).cuts[bundled[1]].prefix
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=f"{victim.name}: sha256 differs"):
        EdgeRuntime(copy, selector="edge")
    # A bundle that claims the edge-only cut but lost its file is named as such too.
    victim.write_bytes(model.joinpath(victim.relative_to(copy)).read_bytes())
    edge = load_manifest(copy).cuts[load_manifest(copy).edge_only]
    (copy / edge.prefix).unlink()
    with pytest.raises(ManifestError, match=f"{edge.prefix}: missing"):
        EdgeRuntime(copy, selector="edge")
