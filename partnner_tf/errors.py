"""The one error hierarchy of partnner-tf; the CLI turns these into clean messages."""


class PartnnerError(Exception):
    """Base of every error partnner-tf raises on purpose."""


class ConversionError(PartnnerError):
    """A model cannot be sliced, converted or verified."""


class ManifestError(PartnnerError):
    """A manifest is malformed, or its files are missing or fail their hashes."""


class ProtocolError(PartnnerError):
    """A wire message does not follow the protocol."""


class CloudError(PartnnerError):
    """The cloud daemon answered with an error.

    Attributes:
        code: the protocol error code, e.g. ``"bad_shape"``.
        reason: the daemon's explanation.
    """

    def __init__(self, code, reason):
        super().__init__(f"cloud error {code}: {reason}")
        self.code = code
        self.reason = reason


class CloudTimeout(PartnnerError):
    """The cloud did not answer before the deadline."""


class Abandoned(CloudTimeout):
    """A request was given up before its deadline because its answer came from elsewhere."""


class UnknownBoardError(PartnnerError):
    """A board name is not in the registry."""


class BoardFitError(PartnnerError):
    """A model, or a cut of it, cannot run on a board."""


class MissingDependencyError(PartnnerError):
    """An optional dependency is not installed; the message names the extra to install."""


class EmulationError(PartnnerError):
    """The host cannot emulate a link or a board as asked."""


class InputError(PartnnerError):
    """An input (frame, image file, tensor) does not match what the model expects."""
