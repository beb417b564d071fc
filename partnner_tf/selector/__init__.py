"""The selector contract: which cut runs the next frame, learned from what each frame shows.

    selector = make_selector("partnner", manifest)
    cut = selector.choose()
    ...run the frame...
    selector.observe(Observation(cut=cut, edge_s=..., transfer_s=..., cloud_s=...))

Pure: no I/O, no clock, no TensorFlow. ``manifest`` is what
:func:`partnner_tf.manifest.load_manifest` returns (a plain manifest dict is accepted too).
"""

from partnner_tf.selector.base import Observation, Selector
from partnner_tf.selector.baselines import CloudOnly, EdgeOnly, FixedCut
from partnner_tf.selector.registry import POLICIES, make_selector

__all__ = [
    "Observation",
    "Selector",
    "EdgeOnly",
    "CloudOnly",
    "FixedCut",
    "POLICIES",
    "make_selector",
]
