"""Import heavy optional dependencies on first use, naming the extra that provides them."""

import importlib

from partnner_tf.errors import MissingDependencyError


def require(module, extra):
    """Import ``module`` or raise an error telling which extra installs it.

    Args:
        module: dotted module name, e.g. ``"tensorflow"``.
        extra: the partnner-tf extra that brings it, e.g. ``"convert"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed here but cannot be imported ({exc}); "
            f"install it with: pip install 'partnner-tf[{extra}]'"
        ) from exc
