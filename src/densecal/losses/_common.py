"""Shared input handling of the dense calibration losses (binary and multi-class).

Every baseline loss (label smoothing, focal, entropy penalty, MbLS, SVLS) accepts the same two
kinds of input and reduces to the same per-pixel representation:

- **binary** (``task="binary"``): logits ``(N, *S)`` or ``(N, 1, *S)`` read through a sigmoid,
  target of the same shape (a missing channel axis of size 1 is allowed) with values in
  ``[0, 1]`` (soft allowed) or ``ignore_index``. Internally the pixel is the two-class
  distribution ``[1 - q, q]`` with log-probabilities ``[logsigmoid(-l), logsigmoid(l)]`` and
  target ``[1 - y, y]``, so every multi-class formula with ``K = 2`` is its binary form
  (``-sum_c t_c log p_c`` is exactly the BCE).
- **multi-class** (``task="multiclass"``): logits ``(N, C, *S)``, ``C >= 2``, read through a
  softmax over axis 1; target a class-index map ``(N, *S)`` (integer, values in ``[0, C)`` or
  ``ignore_index``) or a probability map ``(N, C, *S)`` (floating, each pixel summing to 1;
  a pixel whose every channel equals ``ignore_index`` is ignored).

``task=None`` infers the task from the logits alone: ``C = logits.shape[1] > 1`` means
multi-class, otherwise binary. Binary maps without a channel axis, ``(N, H, W)``, would be read as
``H`` classes, so pass ``task="binary"`` (or use ``(N, 1, H, W)``) for them; the target checks
(integer map of the wrong shape, probabilities not summing to 1) then say so.

Per-pixel losses have shape ``(N, *S)`` for both tasks; reductions are ``"mean"`` over the
non-ignored pixels (0 when every pixel is ignored), ``"sum"``, or ``"none"`` (ignored pixels 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densecal._checks import parse_choice
from densecal.errors import input_error
from densecal.types import DENSE_LOSS_TASKS, Reduction, Task

__all__ = [
    "DenseInput",
    "DenseLoss",
    "LossOptions",
    "Task",
    "align",
    "binary_target",
    "check_reduction",
    "check_target",
    "check_task",
    "index_target",
    "prepare",
    "probability_target",
    "reduce_pixels",
    "task_logits",
    "valid_mask",
]

# tolerance on sum_c t_c = 1 for probability targets (float32 soft labels, resampled maps)
_SUM_TOL = 1e-3


def check_task(task: Task | str | None) -> Task | None:
    """Parse ``task`` (``None`` = infer from the logits).

    Raises:
        DensecalInputError: not ``None``, ``"binary"`` or ``"multiclass"``.
    """
    return None if task is None else parse_choice(Task, task, "task", allowed=DENSE_LOSS_TASKS)


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is ``"mean"``, ``"sum"`` or ``"none"``.

    Raises:
        DensecalInputError: any other value.
    """
    return parse_choice(Reduction, reduction, "reduction",
                        message="must be one of ('mean', 'sum', 'none'), got {value}").value


def align(logits: Tensor, target: Tensor, where: str = "target") -> Tensor:
    """Check that ``target`` matches ``logits`` (allowing a missing channel axis of size 1)."""
    if logits.ndim < 1:
        raise input_error("logits", "must have a batch axis, shape (N, *spatial)")
    if target.shape == logits.shape:
        return target
    if target.ndim == logits.ndim - 1 and logits.ndim >= 2 and logits.shape[1] == 1 \
            and target.shape == logits.shape[:1] + logits.shape[2:]:
        return target.unsqueeze(1)
    raise input_error(where, f"shape {tuple(target.shape)} does not match logits shape "
                             f"{tuple(logits.shape)}")


def valid_mask(target: Tensor, ignore_index: float | None) -> Tensor | None:
    """``target != ignore_index``, or None when nothing is ignored."""
    return None if ignore_index is None else target != ignore_index


def check_target(target: Tensor, mask: Tensor | None) -> Tensor:
    """Validate target values in [0, 1] (ignored pixels excepted); return it as floating point."""
    if target.dtype == torch.bool:
        return target.float()
    if not target.is_floating_point():
        target = target.float()
    if target.numel() == 0:
        return target
    checked = target if mask is None else torch.where(mask, target, 0.5)
    lo, hi = torch.aminmax(checked.detach())
    if not (lo >= 0 and hi <= 1):  # also catches NaN
        raise input_error("target", f"values must lie in [0, 1] (or equal ignore_index), got "
                                    f"range [{lo.item():g}, {hi.item():g}]")
    return target


