"""``make_selector(policy, manifest, **options)``: the one way to get a selector by name."""

from partnner_tf.errors import PartnnerError
from partnner_tf.manifest import Manifest, manifest_from_dict
from partnner_tf.selector.baselines import CloudOnly, EdgeOnly, FixedCut
from partnner_tf.selector.neurosurgeon import Neurosurgeon
from partnner_tf.selector.partnner import Partnner

#: policy name -> factory(manifest, **options); "fixed:<id>" is parsed apart.
POLICIES = {
    "edge": EdgeOnly,
    "cloud": CloudOnly,
    "partnner": Partnner,
    "neurosurgeon": Neurosurgeon,
}


def make_selector(policy, manifest, **options):
    """Build the selector for ``policy`` over ``manifest``.

    Args:
        policy: ``"partnner"``, ``"edge"``, ``"cloud"``, ``"fixed:<id>"`` or ``"neurosurgeon"``.
        manifest: a :class:`~partnner_tf.manifest.Manifest` or a manifest dict.
        **options: passed to the policy (e.g. ``profile=`` for neurosurgeon).
    """
    if isinstance(manifest, dict):
        manifest = manifest_from_dict(manifest)
    if not isinstance(manifest, Manifest):
        raise PartnnerError(f"make_selector: expected a manifest, received {type(manifest).__name__}")
    if isinstance(policy, str) and policy.startswith("fixed:"):
        try:
            cut = int(policy.split(":", 1)[1])
        except ValueError:
            raise PartnnerError(f"policy {policy!r}: expected fixed:<cut id>, e.g. fixed:3") from None
        return FixedCut(manifest, cut, **options)
    factory = POLICIES.get(policy)
    if factory is None:
        known = sorted(POLICIES) + ["fixed:<id>"]
        raise PartnnerError(f"unknown policy {policy!r}; known policies: {', '.join(known)}")
    return factory(manifest, **options)
