"""Cut points, MAC counts and cut selection."""

import pytest

from partnner_tf.converters.cuts import CutPoint, Graph, cut_points, layer_macs, select_cuts
from partnner_tf.converters.loading import load
from partnner_tf.errors import ConversionError
from tests.models import EXPECTED_CUTS, KINDS, get_model, nested_model


def _points(model):
    functional, _ = load(model)
    return cut_points(Graph(functional))


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_cut_points(kind):
    points = _points(get_model(kind))
    assert points[0].layer is None and points[0].position == -1
    assert points[-1].layer is None and points[-1].shape is None and points[-1].suffix_macs == 0
    assert [p.layer for p in points[1:-1]] == EXPECTED_CUTS[kind]
    total = points[-1].prefix_macs
    assert total > 0
    for p in points:
        assert p.prefix_macs + p.suffix_macs == total
        assert sum(p.prefix_by_kind.values()) + sum(p.suffix_by_kind.values()) == total
    assert [p.prefix_macs for p in points] == sorted(p.prefix_macs for p in points)


@pytest.mark.parametrize("name,count", [("MobileNetV2", 74), ("ResNet50", 39)])
def test_applications_cut_counts(name, count):
    import keras

    model = getattr(keras.applications, name)(weights=None, input_shape=(64, 64, 3))
    assert len(cut_points(Graph(model))) - 2 == count


def test_mobilenet_macs_match_published_figure():
    import keras

    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    conv = sum(v for k, v in cut_points(Graph(model))[-1].prefix_by_kind.items() if k != "elementwise")
    # The MobileNetV2 paper gives 300 M multiply-adds at 224x224 (conv + dense only).
    assert 290e6 < conv < 310e6


def test_layer_macs_known_values():
    import keras

    conv = keras.layers.Conv2D(8, 3, padding="same")
    assert layer_macs(conv, [(None, 10, 10, 4)], [(None, 10, 10, 8)]) == ("conv", 10 * 10 * 8 * 9 * 4)
    dense = keras.layers.Dense(7)
    assert layer_macs(dense, [(None, 5)], [(None, 7)]) == ("dense", 35)
    dw = keras.layers.DepthwiseConv2D(3)
    assert layer_macs(dw, [(None, 6, 6, 4)], [(None, 4, 4, 4)]) == ("depthwise", 4 * 4 * 4 * 9)
    assert layer_macs(keras.layers.ReLU(), [(None, 3, 3)], [(None, 3, 3)]) == ("elementwise", 9)
    assert layer_macs(keras.layers.Flatten(), [(None, 3, 3)], [(None, 9)]) == (None, 0)


def test_nested_model_is_flattened_and_cut_inside():
    points = _points(nested_model())
    assert [p.layer for p in points[1:-1]] == ["bb_conv1", "bb_conv2", "gap"]


def _fake(sizes):
    """Cut points with the given boundary sizes (in float32 elements) between cloud and edge."""
    pts = [CutPoint(None, -1, (1, sizes[0]), "float32", 0, 10)]
    pts += [CutPoint(f"l{i}", i, (1, s), "float32", i, 10 - i) for i, s in enumerate(sizes[1:], 1)]
    pts.append(CutPoint(None, len(sizes), None, "float32", 10, 0))
    return pts


def test_pareto_keeps_strictly_shrinking_boundaries():
    pts = _fake([100, 120, 50, 50, 80, 20, 30])
    chosen = select_cuts(pts, "pareto")
    assert [p.layer for p in chosen] == [None, "l2", "l5", None]
    assert chosen[0] is pts[0] and chosen[-1] is pts[-1]


def test_all_and_names():
    pts = _fake([100, 120, 50, 50])
    assert select_cuts(pts, "all") == pts
    assert [p.layer for p in select_cuts(pts, "l3,l1")] == [None, "l1", "l3", None]
    assert [p.layer for p in select_cuts(pts, ["l2"])] == [None, "l2", None]


def test_unknown_cut_name_lists_valid_ones():
    with pytest.raises(ConversionError, match=r"\['nope'\].*Valid cut layers: l1, l2"):
        select_cuts(_fake([10, 5, 3]), "l1,nope")
    with pytest.raises(ConversionError, match="expected 'pareto', 'all' or layer names"):
        select_cuts(_fake([10, 5]), " , ")


def test_layer_inside_a_branch_is_not_a_cut():
    points = _points(get_model("residual"))
    with pytest.raises(ConversionError, match="res_a"):
        select_cuts(points, ["res_a"])
