"""Which cuts of a converted model can run on a board: memory, storage, accelerator, platform."""

import re
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from partnner_tf.boards.registry import get_board
from partnner_tf.errors import BoardFitError, ManifestError, MissingDependencyError
from partnner_tf.manifest import Manifest, load_manifest


MIB = 1 << 20
#: Resident memory of the edge service before any prefix is loaded: Python, numpy, pyzmq and
#: LiteRT imported measured 46 MB (RSS, x86_64, MEASURED.md's versions).
RUNTIME_BASE_MB = 48
#: A loaded prefix holds its flatbuffer and XNNPACK's repacked copy of the weights, plus about
#: 9 MB of interpreter and delegate state. Measured on MobileNetV2 224 prefixes (RSS after
#: allocate + 2 runs): 0.0/2.6/8.4/13.9 MB files took 16.2/21.5/33.1/42.8 MB; this model
#: (2 x file + arena + 10 MB) gives 17.2/22.4/34.0/44.4 MB.
WEIGHT_COPIES = 2
INTERPRETER_OVERHEAD_MB = 10
#: Disk taken by the installed venv (LiteRT 59 MB, numpy 45 MB, pillow, pyzmq, pip): ~150 MB.
RUNTIME_STORAGE_MB = 200
#: TFLite's arena planner packs tensors with some fragmentation over the live-set peak.
ARENA_SLACK = 1.25
#: Fallback when the Python minimum cannot be read from the installed distribution.
DEFAULT_REQUIRES_PYTHON = (3, 9)


@dataclass(frozen=True)
class PrefixStats:
    """What a prefix file needs, read from the flatbuffer without running it."""

    file_bytes: int
    arena_bytes: int
    input_dtypes: tuple
    output_dtypes: tuple
    float_ops: int

    @property
    def full_int8(self):
        """int8 in, int8 out and no float kernel inside: what the Edge TPU compiler accepts."""
        io = self.input_dtypes + self.output_dtypes
        return bool(io) and all(d in ("int8", "uint8") for d in io) and self.float_ops == 0


@dataclass
class CutFit:
    """One cut on one board: does it fit, what it needs, and why not."""

    cut: int
    layer: str
    fits: bool
    memory_mb: float
    storage_mb: float
    accelerated: bool = None
    reasons: list = field(default_factory=list)
    prefix_mb: float = 0.0  # this cut's own prefix, without the runtime or the edge-only model


@dataclass
class FitReport:
    """Every cut of a model on a board, plus problems of the platform itself."""

    board: object
    manifest: Manifest
    cuts: list
    platform_problems: list

    @property
    def fitting(self):
        """Ids of the cuts that can run (cut 0, cloud-only, included when it fits)."""
        return [c.cut for c in self.cuts if c.fits]

    @property
    def edge_cuts(self):
        """Fitting cuts that run a prefix on the board."""
        return [c.cut for c in self.cuts if c.fits and self.manifest.cuts[c.cut].prefix is not None]

    @property
    def all_loaded_mb(self):
        """Memory with every fitting prefix loaded at once (the runtime's prefix cache at its fullest)."""
        extra = sum(c.prefix_mb for c in self.cuts if c.fits and c.cut in self.edge_cuts)
        return round(RUNTIME_BASE_MB + self.manifest.input.nbytes / MIB + extra, 1)

    def check(self):
        """Raise :class:`BoardFitError` when the model cannot run on the board at all."""
        where = f"model {self.manifest.name!r} on board {self.board.name!r}"
        if self.platform_problems:
            raise BoardFitError(f"{where}: " + "; ".join(self.platform_problems))
        if not self.edge_cuts:
            why = "; ".join(
                f"cut {c.cut}: {', '.join(c.reasons)}" for c in self.cuts if not c.fits and c.reasons
            )
            raise BoardFitError(f"{where}: no cut with an edge prefix fits ({why})")
        return self


def prefix_stats(path):
    """Size, arena estimate and I/O dtypes of a TFLite file (LiteRT reads it; nothing runs).

    The arena estimate is the peak of live activation bytes over the ops in execution order
    (a tensor lives from the op making it to the last op reading it), with :data:`ARENA_SLACK`.
    """
    interp_mod = _interpreter_module()
    try:
        interp = interp_mod.Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise ManifestError(f"{path}: not a readable TFLite model ({exc})") from exc
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # public API has no op list; LiteRT and tflite-runtime both have this

    def nbytes(i):
        t = tensors.get(int(i))
        if t is None:
            return 0
        return int(np.prod(t["shape"], dtype=np.int64)) * np.dtype(t["dtype"]).itemsize

    inputs = [d["index"] for d in interp.get_input_details()]
    outputs = {d["index"] for d in interp.get_output_details()}
    produced = {int(o): k for k, op in enumerate(ops) for o in op["outputs"]}
    last_use = {}
    for k, op in enumerate(ops):
        for i in op["inputs"]:
            last_use[int(i)] = k
    activations = set(inputs) | set(produced)
    peak = sum(nbytes(i) for i in inputs)
    for k in range(len(ops)):
        live = sum(
            nbytes(t)
            for t in activations
            if produced.get(t, -1) <= k and (last_use.get(t, -1) >= k or t in outputs)
        )
        peak = max(peak, live)
    float_ops = sum(
        1 for op in ops if any(np.dtype(r) == np.float32 for r in op.get("result_types", ()))
    )
    return PrefixStats(
        file_bytes=path.stat().st_size,
        arena_bytes=int(peak * ARENA_SLACK),
        input_dtypes=tuple(np.dtype(d["dtype"]).name for d in interp.get_input_details()),
        output_dtypes=tuple(np.dtype(d["dtype"]).name for d in interp.get_output_details()),
        float_ops=float_ops,
    )


