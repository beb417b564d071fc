"""``partnner board bundle``: one reproducible tar.gz with everything a board needs, offline."""

import copy
import json
import logging
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from partnner_tf.boards import wheels as wheelmod
from partnner_tf.boards.archive import sha256sums, write_tar_gz
from partnner_tf.boards.fit import MIB, RUNTIME_STORAGE_MB, fit_model
from partnner_tf.boards.registry import get_board
from partnner_tf.constants import DEFAULT_ENDPOINT, ENV_ENDPOINT, MANIFEST_NAME
from partnner_tf.errors import BoardFitError, PartnnerError
from partnner_tf.manifest import load_manifest, sha256_file, verify_files

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "partnner-bundle"
BUNDLE_VERSION = 1
#: Frames per run of the service's ``partnner edge run``; systemd restarts it after each run.
SERVICE_FRAMES = 1_000_000
#: CURVE files a bundle takes from --curve-keys DIR: the daemon's public key, the device's pair.
CURVE_FILES = ("server.key", "client.key", "client.key_secret")


@dataclass
class BundleResult:
    """What ``make_bundle`` wrote."""

    path: Path
    sha256: str
    bytes: int
    board: str
    cuts: list
    wheels: list
    notes: list = field(default_factory=list)


def _check_output(output):
    output = Path(output)
    if not output.name.endswith(".tar.gz"):
        raise PartnnerError(f"bundle output: expected a FILE.tar.gz name, received {str(output)!r}")
    if not output.parent.is_dir():
        raise PartnnerError(f"bundle output: folder {output.parent} does not exist")
    return output


def _check_policy(policy, manifest, fit):
    """A known policy, and a fixed one (edge, cloud, fixed:K) only on a cut the bundle carries."""
    from partnner_tf.selector import make_selector

    selector = make_selector(policy, manifest)  # raises PartnnerError naming the known policies
    cut = getattr(selector, "cut", None)
    if isinstance(cut, int) and cut not in fit.fitting:
        raise BoardFitError(
            f"policy {policy!r} runs cut {cut}, which does not fit board {fit.board.name!r}; "
            f"the cuts that fit are {fit.fitting}"
        )


def _curve_files(curve_keys):
    folder = Path(curve_keys)
    missing = [n for n in CURVE_FILES if not (folder / n).is_file()]
    if missing:
        raise PartnnerError(
            f"--curve-keys {folder}: expected {', '.join(CURVE_FILES)} "
            f"(made by `partnner keys generate {folder}`); missing {', '.join(missing)}"
        )
    return [folder / n for n in CURVE_FILES]


def _bundle_manifest(manifest, board, present, edgetpu):
    """The manifest as converted, plus which cuts this bundle carries; cut ids stay the cloud's."""
    data = copy.deepcopy(manifest.raw)
    data["bundle"] = {"board": board.name, "cuts": sorted(present)}
    for cut in data["cuts"]:
        if cut["id"] not in present:
            cut["on_board"] = False
        if cut["id"] in edgetpu:
            cut["edgetpu"] = edgetpu[cut["id"]]
    return data


def _edge_run_options():
    """Option names of the installed ``partnner edge run`` (the service adapts to what it has)."""
    try:
        from partnner_tf.runtime.cli import edge
    except ImportError:
        return {"cloud", "source", "frames", "policy", "log", "board"}
    return {p.name for p in edge.commands["run"].params}


def _run_script(config, has_keys):
    """The service command: ``partnner edge run`` on the bundled model with the bundled config."""
    opts = _edge_run_options()
    q = shlex.quote
    args = [
        '"$HERE/venv/bin/partnner" edge run "$HERE/model"',
        f'--cloud "${{{ENV_ENDPOINT}:-{config["cloud"]}}}"',
        f"--source {q(config['source'])}",
        f"--frames {int(config['frames'])}",
        f"--policy {q(config['policy'])}",
        '--log "$HERE/logs/frames.jsonl"',
        f"--board {q(config['board'])}",
    ]
    if has_keys and {"server_key", "client_key"} <= opts:
        args.append('--server-key "$HERE/keys/server.key" --client-key "$HERE/keys/client.key_secret"')
    elif has_keys:
        log.warning("this partnner edge run has no --server-key/--client-key: CURVE keys are bundled but unused")
    body = " \\\n    ".join(args)
    return (
        "#!/bin/sh\n"
        "# The edge service of this bundle: `partnner edge run` on the bundled model and config.\n"
        f"# {ENV_ENDPOINT}=tcp://HOST:PORT overrides the cloud endpoint; extra arguments are passed on.\n"
        'HERE=$(cd "$(dirname "$0")" && pwd)\n'
        'mkdir -p "$HERE/logs"\n'
        f'exec {body} \\\n    "$@"\n'
    )


def _template(name):
    return resources.files("partnner_tf.boards").joinpath(name).read_text(encoding="utf-8")


