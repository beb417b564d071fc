"""The manifest: one JSON file describing a converted model and every cut of it.

Loading needs neither TensorFlow nor the model files; hash checks are a separate step
(:func:`verify_files`). Only the fields named in ``REQUIRED_*`` must be present: outside tools
write manifests holding just those.
"""

import copy
import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from partnner_tf.constants import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
from partnner_tf.errors import ManifestError

REQUIRED_TOP = ("format", "version", "model", "cuts")
REQUIRED_MODEL = ("name", "file", "input")
REQUIRED_INPUT = ("name", "shape", "dtype")
REQUIRED_CUT = ("id", "layers", "prefix", "boundary_bytes", "prefix_macs", "suffix_macs")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (batch included) and dtype of one tensor; ``quant`` = (scale, zero_point)."""

    name: str
    shape: tuple
    dtype: str
    quant: tuple = None

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self):
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.quant is not None:
            d["quant"] = list(self.quant)
        return d


@dataclass(frozen=True)
class Cut:
    """One cut point: ``prefix`` runs on the edge, the rest of the model in the cloud."""

    id: int
    layers: tuple
    prefix: str
    boundary_bytes: int
    prefix_macs: int
    suffix_macs: int
    boundary: tuple = ()
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_cloud_only(self):
        return self.prefix is None

    @property
    def is_edge_only(self):
        return self.boundary_bytes == 0 and self.suffix_macs == 0


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest. ``root`` is the folder paths are relative to (None if built in memory).

    ``board_cuts``: in a board bundle, the ids of the cuts it carries (None: every cut).
    ``original_ids``: in a :meth:`restricted` manifest, the id each cut has in the manifest it
    was restricted from (None: the ids are the original ones).
    """

    name: str
    model_file: str
    input: TensorSpec
    cuts: tuple
    root: Path = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    board_cuts: tuple = None
    original_ids: tuple = None

    def path(self, relative):
        """Absolute path of a file named in the manifest."""
        if self.root is None:
            raise ManifestError("this manifest was not loaded from a folder; it has no files")
        return self.root / relative

    def cut(self, cut_id):
        if not isinstance(cut_id, (int, np.integer)) or not 0 <= cut_id < len(self.cuts):
            raise ManifestError(
                f"model {self.name!r} has cuts 0..{len(self.cuts) - 1}; received cut={cut_id!r}"
            )
        return self.cuts[cut_id]

    @property
    def edge_only(self):
        """Id of the edge-only cut (the whole model on the edge), or None."""
        return next((c.id for c in reversed(self.cuts) if c.is_edge_only), None)

    @property
    def cloud_only(self):
        """Id of the cloud-only cut (the raw input is sent), or None."""
        return next((c.id for c in self.cuts if c.is_cloud_only), None)

    @property
    def result_bytes(self):
        """Bytes of the model's outputs (what the cloud sends back), or None if not recorded."""
        outs = self.raw.get("model", {}).get("outputs")
        if not outs:
            return None
        return sum(TensorSpec(o["name"], tuple(d or 1 for d in o["shape"]), o["dtype"]).nbytes for o in outs)

    @property
    def on_board(self):
        """Ids of the cuts whose files are here: a bundle's ``bundle.cuts``, else every cut."""
        return self.board_cuts if self.board_cuts is not None else tuple(c.id for c in self.cuts)

    def restricted(self, cut_ids):
        """This manifest with only ``cut_ids``, renumbered 0..k-1 in order, for a selector.

        The cuts keep every field, so the cloud-only and edge-only cuts among them stay what
        they are. :meth:`original_id` maps a new id back (to the prefix file and the id the
        cloud daemon knows); :meth:`local_id` maps the other way.

        Raises:
            ManifestError: ``cut_ids`` is empty or names a cut this manifest does not have.
        """
        ids = sorted({int(self.cut(c).id) for c in cut_ids})
        if not ids:
            raise ManifestError(f"model {self.name!r}: a restricted manifest needs at least one cut")
        cuts = tuple(dataclasses.replace(self.cuts[c], id=i) for i, c in enumerate(ids))
        raw = copy.deepcopy(self.raw)
        if isinstance(raw.get("cuts"), list) and len(raw["cuts"]) == len(self.cuts):
            raw["cuts"] = [dict(raw["cuts"][c], id=i) for i, c in enumerate(ids)]
        raw.pop("bundle", None)
        return dataclasses.replace(self, cuts=cuts, raw=raw, board_cuts=None,
                                   original_ids=tuple(self.original_id(c) for c in ids))

    def original_id(self, cut_id):
        """The id cut ``cut_id`` has in the manifest this one was restricted from."""
        self.cut(cut_id)
        return int(cut_id) if self.original_ids is None else self.original_ids[cut_id]

    def local_id(self, original):
        """This manifest's id of the cut that had id ``original`` before restriction.

        Raises:
            ManifestError: that cut was left out.
        """
        if self.original_ids is None:
            return self.cut(original).id
        try:
            return self.original_ids.index(original)
        except ValueError:
            raise ManifestError(
                f"model {self.name!r}: cut {original!r} was left out; the cuts here are {list(self.original_ids)}"
            ) from None