def _interpreter_module():
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return __import__(name, fromlist=["Interpreter"])
        except ImportError:
            continue
    raise MissingDependencyError(
        "fit needs a TFLite interpreter to read the prefixes; install it with: "
        "pip install 'partnner-tf[edge]'"
    )


def requires_python():
    """partnner-tf's minimum Python as (major, minor), from its installed metadata."""
    try:
        spec = metadata.metadata("partnner-tf").get("Requires-Python") or ""
    except metadata.PackageNotFoundError:
        spec = ""
    m = re.search(r">=\s*(\d+)\.(\d+)", spec)
    return (int(m.group(1)), int(m.group(2))) if m else DEFAULT_REQUIRES_PYTHON


def platform_problems(board):
    """Reasons the runtime cannot be installed on ``board`` at all (empty when it can)."""
    problems = []
    need = requires_python()
    have = tuple(int(p) for p in board.python.split("."))
    if have < need:
        problems.append(
            f"its Python {board.python} is older than partnner-tf's minimum "
            f"{need[0]}.{need[1]} ({board.os})"
        )
    if board.interpreter[0] != "ai-edge-litert":
        problems.append(
            f"its interpreter {board.interpreter[0]} {board.interpreter[1]} is not pip-installable "
            "beside partnner-tf[edge], which brings ai-edge-litert"
        )
    if not board.pip_platforms:
        problems.append(f"no manylinux wheels exist for glibc {board.glibc}")
    return problems


def _prefix_mb(stats):
    """Memory a loaded prefix adds to the runtime: its weights twice, its arena, interpreter state."""
    if stats is None:
        return 0.0
    return INTERPRETER_OVERHEAD_MB + (WEIGHT_COPIES * stats.file_bytes + stats.arena_bytes) / MIB


def _cut_fit(board, manifest, cut, stats, pinned_mb):
    """Fit of one cut; ``stats`` is None for the cloud-only cut.

    ``pinned_mb`` is the edge-only model's share, which the runtime keeps loaded beside any
    other cut for its fallback (0 for the edge-only cut itself).
    """
    layer = ",".join(cut.layers) or ("(input: cloud only)" if cut.prefix is None else "(whole model: edge only)")
    mem = RUNTIME_BASE_MB + pinned_mb + _prefix_mb(stats) + manifest.input.nbytes / MIB
    storage = RUNTIME_STORAGE_MB + (stats.file_bytes / MIB if stats is not None else 0.0)
    accel = stats.full_int8 if stats is not None and board.accelerator else None
    reasons = []
    if mem > board.memory_mb:
        beside = " with the edge-only model loaded beside it" if pinned_mb else ""
        reasons.append(f"needs {mem:.0f} MB of memory{beside}, the board's budget is {board.memory_mb} MB")
    if storage > board.storage_mb:
        reasons.append(f"needs {storage:.0f} MB of storage, the board's budget is {board.storage_mb} MB")
    if accel is False:
        reasons.append(
            f"runs on the CPU: the {board.accelerator} needs full {board.quantization} "
            f"(received {'/'.join(stats.input_dtypes)} in, {'/'.join(stats.output_dtypes)} out)"
        )
    fits = mem <= board.memory_mb and storage <= board.storage_mb
    return CutFit(cut.id, layer, fits, round(mem, 3), round(storage, 3), accel, reasons,
                  prefix_mb=round(_prefix_mb(stats), 3))


def fit_model(out, board, *, require_accelerator=False):
    """Fit every cut of the converted model at ``out`` (a folder or a loaded manifest) on ``board``.

    Args:
        out: a converted model's folder, its manifest path, or a loaded :class:`Manifest`.
        board: a board name or :class:`~partnner_tf.boards.base.Board`.
        require_accelerator: cuts the board's accelerator cannot run do not fit.

    Raises:
        UnknownBoardError, ManifestError: for a bad board name or manifest.
    """
    board = get_board(board)
    manifest = out if isinstance(out, Manifest) else load_manifest(out)
    stats, missing = {}, {}
    for cut in manifest.cuts:
        if cut.prefix is not None:
            path = manifest.path(cut.prefix)
            if path.is_file():
                stats[cut.id] = prefix_stats(path)
            else:
                missing[cut.id] = f"{cut.prefix} is missing"
    edge = manifest.edge_only
    pinned = _prefix_mb(stats.get(edge))
    rows = []
    for cut in manifest.cuts:
        if cut.id in missing:
            rows.append(CutFit(cut.id, ",".join(cut.layers), False, 0.0, 0.0, None, [missing[cut.id]]))
            continue
        row = _cut_fit(board, manifest, cut, stats.get(cut.id), 0.0 if cut.id == edge else pinned)
        if require_accelerator and row.accelerated is False:
            row.fits = False
        rows.append(row)
    _need_fallback(rows, edge)
    return FitReport(board, manifest, rows, platform_problems(board))


def _need_fallback(rows, edge):
    """No cut runs without the edge-only model: the runtime's fallback when the cloud fails."""
    if edge is None or rows[edge].fits:
        return
    for row in rows:
        if row.fits:
            row.fits = False
            row.reasons.append(f"the edge-only model (cut {edge}), which the runtime keeps loaded "
                               "for its fallback, does not fit")
