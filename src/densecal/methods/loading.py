"""Rebuild any method family's module from a checkpoint, with one-line refusals.

:func:`load_module_checkpoint` is the one loader behind ``load_module`` (segmentation),
``load_car``, ``load_classifier`` and ``load_ud``. On top of
:func:`~densecal.methods.engine.checkpoints.read_checkpoint` (never runs code) it refuses,
naming the file: a checkpoint of another method family (and says which verb reads it, from the
method registry), settings a newer densecal wrote, and a saved configuration out of range.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from torch import nn

from densecal.errors import DensecalInputError, input_error
from densecal.methods.config import TrainConfig, check_run_options
from densecal.methods.engine.checkpoints import read_checkpoint, restore_weights
from densecal.methods.registry import METHODS

__all__ = ["load_module_checkpoint"]

_M = TypeVar("_M", bound=nn.Module)
def load_module_checkpoint(path: str | Path, build: Callable[..., _M], *,
                           family: Callable[[str], bool], what: str,
                           required: Collection[str], optional: Collection[str] = ()) -> _M:
    """Rebuild a module from a checkpoint's hyper-parameters and weights, in eval mode.

    Args:
        path: the ``.ckpt`` file.
        build: the module class (called with the hyper-parameters as keyword arguments).
        family: which saved ``config.method`` names this loader reads.
        what: the family in words, for messages (``"segmentation checkpoint"``).
        required: hyper-parameter names that must be present.
        optional: further names ``build`` accepts.

    Raises:
        DensecalInputError: naming ``path``: unreadable; trained with a method of another
            family (the message names the method and the verb that reads it); hyper-parameters
            or configuration keys this densecal does not know (a newer version wrote them) or
            missing; a saved option out of range (``image_size: 0``); weights that do not fit.
    """
    state, hparams = read_checkpoint(path, f"densecal {what}")
    config = hparams.get("config")
    method = config.get("method") if isinstance(config, dict) else None
    if isinstance(method, str) and not _in_family(family, method):
        raise input_error(path, f"was trained with method {method}, not a {what}; "
                                f"{_reader_of(method)}")
    missing = sorted(set(required) - set(hparams))
    if missing or not isinstance(config, dict):
        raise input_error(path, f"is not a densecal {what} (no {', '.join(missing) or 'config'})")
    unknown = sorted(set(hparams) - set(required) - set(optional))
    if unknown:
        raise input_error(path, f"holds settings this densecal does not know ({', '.join(unknown)}"
                                f"); a newer densecal wrote it, so upgrade densecal")
    newer = TrainConfig.unknown_keys(config)
    if newer:
        raise input_error(path, f"its saved configuration is not valid: config: unknown keys "
                                f"{', '.join(newer)} (a newer densecal wrote it, so upgrade "
                                f"densecal)")
    try:
        check_run_options(TrainConfig.from_dict(config, source="config"))
        module = build(**hparams)
    except DensecalInputError as exc:
        raise input_error(path, f"its saved configuration is not valid: {_reason(exc)}") \
            from None
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise input_error(path, f"its saved configuration cannot build the model ({first})") \
            from None
    return restore_weights(module, state.get("state_dict"), path)


def _in_family(family: Callable[[str], bool], method: str) -> bool:
    try:
        return family(method)
    except DensecalInputError:  # a method this densecal does not know
        return False


def _reason(exc: DensecalInputError) -> str:
    """A nested error's message, naming the saved key rather than the training flag."""
    text = str(exc).splitlines()[0]
    flag, sep, rest = text.partition(": ")
    if flag.startswith("--") and sep:  # name the saved key, not the training flag
        return f"{flag[2:].replace('-', '_')}: {rest}"
    return text


def _reader_of(method: str) -> str:
    """Which verb reads checkpoints of ``method``."""
    try:
        return f"use {METHODS.create(method).reader}"
    except DensecalInputError:
        return "this densecal does not know that method"
