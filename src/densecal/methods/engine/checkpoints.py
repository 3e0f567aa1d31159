"""Reading densecal checkpoints with clear errors: one place for every method family's loader.

A checkpoint is a Lightning ``.ckpt`` (a pickled dict with ``hyper_parameters`` and
``state_dict``). :func:`read_checkpoint` turns every way a file can fail to be one into a one-line
:class:`~densecal.errors.DensecalInputError` naming the file; :func:`restore_weights` does the
same for weights that do not fit the module rebuilt from the hyper-parameters.
:func:`densecal.methods.loading.load_module_checkpoint` builds on both for every family.

Untrusted files never run code: every checkpoint is unpickled with ``weights_only=True``, which
admits tensors, plain containers, numbers and strings and nothing else (densecal's checkpoints
hold only those; ``tests/methods/test_checkpoint_portability.py``). A pickle that names any other
callable, the way a hostile ``.ckpt`` runs code, is refused with one line before anything of it
is built. Lightning's resume reads ``last.ckpt`` the same way (:data:`SAFE_LOAD`).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from densecal.atomic import atomic_write_bytes
from densecal.errors import input_error

__all__ = ["SAFE_LOAD", "epochs_trained", "read_checkpoint", "restore_weights",
           "write_checkpoint"]

SAFE_LOAD = True
"""The ``weights_only`` of every checkpoint load (``torch.load``, ``Trainer.fit(ckpt_path=)``)."""

_M = TypeVar("_M", bound=nn.Module)


def read_checkpoint(path: str | Path, what: str = "densecal training checkpoint",
                    *, missing: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a checkpoint on the CPU; return the whole state and its ``hyper_parameters``.

    Args:
        path: the ``.ckpt`` file.
        what: what the file should be, for the messages.
        missing: the argument to name when the file does not exist (default: the path).

    Raises:
        DensecalInputError: the file is missing or cannot be unpickled as a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        if missing is None:
            raise input_error(path, "no such checkpoint file")
        raise input_error(missing, f"no such {what} file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=SAFE_LOAD)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a callable outside the allow-list
            raise input_error(path, "refused: it holds objects other than tensors and plain "
                                    "data, and loading it could run code") from None
        raise input_error(path, f"cannot be read as a checkpoint ({type(exc).__name__})") from None
    except Exception as exc:  # any unreadable file is bad input, named with its path
        raise input_error(path, f"cannot be read as a checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise input_error(path, f"is not a {what}")
    hparams = state.get("hyper_parameters", {})
    return state, hparams if isinstance(hparams, dict) else {}


def epochs_trained(state: dict[str, Any]) -> int:
    """Epochs a loaded checkpoint has finished: checkpoints are written at the end of each
    epoch (:class:`~densecal.methods.engine.epoch_checkpoint.EpochCheckpoint`), and their
    ``"epoch"`` is the index of the last finished one (0 when absent).

    Example:
        >>> epochs_trained({"epoch": 2}), epochs_trained({})
        (3, 0)
    """
    return int(state.get("epoch", -1)) + 1


def restore_weights(module: _M, weights: dict[str, Any], path: str | Path) -> _M:
    """``module.load_state_dict(weights)`` in eval mode, or one line naming ``path``.

    Raises:
        DensecalInputError: no weights, or weights that do not match the module's architecture.
    """
    if not isinstance(weights, dict):
        raise input_error(path, "holds no weights (state_dict)")
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise input_error(path, f"weights do not match its configuration ({first})") from None
    return module.eval()


def write_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` of ``state`` to ``path``, atomically and only beside ``path``.

    The state is serialised in memory first and written with
    :func:`densecal.atomic.atomic_write_bytes`: nothing goes through ``$TMPDIR`` (Lightning's
    fsspec writer stages there, so a small ``/tmp`` failed training), and a full disk raises an
    ``OSError`` naming ``path`` (``torch.save`` to a file raises a bare ``RuntimeError``).
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
