"""A selector over only the cuts a (partial) bundle carries, speaking the cut ids the cloud knows."""

import dataclasses
import json
from pathlib import Path

from partnner_tf.errors import PartnnerError
from partnner_tf.selector import make_selector


def board_selector(policy, manifest, cut_ids, **options):
    """``make_selector(policy, ...)`` over the cuts ``cut_ids`` of ``manifest`` alone.

    With every cut on board this is ``make_selector(policy, manifest, **options)``. Otherwise
    the selector gets :meth:`Manifest.restricted` and is wrapped so that ``choose``,
    ``observe``, ``deadline_s``, ``hedge`` and ``likely_cuts`` speak the manifest's own ids: those of the
    prefix files and of the cloud daemon. ``fixed:K`` names an original id.

    Raises:
        PartnnerError: ``fixed:K`` names a cut left out (the message lists the bundled cuts),
            or any error of :func:`make_selector`.
    """
    cut_ids = sorted(cut_ids)
    if cut_ids == [c.id for c in manifest.cuts]:
        return make_selector(policy, manifest, **options)
    local = manifest.restricted(cut_ids)
    if isinstance(policy, str) and policy.startswith("fixed:"):
        try:
            cut = int(policy.split(":", 1)[1])
        except ValueError:
            cut = None  # make_selector says what a fixed policy looks like
        if cut is not None:
            if cut not in cut_ids:
                raise PartnnerError(
                    f"policy {policy!r}: cut {cut} is not on this board; the bundled cuts are {cut_ids}"
                )
            policy = f"fixed:{local.local_id(cut)}"
    if "profile" in options:
        options = dict(options, profile=_restricted_profile(options["profile"], manifest, local))
    return OnBoard(make_selector(policy, local, **options), local)


def _restricted_profile(profile, manifest, local):
    """A profile of every cut (``partnner profile``), cut down to the bundled ones."""
    if isinstance(profile, (str, Path)):
        try:
            profile = json.loads(Path(profile).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return profile  # the selector reports it
    try:
        sides = {s: profile[s]["cut_s"] for s in ("edge", "cloud")}
    except (KeyError, TypeError):
        return profile
    if any(not isinstance(v, list) or len(v) != len(manifest.cuts) for v in sides.values()):
        return profile
    out = dict(profile)
    for side, values in sides.items():
        out[side] = dict(profile[side], cut_s=[values[c] for c in local.original_ids])
    return out


class OnBoard:
    """A selector over a restricted manifest, seen through the original cut ids."""

    def __init__(self, selector, local):
        self.selector = selector
        self.local = local
        self.name = getattr(selector, "name", type(selector).__name__)

    def choose(self):
        return self.local.original_id(int(self.selector.choose()))

    def observe(self, obs):
        self.selector.observe(dataclasses.replace(obs, cut=self.local.local_id(obs.cut)))

    def deadline_s(self, cut):
        hint = getattr(self.selector, "deadline_s", None)
        return hint(self.local.local_id(cut)) if hint is not None else None

    def hedge(self, cut):
        hedge = getattr(self.selector, "hedge", None)
        return bool(hedge(self.local.local_id(cut))) if hedge is not None else False

    def offer_hedge(self):
        offer = getattr(self.selector, "offer_hedge", None)
        if offer is not None:
            offer()

    def likely_cuts(self):
        likely = getattr(self.selector, "likely_cuts", None)
        return [self.local.original_id(int(c)) for c in likely()] if likely is not None else []