def task_logits(logits: Tensor, task: Task | str | None) -> tuple[Task, Tensor]:
    """Resolve the task and bring logits to the working layout.

    Args:
        logits: floating tensor, binary ``(N, *S)`` / ``(N, 1, *S)`` or multi-class
            ``(N, C, *S)``.
        task: ``"binary"``, ``"multiclass"`` or ``None`` (multi-class iff ``logits.shape[1] > 1``).

    Returns:
        ``(task, logits)``; binary logits lose a channel axis of size 1: ``(N, *S)``.

    Raises:
        DensecalInputError: not a floating tensor, no batch axis, or multi-class with ``C < 2``.
    """
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise input_error("logits", "must be a floating-point tensor")
    if logits.ndim < 1:
        raise input_error("logits", "must have a batch axis, shape (N, *spatial)")
    parsed = check_task(task)
    if parsed is None:
        parsed = Task.MULTICLASS if logits.ndim >= 2 and logits.shape[1] > 1 else Task.BINARY
    if parsed is Task.MULTICLASS:
        if logits.ndim < 2 or logits.shape[1] < 2:
            raise input_error("logits", f"multi-class logits need shape (N, C, *spatial) with "
                                        f"C >= 2, got {tuple(logits.shape)}")
        return parsed, logits
    if logits.ndim >= 2 and logits.shape[1] == 1:
        logits = logits.squeeze(1)
    return parsed, logits


def binary_target(logits: Tensor, target: Tensor,
                  ignore_index: float | None) -> tuple[Tensor, Tensor | None]:
    """Validate a binary target against binary logits (``(N, *S)`` after :func:`task_logits`).

    Args:
        logits: binary logits ``(N, *S)``.
        target: ``(N, *S)`` or ``(N, 1, *S)``, values in ``[0, 1]`` or ``ignore_index``.
        ignore_index: value marking ignored pixels, or ``None``.

    Returns:
        ``(y, mask)``: ``y`` of ``logits``' shape and dtype with ignored pixels set to 0, ``mask``
        the boolean map of kept pixels (``None`` without ``ignore_index``).

    Raises:
        DensecalInputError: shape mismatch or values outside ``[0, 1]``.
    """
    if not isinstance(target, Tensor):
        raise input_error("target", "must be a tensor")
    if target.ndim == logits.ndim + 1 and target.shape[1] == 1:
        target = target.squeeze(1)
    target = align(logits, target)
    mask = valid_mask(target, ignore_index)
    y = check_target(target, mask).to(logits.dtype)
    if mask is not None:
        y = torch.where(mask, y, 0.0)
    return y, mask


def index_target(target: Tensor, num_classes: int,
                 ignore_index: float | None) -> tuple[Tensor, Tensor | None]:
    """Validate a class-index map (any shape) and replace ignored pixels by class 0.

    Args:
        target: integer tensor, values in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: ``C``.
        ignore_index: value marking ignored pixels, or ``None``.

    Returns:
        ``(index, mask)``: int64 indices (ignored pixels 0) and the boolean map of kept pixels
        (``None`` without ``ignore_index``).

    Raises:
        DensecalInputError: not an integer tensor, or indices out of range.
    """
    if target.is_floating_point() or target.is_complex():
        raise input_error("target", f"a class-index map must be an integer tensor, got "
                                    f"{target.dtype}")
    target = target.long()
    mask = valid_mask(target, ignore_index)
    index = target if mask is None else torch.where(mask, target, 0)
    if index.numel():
        lo, hi = torch.aminmax(index)
        if lo < 0 or hi >= num_classes:
            allowed = "" if ignore_index is None else f" or equal ignore_index={ignore_index!r}"
            raise input_error("target", f"class indices must lie in [0, {num_classes}){allowed}, "
                                        f"got range [{lo.item()}, {hi.item()}]")
    return index, mask


def probability_target(target: Tensor, dtype: torch.dtype,
                       ignore_index: float | None) -> tuple[Tensor, Tensor | None]:
    """Validate a probability map ``(N, C, *S)``; ignored pixels (all channels equal
    ``ignore_index``) become all-zero vectors.

    Args:
        target: floating tensor ``(N, C, *S)``, values in ``[0, 1]``, summing to 1 over axis 1
            (tolerance 1e-3).
        dtype: working dtype (the logits').
        ignore_index: value marking ignored pixels, or ``None``.

    Returns:
        ``(probs, mask)`` with ``mask`` of shape ``(N, *S)`` or ``None``.

    Raises:
        DensecalInputError: values out of range or pixels not summing to 1.
    """
    if not target.is_floating_point():
        raise input_error("target", f"a probability map (N, C, *spatial) must be floating "
                                    f"point, got {target.dtype}; class-index maps have shape "
                                    f"(N, *spatial)")
    mask = None if ignore_index is None else (target != ignore_index).any(1)
    probs = target if mask is None else torch.where(mask.unsqueeze(1), target, 0.0)
    if probs.numel():
        lo, hi = torch.aminmax(probs.detach())
        if not (lo >= 0 and hi <= 1):  # also catches NaN
            raise input_error("target", f"probabilities must lie in [0, 1], got range "
                                        f"[{lo.item():g}, {hi.item():g}]")
        total = probs.detach().sum(1)
        if mask is not None:
            total = torch.where(mask, total, 1.0)
        err = (total - 1).abs().max()
        if err > _SUM_TOL:
            raise input_error("target", f"a probability map must sum to 1 over the class axis 1 "
                                        f"(off by up to {err.item():.3g}); binary maps (N, "
                                        f"*spatial) need task='binary' or a channel axis")
    return probs.to(dtype), mask