def _need(d, keys, where):
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object, received {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ManifestError(f"{where}: missing required field(s) {missing}")


def _int(value, where, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ManifestError(f"{where}: expected an integer >= {minimum}, received {value!r}")
    return value


def _spec(d, where):
    _need(d, REQUIRED_INPUT, where)
    shape = d["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ManifestError(f"{where}.shape: expected a list of positive integers, received {shape!r}")
    try:
        dtype = np.dtype(d["dtype"]).name
    except TypeError as exc:
        raise ManifestError(f"{where}.dtype: unknown dtype {d['dtype']!r}") from exc
    quant = tuple(d["quant"]) if d.get("quant") is not None else None
    return TensorSpec(str(d["name"]), tuple(shape), dtype, quant)


def manifest_from_dict(data, root=None):
    """Validate a manifest dict and build a :class:`Manifest`.

    Raises:
        ManifestError: naming the first field that is missing or wrong.
    """
    _need(data, REQUIRED_TOP, "manifest")
    if data["format"] != MANIFEST_FORMAT:
        raise ManifestError(f"manifest.format: expected {MANIFEST_FORMAT!r}, received {data['format']!r}")
    if data["version"] != MANIFEST_VERSION:
        raise ManifestError(
            f"manifest.version: this partnner-tf reads version {MANIFEST_VERSION}, "
            f"received {data['version']!r}"
        )
    model = data["model"]
    _need(model, REQUIRED_MODEL, "manifest.model")
    inp = _spec(model["input"], "manifest.model.input")
    cuts_raw = data["cuts"]
    if not isinstance(cuts_raw, list) or len(cuts_raw) < 1:
        raise ManifestError("manifest.cuts: expected a non-empty list")
    cuts = []
    for i, c in enumerate(cuts_raw):
        where = f"manifest.cuts[{i}]"
        _need(c, REQUIRED_CUT, where)
        if c["id"] != i:
            raise ManifestError(f"{where}.id: cut ids must be 0..N in order; expected {i}, received {c['id']!r}")
        if not isinstance(c["layers"], list) or not all(isinstance(n, str) for n in c["layers"]):
            raise ManifestError(f"{where}.layers: expected a list of layer names, received {c['layers']!r}")
        if c["prefix"] is not None and not isinstance(c["prefix"], str):
            raise ManifestError(f"{where}.prefix: expected a path or null, received {c['prefix']!r}")
        boundary = tuple(_spec(b, f"{where}.boundary[{j}]") for j, b in enumerate(c.get("boundary") or []))
        known = set(REQUIRED_CUT) | {"boundary"}
        cuts.append(
            Cut(
                id=i,
                layers=tuple(c["layers"]),
                prefix=c["prefix"],
                boundary_bytes=_int(c["boundary_bytes"], f"{where}.boundary_bytes"),
                prefix_macs=_int(c["prefix_macs"], f"{where}.prefix_macs"),
                suffix_macs=_int(c["suffix_macs"], f"{where}.suffix_macs"),
                boundary=boundary,
                extra={k: v for k, v in c.items() if k not in known},
            )
        )
    return Manifest(
        name=str(model["name"]),
        model_file=str(model["file"]),
        input=inp,
        cuts=tuple(cuts),
        root=Path(root) if root is not None else None,
        raw=data,
        board_cuts=_board_cuts(data, cuts),
    )


def _board_cuts(data, cuts):
    """A bundle's ``bundle.cuts``, checked against the cuts it marks ``on_board: false``."""
    if "bundle" not in data:
        return None
    listed = data["bundle"].get("cuts") if isinstance(data["bundle"], dict) else None
    if not isinstance(listed, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(cuts) for c in listed
    ):
        raise ManifestError(
            f"manifest.bundle.cuts: expected a list of cut ids 0..{len(cuts) - 1}, received {listed!r}"
        )
    absent = {c.id for c in cuts if c.extra.get("on_board", True) is False}
    both = sorted(absent & set(listed))
    if both:
        raise ManifestError(f"manifest.bundle.cuts lists cut(s) {both}, which are marked on_board: false")
    return tuple(sorted(set(listed)))


def manifest_path(path):
    """``path`` itself if it names a file, else ``path/manifest.json``."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def load_manifest(path):
    """Load and validate ``OUT/manifest.json`` (or a folder holding one).

    Needs neither TensorFlow nor the model files. Raises :class:`ManifestError`.
    """
    mpath = manifest_path(path)
    try:
        text = mpath.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {mpath}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{mpath} is not valid JSON: {exc}") from exc
    return manifest_from_dict(data, root=mpath.parent)


def write_json_atomic(path, data):
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(manifest, cut_ids=None):
    """Check that the files a manifest names exist and match their recorded sha256.

    Args:
        manifest: a loaded :class:`Manifest`.
        cut_ids: check only these cuts' prefixes (and not the Keras model); all when None.

    Raises:
        ManifestError: naming every file that is missing or altered.
    """
    checks = []
    if cut_ids is None:
        checks.append((manifest.model_file, manifest.raw.get("model", {}).get("sha256")))
    for cut in manifest.cuts:
        if cut.prefix is not None and (cut_ids is None or cut.id in cut_ids):
            checks.append((cut.prefix, cut.extra.get("prefix_sha256")))
    verify_paths(manifest, checks)


def verify_paths(manifest, checks):
    """Check files named relative to the manifest's folder against their sha256.

    Args:
        checks: ``(relative path, sha256 or None)`` pairs; None checks only that the file exists.

    Raises:
        ManifestError: naming every file that is missing or altered.
    """
    bad = []
    for rel, expected in checks:
        p = manifest.path(rel)
        if not p.is_file():
            bad.append(f"{rel}: missing")
        elif expected and sha256_file(p) != expected:
            bad.append(f"{rel}: sha256 differs from the manifest (file altered or corrupt)")
    if bad:
        raise ManifestError(f"{manifest.root}: " + "; ".join(bad))
