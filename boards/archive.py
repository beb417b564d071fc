"""Reproducible tar.gz: sorted members, pinned mtime, owner root, gzip header without a date."""

import gzip
import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

EXECUTABLE_SUFFIXES = (".sh",)
#: Secret keys stay readable by their owner only once unpacked.
PRIVATE_SUFFIXES = (".key_secret",)


def sha256sums(root, exclude=("SHA256SUMS",)):
    """``sha256sum``-format lines for every file under ``root``, sorted by path."""
    root = Path(root)
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude:
            continue
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        lines.append(f"{h.hexdigest()}  {rel}\n")
    return "".join(lines)


def _info(name, path, mtime):
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if path.is_dir():
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = path.stat().st_size
        if path.suffix in EXECUTABLE_SUFFIXES:
            info.mode = 0o755
        elif path.suffix in PRIVATE_SUFFIXES:
            info.mode = 0o600
        else:
            info.mode = 0o644
    return info


def write_tar_gz(src_dir, output, top, mtime):
    """Pack ``src_dir`` as ``top/...`` into ``output``, atomically; the same files give the same bytes.

    Returns the output path.
    """
    src_dir, output = Path(src_dir), Path(output)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            # filename="" and mtime=0 keep the gzip header free of the temp name and the clock.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                    tar.addfile(_info(top, src_dir, mtime))
                    for path in sorted(src_dir.rglob("*"), key=lambda p: p.relative_to(src_dir).as_posix()):
                        name = f"{top}/{path.relative_to(src_dir).as_posix()}"
                        info = _info(name, path, mtime)
                        if path.is_dir():
                            tar.addfile(info)
                        else:
                            with open(path, "rb") as fh:
                                tar.addfile(info, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return output
