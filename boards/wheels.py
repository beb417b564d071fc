"""Wheels for a board: partnner-tf built from its source tree, its edge dependencies downloaded for the board's platform."""

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from partnner_tf.errors import BoardFitError, PartnnerError

log = logging.getLogger(__name__)

#: What goes into the partnner-tf wheel; everything else in the checkout stays out.
SOURCE_FILES = ("setup.cfg", "pyproject.toml", "README.md")
SOURCE_DIRS = ("partnner_tf", "converters", "runtime", "boards")
#: The timestamp wheels and tar members get unless SOURCE_DATE_EPOCH says otherwise (1980-01-02:
#: zip cannot store earlier dates).
DEFAULT_EPOCH = 315619200
ENV_WHEEL_CACHE = "PARTNNER_WHEEL_CACHE"


class WheelError(PartnnerError):
    """A wheel could not be built or downloaded."""


def source_epoch():
    """The pinned timestamp: ``SOURCE_DATE_EPOCH`` when set, else :data:`DEFAULT_EPOCH`."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_EPOCH


def default_cache():
    """Where downloaded wheels are kept between bundles."""
    if os.environ.get(ENV_WHEEL_CACHE):
        return Path(os.environ[ENV_WHEEL_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "partnner-tf" / "wheels"


def source_root():
    """The checkout partnner-tf is installed from (editable installs), or None."""
    import partnner_tf

    root = Path(partnner_tf.__file__).resolve().parent.parent
    cfg = root / "setup.cfg"
    if cfg.is_file() and re.search(r"^name\s*=\s*partnner-tf\s*$", cfg.read_text(), re.M):
        return root
    return None


def _run(cmd, env=None, what="command"):
    log.info("running %s", " ".join(map(str, cmd)))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise WheelError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return proc


def build_wheel(dest, root=None):
    """Build the partnner-tf wheel from the source tree into ``dest``; returns its path.

    The tree is copied first (only the package's own files), so the build neither writes into
    the checkout nor picks up stray files; ``SOURCE_DATE_EPOCH`` pins the zip timestamps.
    """
    root = Path(root) if root else source_root()
    if root is None:
        raise WheelError(
            "building the partnner-tf wheel needs its source tree (setup.cfg); this partnner-tf "
            "is not an editable install: pass --wheel FILE with a built wheel"
        )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="partnner-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in SOURCE_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
        for name in SOURCE_DIRS:
            shutil.copytree(root / name, src / name, ignore=ignore)
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(source_epoch()))
        out = Path(tmp) / "out"
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", str(out), str(src)],
            env=env,
            what="building the partnner-tf wheel",
        )
        (wheel,) = out.glob("partnner_tf-*.whl")
        target = dest / wheel.name
        shutil.move(str(wheel), target)
    return target


def edge_requirements(wheel):
    """The requirements a board installs with ``partnner-tf[edge]``, read from the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode()
    reqs = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req, _, marker = line[len("Requires-Dist:"):].partition(";")
        marker = marker.strip()
        if not marker or re.fullmatch(r"extra\s*==\s*['\"]edge['\"]", marker):
            reqs.append(req.strip())
    return sorted(set(reqs))


def _pip_download_args(board, reqs):
    args = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
            "--python-version", board.python, "--implementation", "cp"]
    for tag in board.pip_platforms:
        args += ["--platform", tag]
    return args + list(reqs)


def _isolated_env():
    """pip with no config files or PIP_* variables: only the folders we name are looked at."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def download_wheels(board, reqs, dest, cache=None, offline=False):
    """Wheels of ``reqs`` and their dependencies for ``board``'s platform and Python, into ``dest``.

    Resolved first from the cache alone (no network: repeated bundles are fast and pick the same
    files); only when that fails is the index asked, filling the cache.

    Raises:
        BoardFitError: when no wheel exists for the board (naming the board's tags).
    """
    cache = Path(cache) if cache else default_cache()
    key = f"{board.python_tag}-{board.arch}-glibc{board.glibc}"
    cache = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    local = _pip_download_args(board, reqs) + ["--no-index", "--find-links", str(cache), "-d", str(dest)]
    try:
        _run(local, env=_isolated_env(), what="resolving wheels from the cache")
        return sorted(dest.glob("*.whl"))
    except WheelError as exc:
        if offline:
            raise BoardFitError(
                f"the wheel cache {cache} does not hold every wheel {board.name} needs and "
                f"--offline forbids downloading: {exc}"
            ) from None
        log.info("cache miss (%s); downloading for %s", cache, board.name)
    try:
        _run(_pip_download_args(board, reqs) + ["-d", str(cache)], what="downloading wheels")
    except WheelError as exc:
        raise BoardFitError(
            f"no wheels for board {board.name!r} (Python {board.python}, "
            f"{board.pip_platforms[0] if board.pip_platforms else 'no manylinux tag'}): {exc}"
        ) from None
    _run(local, env=_isolated_env(), what="resolving wheels from the cache")
    return sorted(dest.glob("*.whl"))
