"""Baselines that never adapt: edge-only, cloud-only and a fixed cut."""

from partnner_tf.errors import PartnnerError
from partnner_tf.selector.base import Selector


class FixedCut(Selector):
    """Always the same cut."""

    name = "fixed"
    adaptive = False

    def __init__(self, manifest, cut):
        super().__init__(manifest)
        if not 0 <= cut < len(manifest.cuts):
            raise PartnnerError(
                f"fixed:{cut}: model {manifest.name!r} has cuts 0..{len(manifest.cuts) - 1}"
            )
        self.cut = cut

    def choose(self):
        return self.cut


class EdgeOnly(FixedCut):
    """The whole model on the edge."""

    name = "edge"

    def __init__(self, manifest):
        if manifest.edge_only is None:
            raise PartnnerError(f"model {manifest.name!r} has no edge-only cut")
        super().__init__(manifest, manifest.edge_only)


class CloudOnly(FixedCut):
    """The raw input sent, the whole model in the cloud."""

    name = "cloud"

    def __init__(self, manifest):
        if manifest.cloud_only is None:
            raise PartnnerError(f"model {manifest.name!r} has no cloud-only cut")
        super().__init__(manifest, manifest.cloud_only)