def binary_log_probs(logits: Tensor) -> Tensor:
    """``[log(1 - q), log q]`` stacked on axis 1, ``q = sigmoid(logits)``: ``(N, 2, *S)``."""
    return torch.stack((F.logsigmoid(-logits), F.logsigmoid(logits)), 1)


@dataclass(frozen=True)
class DenseInput:
    """Validated loss input in the working layout.

    Attributes:
        task: binary or multi-class.
        logits: multi-class ``(N, C, *S)``; binary ``(N, *S)``.
        index: class indices ``(N, *S)`` int64 (ignored pixels 0), or ``None``.
        probs: target distribution ``(N, K, *S)`` (binary ``[1 - y, y]``), or ``None``.
        mask: kept pixels ``(N, *S)`` (bool), or ``None`` when nothing is ignored.
    """

    task: Task
    logits: Tensor
    index: Tensor | None
    probs: Tensor | None
    mask: Tensor | None

    def log_probs(self) -> Tensor:
        """Log-probabilities ``(N, K, *S)``: log-softmax, or binary ``[logsig(-l), logsig(l)]``."""
        if self.task is Task.BINARY:
            return binary_log_probs(self.logits)
        return F.log_softmax(self.logits, 1)

    def class_logits(self) -> Tensor:
        """Logits ``(N, K, *S)``; binary uses the two-logit form ``[0, l]`` (softmax = sigmoid)."""
        if self.task is Task.BINARY:
            return torch.stack((torch.zeros_like(self.logits), self.logits), 1)
        return self.logits

    def cross_entropy(self, logp: Tensor) -> Tensor:
        """Per-pixel ``-sum_c t_c log p_c`` ``(N, *S)`` (binary: the BCE) from ``logp``."""
        if self.index is not None:
            return -logp.gather(1, self.index.unsqueeze(1)).squeeze(1)
        assert self.probs is not None
        return -(self.probs * logp).sum(1)


def prepare(logits: Tensor, target: Tensor, task: Task | str | None,
            ignore_index: float | None) -> DenseInput:
    """Validate ``(logits, target)`` and bring them to the working layout (module docstring).

    Raises:
        DensecalInputError: bad task, logits, target shape, dtype or values.
    """
    parsed, logits = task_logits(logits, task)
    if not isinstance(target, Tensor):
        raise input_error("target", "must be a tensor")
    if parsed is Task.BINARY:
        y, mask = binary_target(logits, target, ignore_index)
        return DenseInput(parsed, logits, None, torch.stack((1 - y, y), 1), mask)
    spatial = logits.shape[:1] + logits.shape[2:]
    if target.shape == spatial:
        index, mask = index_target(target, logits.shape[1], ignore_index)
        return DenseInput(parsed, logits, index, None, mask)
    if target.shape == logits.shape:
        probs, mask = probability_target(target, logits.dtype, ignore_index)
        return DenseInput(parsed, logits, None, probs, mask)
    raise input_error("target", f"shape {tuple(target.shape)} fits neither a class-index map "
                                f"{tuple(spatial)} nor a probability map {tuple(logits.shape)} "
                                f"for multi-class logits")


def reduce_pixels(loss: Tensor, mask: Tensor | None, reduction: str) -> Tensor:
    """Reduce per-pixel losses ``(N, *S)``, ignored pixels excluded.

    Args:
        loss: per-pixel losses.
        mask: kept pixels (bool, same shape) or ``None``.
        reduction: ``"mean"`` (over kept pixels; 0 if none), ``"sum"`` or ``"none"`` (ignored
            pixels set to 0).

    Returns:
        A scalar, or ``loss`` with ignored pixels zeroed.
    """
    if mask is not None:
        loss = torch.where(mask, loss, 0.0)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    count = max(loss.numel(), 1) if mask is None else mask.sum().clamp_min(1)
    return total / count


class LossOptions(TypedDict):
    """The keyword options every baseline loss function shares."""

    task: Task | None
    reduction: str
    ignore_index: float | None


class DenseLoss(nn.Module):
    """Base of the baseline loss modules: stores and validates the shared options.

    Args:
        task: ``"binary"``, ``"multiclass"`` or ``None`` (infer: multi-class iff
            ``logits.shape[1] > 1``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value marking pixels to ignore, or ``None``.

    Raises:
        DensecalInputError: invalid task or reduction.
    """

    def __init__(self, task: Task | str | None = None, reduction: str = "mean",
                 ignore_index: float | None = None) -> None:
        super().__init__()
        self.task = check_task(task)
        self.reduction = check_reduction(reduction)
        self.ignore_index = ignore_index

    def options(self) -> LossOptions:
        """The shared keyword options, as passed to the functional twins."""
        return LossOptions(task=self.task, reduction=self.reduction,
                           ignore_index=self.ignore_index)

    def extra_repr(self) -> str:
        task = "infer" if self.task is None else self.task.value
        return f"task={task}, reduction={self.reduction}, ignore_index={self.ignore_index}"
