"""Which file each cut loads on this board: its float prefix, or the Edge TPU's full-int8 copy."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from partnner_tf.runtime.int8 import Int8Prefix, Int8Spec, int8_spec
from partnner_tf.runtime.interpreter import EDGETPU_LIBRARY, delegate_error, load_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefixFile:
    """What to load for one cut: a file (relative to the manifest), its sha256, delegate, int8 spec."""

    cut: int
    path: str
    sha256: Optional[str]
    delegate: Optional[str] = None  # the delegate library, or None for the CPU
    int8: Optional[Int8Spec] = None  # set for a full-int8 file: float in and out through it

    def load(self, manifest, threads):
        prefix = load_prefix(manifest.path(self.path), threads=threads, delegate=self.delegate)
        return Int8Prefix(prefix, self.int8) if self.int8 is not None else prefix


def usable_delegate(delegate, board_name):
    """``(library or None, edgetpu)``: the delegate to load, or None when it cannot be loaded.

    Probed once here, so a missing library is said once (a logged warning naming it and the
    board) and every prefix then loads on the CPU without trying again.
    """
    if delegate in (None, "", "cpu", "none"):
        return None, False
    library = EDGETPU_LIBRARY if delegate == "edgetpu" else str(delegate)
    edgetpu = Path(library).name == EDGETPU_LIBRARY
    error = delegate_error(library)
    if error is not None:
        what = "the Edge TPU's int8 prefixes" if edgetpu else "the prefixes"
        log.warning("board %s: the delegate %s cannot be loaded (%s); %s run on the CPU",
                    board_name or "(none given)", library, error, what)
        return None, edgetpu
    return library, edgetpu


def plan_prefixes(manifest, cut_ids, delegate=None, edgetpu=False, board_name=None):
    """``{cut: PrefixFile}`` for the cuts of ``cut_ids`` that run a prefix.

    Args:
        delegate: a delegate library that loads (see :func:`usable_delegate`), or None.
        edgetpu: the board's accelerator is the Edge TPU: a cut with an ``edgetpu`` entry loads
            its compiled file with the delegate, else its plain int8 file on the CPU; a cut
            without one loads its float prefix on the CPU.

    Raises:
        ManifestError: an ``edgetpu`` entry is incomplete or malformed.
    """
    files, floats = {}, []
    for cut in manifest.cuts:
        if cut.id not in cut_ids or cut.prefix is None:
            continue
        spec = int8_spec(cut) if edgetpu else None
        if spec is None:
            floats.append(cut.id)
            files[cut.id] = PrefixFile(cut.id, cut.prefix, cut.extra.get("prefix_sha256"),
                                       None if edgetpu else delegate)
        elif spec.compiled and delegate:
            files[cut.id] = PrefixFile(cut.id, spec.compiled, spec.compiled_sha256, delegate, spec)
        else:
            files[cut.id] = PrefixFile(cut.id, spec.prefix, spec.sha256, None, spec)
    if edgetpu and floats:
        log.warning("board %s: cut(s) %s have no full-int8 Edge TPU prefix in the manifest (bundle for "
                    "the board, or with --edgetpu, to add them); they run their float prefix on the CPU",
                    board_name or "(none given)", floats)
    return files