def _stage(stage, manifest, board, fit, config, curve_paths, wheel_files, edgetpu):
    """Lay out the bundle's files in ``stage``."""
    (stage / "model" / "prefixes").mkdir(parents=True, exist_ok=True)
    for cut_id in fit.edge_cuts:
        rel = manifest.cuts[cut_id].prefix
        dst = stage / "model" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest.path(rel), dst)
    data = _bundle_manifest(manifest, board, fit.fitting, edgetpu)
    (stage / "model" / MANIFEST_NAME).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    (stage / "wheels").mkdir()
    for w in wheel_files:
        shutil.copyfile(w, stage / "wheels" / w.name)
    if curve_paths:
        (stage / "keys").mkdir()
        for p in curve_paths:
            shutil.copyfile(p, stage / "keys" / p.name)
    (stage / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    (stage / "bundle.env").write_text(
        f"board={board.name}\npython={board.python}\narch={board.arch}\nmodel={manifest.name}\n"
    )
    (stage / "run.sh").write_text(_run_script(config, bool(curve_paths)))
    (stage / "install.sh").write_text(_template("install.sh"))
    (stage / "partnner-edge.service.in").write_text(_template("partnner-edge.service"))
    (stage / "SHA256SUMS").write_text(sha256sums(stage))


def _check_storage(manifest, board, fit):
    prefix_mb = sum(manifest.path(manifest.cuts[c].prefix).stat().st_size for c in fit.edge_cuts) / MIB
    if RUNTIME_STORAGE_MB + prefix_mb > board.storage_mb:
        raise BoardFitError(
            f"model {manifest.name!r} on board {board.name!r}: the runtime ({RUNTIME_STORAGE_MB} MB) and "
            f"{len(fit.edge_cuts)} prefixes ({prefix_mb:.0f} MB) exceed the storage budget of {board.storage_mb} MB; "
            "convert fewer cuts (--cuts pareto or a list)"
        )


def _config(manifest, board, fit, wheel_files, has_keys, **service):
    """config.json: what the service runs and with what, for people and tools on the board."""
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "board": board.name,
        "board_record": board.to_dict(),
        "model": manifest.name,
        "model_sha256": manifest.raw.get("model", {}).get("sha256"),
        **service,
        "threads": board.threads,
        "cuts": fit.fitting,
        "curve": {"server_key": "keys/server.key", "client_key": "keys/client.key_secret"} if has_keys else None,
        "wheels": [w.name for w in wheel_files],
    }


def make_bundle(out, board, output, *, cloud=None, policy="partnner", curve_keys=None, source="random",
                frames=SERVICE_FRAMES, cache=None, wheel=None, offline=False, edgetpu=False, calibration=None):
    """Bundle the converted model at ``out`` for ``board`` into ``output`` (a .tar.gz).

    Args:
        cloud: the cloud endpoint the service connects to (default: the project default).
        policy: the selector policy of the service.
        curve_keys: a folder from ``partnner keys generate`` (server.key, client.key[_secret]).
        source: the service's frame source (``random``, a folder on the board, ...).
        cache: wheel cache folder (default ``~/.cache/partnner-tf/wheels``).
        wheel: a built partnner-tf wheel to use instead of building one from the source tree.
        offline: never download; every wheel must be in the cache.
        edgetpu: add full-int8 prefixes for the Edge TPU (compiled when edgetpu_compiler is on
            PATH) under model/edgetpu/, each cut's entry in the manifest's ``edgetpu`` field.
        calibration: images or .npy frames calibrating those int8 prefixes (random otherwise).

    Raises:
        UnknownBoardError, BoardFitError, ManifestError, PartnnerError: naming what is wrong.
    """
    board = get_board(board)
    output = _check_output(output)
    manifest = load_manifest(out)
    curve_paths = _curve_files(curve_keys) if curve_keys else []
    # Hashes first: an altered prefix must be named as such, not misread by the fit.
    verify_files(manifest, cut_ids=[c.id for c in manifest.cuts if c.prefix is not None])
    fit = fit_model(manifest, board).check()
    _check_policy(policy, manifest, fit)
    _check_storage(manifest, board, fit)
    notes = [f"cut {c.cut}: {'; '.join(c.reasons)}" for c in fit.cuts if c.reasons]
    with tempfile.TemporaryDirectory(prefix=".partnner-bundle-", dir=output.parent) as tmp:
        tmp = Path(tmp)
        built = Path(wheel) if wheel else wheelmod.build_wheel(tmp / "built")
        reqs = wheelmod.edge_requirements(built) + ["==".join(board.interpreter)]
        deps = wheelmod.download_wheels(board, reqs, tmp / "deps", cache=cache, offline=offline)
        heavy = [w.name for w in deps if w.name.lower().startswith(("tensorflow", "tf_", "keras"))]
        if heavy:
            raise BoardFitError(f"the edge wheels pulled in {heavy}: the edge extra must not need TensorFlow")
        wheel_files = sorted([built, *deps], key=lambda p: p.name)
        config = _config(manifest, board, fit, wheel_files, bool(curve_paths), cloud=cloud or DEFAULT_ENDPOINT,
                         policy=policy, source=source, frames=int(frames))
        stage = tmp / "stage"
        stage.mkdir()
        tpu = {}
        if edgetpu:
            from partnner_tf.boards.edgetpu import EDGETPU_DIR, build_edgetpu_prefixes

            tpu, message = build_edgetpu_prefixes(manifest, fit.edge_cuts, stage / "model" / EDGETPU_DIR,
                                                  calibration=calibration)
            # The float prefixes stay for the CPU; the notes now speak of the int8 copies.
            notes = [n for n in notes if "needs full" not in n]
            notes.append(f"cuts {sorted(tpu)}: full-int8 Edge TPU prefixes in model/{EDGETPU_DIR}/")
            if message:
                notes.append(message)
            config["edgetpu"] = {"cuts": sorted(tpu), "compiled": message is None}
        _stage(stage, manifest, board, fit, config, curve_paths, wheel_files, tpu)
        top = f"partnner-{manifest.name}-{board.name}"
        write_tar_gz(stage, output, top, wheelmod.source_epoch())
    return BundleResult(
        path=output,
        sha256=sha256_file(output),
        bytes=output.stat().st_size,
        board=board.name,
        cuts=fit.fitting,
        wheels=[w.name for w in wheel_files],
        notes=notes,
    )
