"""Single-tensor cut points of a Functional Keras model, their cost figures and cut selection."""

from dataclasses import dataclass, field

import numpy as np

from partnner_tf.errors import ConversionError

#: MAC kinds recorded per cut (``prefix_macs_by_kind`` / ``suffix_macs_by_kind``).
KINDS = ("conv", "depthwise", "dense", "elementwise")

_ELEMENTWISE = {
    "BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Activation", "Add", "Subtract", "Multiply",
    "Average", "Maximum", "Minimum", "Rescaling", "Normalization",
}
_POOLING = ("Pooling1D", "Pooling2D", "Pooling3D")


@dataclass
class CutPoint:
    """A place the model can be split: everything up to ``position`` runs on the edge.

    ``layer`` is None for the cloud-only cut (position -1) and for the edge-only cut
    (position = number of nodes - 1, no boundary).
    """

    layer: str
    position: int
    shape: tuple
    dtype: str
    prefix_macs: int
    suffix_macs: int
    prefix_by_kind: dict = field(default_factory=dict)
    suffix_by_kind: dict = field(default_factory=dict)

    @property
    def nbytes(self):
        if self.shape is None:
            return 0
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _dims(shape):
    """Shape without the batch axis, with unknown sizes as 1 (they only scale MAC estimates)."""
    return [int(d) if d is not None else 1 for d in tuple(shape)[1:]]


def _prod(values):
    return int(np.prod(values, dtype=np.int64)) if len(values) else 1


def layer_macs(layer, in_shapes, out_shapes):
    """Multiply-accumulates of one call of ``layer``, and which kind they are.

    Returns:
        (kind, macs): kind is one of :data:`KINDS`, or None for layers counted as free
        (reshapes, padding, concatenation, dropout...).
    """
    cls = type(layer).__name__
    if not in_shapes or not out_shapes:
        return None, 0
    ins, outs = _dims(in_shapes[0]), _dims(out_shapes[0])
    cfg = layer.get_config()
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        return "depthwise", _prod(outs) * _prod(cfg["kernel_size"])
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        # Counted as its two halves; the pointwise half dominates and is conv-like.
        depth = _prod(outs[:-1]) * ins[-1] * cfg["depth_multiplier"] * _prod(cfg["kernel_size"])
        point = _prod(outs[:-1]) * ins[-1] * cfg["depth_multiplier"] * outs[-1]
        return "conv", depth + point
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        groups = cfg.get("groups", 1) or 1
        return "conv", _prod(outs) * _prod(cfg["kernel_size"]) * ins[-1] // groups
    if cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return "conv", _prod(ins) * _prod(cfg["kernel_size"]) * outs[-1]
    if cls == "Dense" or cls == "EinsumDense":
        return "dense", _prod(outs) * ins[-1]
    if cls.endswith(_POOLING):
        return "elementwise", _prod(ins)
    if cls in _ELEMENTWISE:
        return "elementwise", _prod(outs)
    return None, 0


@dataclass
class _Node:
    layer: object
    inputs: list  # ids of input tensors
    outputs: list  # ids of output tensors
    out_tensors: list
    kind: str
    macs: int


class Graph:
    """The nodes of a Functional model in topological order, with liveness of their tensors."""

    def __init__(self, model):
        self.model = model
        self.input_id = id(model.inputs[0])
        self.output_ids = {id(t) for t in model.outputs}
        self.nodes = []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                layer = node.operation
                kind, macs = layer_macs(
                    layer,
                    [t.shape for t in node.input_tensors],
                    [t.shape for t in node.output_tensors],
                )
                self.nodes.append(
                    _Node(
                        layer=layer,
                        inputs=[id(t) for t in node.input_tensors],
                        outputs=[id(t) for t in node.output_tensors],
                        out_tensors=list(node.output_tensors),
                        kind=kind,
                        macs=macs,
                    )
                )
        self.calls = {}
        for n in self.nodes:
            self.calls[n.layer.name] = self.calls.get(n.layer.name, 0) + 1

    @property
    def total_macs(self):
        return sum(n.macs for n in self.nodes)

    def _last_use(self):
        last = {}
        for pos, n in enumerate(self.nodes):
            for t in n.inputs:
                last[t] = pos
        end = len(self.nodes)
        for t in self.output_ids:
            last[t] = end  # model outputs stay live to the end
        return last

    def live_after(self):
        """For each position, the ids of the tensors produced so far that are used later."""
        last = self._last_use()
        live = {self.input_id} if last.get(self.input_id, -1) >= 0 else set()
        result = []
        for pos, n in enumerate(self.nodes):
            live = {t for t in live if last.get(t, -1) > pos}
            live.update(t for t in n.outputs if last.get(t, -1) > pos)
            result.append(frozenset(live))
        return result


def _by_kind(nodes):
    totals = dict.fromkeys(KINDS, 0)
    for n in nodes:
        if n.kind:
            totals[n.kind] += n.macs
    return totals


def cut_points(graph):
    """Every cut of the model: cloud-only, each single-tensor cut, edge-only, in model order."""
    nodes = graph.nodes
    total = graph.total_macs
    inp = graph.model.inputs[0]
    points = [
        CutPoint(None, -1, (1, *_dims(inp.shape)), _dtype(inp), 0, total,
                 dict.fromkeys(KINDS, 0), _by_kind(nodes))
    ]
    running = 0
    for pos, (n, live) in enumerate(zip(nodes, graph.live_after())):
        running += n.macs
        if pos == len(nodes) - 1:
            break
        if len(n.outputs) != 1 or live != {n.outputs[0]} or n.outputs[0] in graph.output_ids:
            continue
        if graph.calls[n.layer.name] != 1:
            continue  # a shared layer has no single `.output` to cut at
        t = n.out_tensors[0]
        points.append(
            CutPoint(n.layer.name, pos, (1, *_dims(t.shape)), _dtype(t), running, total - running,
                     _by_kind(nodes[: pos + 1]), _by_kind(nodes[pos + 1:]))
        )
    points.append(
        CutPoint(None, len(nodes) - 1, None, "float32", total, 0, _by_kind(nodes),
                 dict.fromkeys(KINDS, 0))
    )
    return points


def _dtype(tensor):
    return np.dtype(getattr(tensor, "dtype", "float32") or "float32").name


def select_cuts(points, spec):
    """Pick the cuts to build from :func:`cut_points`.

    Args:
        points: all cut points, cloud-only first and edge-only last.
        spec: ``"pareto"`` (cloud-only, edge-only, and each cut whose boundary is smaller than
            every earlier cut's), ``"all"``, or a list (or comma-separated string) of layer names;
            cloud-only and edge-only are always kept.

    Raises:
        ConversionError: for an unknown spec or a layer that is not a cut point.
    """
    if spec == "all":
        return list(points)
    if spec == "pareto":
        kept, smallest = [points[0]], points[0].nbytes
        for p in points[1:-1]:
            if p.nbytes < smallest:
                kept.append(p)
                smallest = p.nbytes
        kept.append(points[-1])
        return kept
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise ConversionError(f"cuts: expected 'pareto', 'all' or layer names; received {spec!r}")
    by_name = {p.layer: p for p in points[1:-1]}
    bad = [n for n in names if n not in by_name]
    if bad:
        valid = ", ".join(by_name) or "(none)"
        raise ConversionError(
            f"cuts: {bad} are not single-tensor cut points of this model (a layer whose output is "
            f"the only tensor live across it). Valid cut layers: {valid}"
        )
    chosen = sorted({by_name[n].position: by_name[n] for n in names}.values(), key=lambda p: p.position)
    return [points[0], *chosen, points[-1]]
