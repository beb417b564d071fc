"""What a selector sees after each frame, and the interface every policy implements."""

import math
import numbers
from dataclasses import dataclass
from typing import Optional

from partnner_tf.errors import PartnnerError


@dataclass(frozen=True)
class Observation:
    """What one frame showed.

    Attributes:
        cut: the cut the frame ran with.
        edge_s: prefix time measured on the edge (the whole model for edge-only frames).
        transfer_s: the rest of the round trip: uplink, downlink, propagation.
        cloud_s: the server's reported queue + compute time.
        bytes_sent: payload sent edge -> cloud, when known.
        queue_s, compute_s: the two parts of ``cloud_s`` when the server reported them.
        queue_depth, busy_workers, workers: the server's reported load.
        timed_out: the cloud missed the deadline (or the link failed) and the frame fell back
            to the edge; ``transfer_s`` then holds the time lost waiting.
        edge_only_s: when the frame was hedged (see :meth:`Selector.hedge`), the time of the
            edge-only run that went alongside the cloud request.
    """

    cut: int
    edge_s: float
    transfer_s: float = 0.0
    cloud_s: float = 0.0
    bytes_sent: Optional[int] = None
    queue_s: Optional[float] = None
    compute_s: Optional[float] = None
    queue_depth: Optional[int] = None
    busy_workers: Optional[int] = None
    workers: Optional[int] = None
    timed_out: bool = False
    edge_only_s: Optional[float] = None

    def __post_init__(self):
        # Checked here, where a bad value is made: a NaN or negative time taken in would poison
        # every estimate after it without a word (one NaN edge time had partnner choose cut 0
        # for good).
        # (Plain ints and floats first: the checks against the numbers ABCs cost more than the
        # rest of building an Observation, once a frame.)
        cut = self.cut
        if type(cut) is not int and (isinstance(cut, bool) or not isinstance(cut, numbers.Integral)):
            raise PartnnerError(f"Observation.cut must be a cut id (an int), received {cut!r}")
        for name in ("edge_s", "transfer_s", "cloud_s", "edge_only_s"):
            value = getattr(self, name)
            if value is None and name == "edge_only_s":
                continue
            number = type(value) is float or type(value) is int or (
                not isinstance(value, bool) and isinstance(value, numbers.Real))
            if not (number and 0 <= value < math.inf):
                raise PartnnerError(f"Observation.{name} must be a finite time in seconds, >= 0; received {value!r}")


class Selector:
    """Base class: ``choose()`` the next cut, ``observe()`` what it did."""

    name = "selector"
    #: False for a selector that never changes its cut: the runtime then loads no neighbours.
    adaptive = True

    def __init__(self, manifest):
        self.manifest = manifest

    def choose(self) -> int:
        raise NotImplementedError

    def observe(self, obs: Observation) -> None:
        """Default: learn nothing."""

    def deadline_s(self, cut: int) -> Optional[float]:
        """How long the runtime should wait for the cloud on ``cut``; None: its own default."""
        return None

    def hedge(self, cut: int) -> bool:
        """Optional: run the whole model on the edge alongside the cloud request for ``cut`` and
        finish the frame with whichever result comes first. A caller that asks must do so; if
        the edge wins, it observes ``timed_out=True`` with the wait in ``transfer_s`` and the
        edge-only time in ``edge_only_s``. Default: never."""
        return False

    def offer_hedge(self) -> None:
        """Optional: the caller says, before the first frame, that it will honour :meth:`hedge`.
        When the cloud's result wins, the edge-only run's time comes with a later observation
        (``edge_only_s``), once it has ended. Default: nothing."""
