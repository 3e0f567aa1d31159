"""Old import paths kept for one release (0.2) as thin shims that warn.

densecal 0.2 moved modules to one floor plan (``evaluation/``, ``apps/``, ``methods/engine`` ...).
A module or name users may have imported from its 0.1 place still resolves there, through a
module ``__getattr__`` (PEP 562) that emits one :class:`DeprecationWarning` naming the new place.

Example (the whole body of a moved module's old file)::

    from densecal._deprecated import moved_module

    __getattr__ = moved_module(__name__, "densecal.evaluation")
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_module", "moved_names"]

REMOVAL = "densecal 0.3"


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new}; the old path is removed in {REMOVAL}",
                  DeprecationWarning, stacklevel=3)


def moved_module(old: str, new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the old module ``old`` whose contents now live in ``new``.

    Every attribute is looked up in ``new``; the first lookup of each name warns.
    """
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(importlib.import_module(new), name)
        _warn(f"{old}.{name}", f"{new}.{name}")
        setattr(sys.modules[old], name, value)  # warn once: later lookups find it directly
        return value

    return __getattr__


def moved_names(old: str, names: Mapping[str, str], default: str | None = None,
                renamed: Mapping[str, str] | None = None) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that left module ``old``: ``{name: new module}``;
    any other name is looked up in ``default`` (the module most of ``old`` moved to), if given.
    ``renamed`` maps an old name to its new one (``{"OBJECTIVES": "METHODS"}``).

    Raises:
        AttributeError: a name that never was in ``old``.
    """
    renamed = renamed or {}

    def __getattr__(name: str) -> Any:
        new = names.get(name, default)
        if new is None or name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new), renamed.get(name, name))
        _warn(f"{old}.{name}", f"{new}.{renamed.get(name, name)}")
        setattr(sys.modules[old], name, value)  # warn once: later lookups find it directly
        return value

    return __getattr__
