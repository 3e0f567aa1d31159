"""Temperature-scaled NLL of dense predictions and its exact derivatives in ``log T``.

Pixels are first flattened by :func:`flatten_pixels` (validation, ``ignore_index``), then
:func:`scaled_nll_terms` returns, in float64, the summed NLL of the logits divided by ``T`` and
its first two derivatives with respect to ``s = log T``. Summed terms add over batches, so a
stream of batches gives exactly the totals of one big batch.

Formulas (``beta = 1/T = exp(-s)``, ``z' = beta * z`` the scaled logits):

* binary (BCE with logits, target ``y`` in ``[0, 1]``, hard or soft)::

      l = softplus(z') - y z'
      dl/ds = -m,            m = z' (sigmoid(z') - y)
      d2l/ds2 = v + m,       v = z'^2 sigmoid(z') sigmoid(-z')

* multi-class (CE over ``C`` classes, class index ``y`` or probability vector ``q``)::

      l = -<q, log p> = |q| logsumexp(z') - <q, z'>,   p = softmax(z'),  |q| = sum_k q_k = 1
      dl/ds = -m,            m = |q| E_p[z'] - <q, z'>
      d2l/ds2 = v + m,       v = |q| Var_p[z']

  (``|q|`` is kept in the formulas so that float32 probability maps whose sums round away
  from 1 get the exact derivatives of ``-<q, log p>``.)

As a function of ``beta`` both losses are convex (second derivative ``z^2 s(1-s) >= 0``, resp.
``Var_p[z] >= 0``), hence unimodal in ``s = log T``: the basis of the bracketed 1-D search in
:mod:`densecal.posthoc.search`. Temperature scaling itself: Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017, Sec. 4.2; docs/methods.md section 2.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from densecal.errors import input_error
from densecal.types import Task

__all__ = ["Task", "flatten_pixels", "infer_task", "scaled_nll_terms"]


# float64 elements per block in scaled_nll_terms: bounds the temporaries to a few times 32 MB
_BLOCK_ELEMENTS = 1 << 22
_SOFT_SUM_TOL = 1e-3


def infer_task(logits: Tensor, target: Tensor, where: str = "batches") -> Task:
    """Guess the task from the shapes of one batch.

    Rules: a channel axis in the logits that the target lacks (``logits.ndim == target.ndim + 1``)
    means binary when it has one channel and multi-class (class-index target) otherwise; equal
    shapes mean binary (or multi-label, each channel its own binary map). Soft multi-class targets
    ``(N, C, *S)`` have the logits' shape, so they need ``task="multiclass"`` explicitly.

    Args:
        logits: ``(N, *S)``, ``(N, 1, *S)`` or ``(N, C, *S)``.
        target: ``(N, *S)`` or the logits' shape.
        where: name used in error messages.

    Returns:
        ``"binary"`` or ``"multiclass"``.

    Raises:
        DensecalInputError: when the shapes fit neither task.

    Example:
        >>> str(infer_task(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)))
        'multiclass'
    """
    if logits.ndim == target.ndim + 1 and logits.ndim >= 2:
        return Task.BINARY if logits.shape[1] == 1 else Task.MULTICLASS
    if logits.shape == target.shape or target.ndim == logits.ndim + 1:
        return Task.BINARY
    raise input_error(where, f"target shape {tuple(target.shape)} does not fit logits shape "
                             f"{tuple(logits.shape)} (expected (N, *S) targets for (N, C, *S) "
                             "logits, or equal shapes)")


def _binary_pair(logits: Tensor, target: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """Bring binary logits and targets to the same shape (dropping a singleton channel)."""
    if logits.shape == target.shape:
        return logits, target
    if logits.ndim == target.ndim + 1 and logits.shape[1] == 1 \
            and logits.shape[:1] + logits.shape[2:] == target.shape:
        return logits.squeeze(1), target
    if target.ndim == logits.ndim + 1 and target.shape[1] == 1 \
            and target.shape[:1] + target.shape[2:] == logits.shape:
        return logits, target.squeeze(1)
    raise input_error(where, f"binary target shape {tuple(target.shape)} does not match logits "
                             f"shape {tuple(logits.shape)}")


def _check_finite(logits: Tensor, where: str) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise input_error(where, "logits contain NaN or infinite values")


def flatten_pixels(logits: Tensor, target: Tensor, *, task: Task, ignore_index: int | None = None,
                   check_values: bool = True, where: str = "batches") -> tuple[Tensor, Tensor]:
    """Validate one batch and flatten it to its non-ignored pixels.

    Args:
        logits: binary ``(N, *S)`` or ``(N, 1, *S)``; multi-class ``(N, C, *S)`` with
            ``C >= 2``; any floating dtype, finite values.
        target: binary: the logits' shape (with or without the singleton channel), values in
            ``[0, 1]`` (hard or soft; any real, integer or bool dtype). Multi-class: an integer
            class-index map ``(N, *S)`` with values in ``[0, C)``, or a floating probability map
            ``(N, C, *S)`` (non-negative, summing to 1 over ``C`` within 1e-3).
        task: ``"binary"`` or ``"multiclass"``.
        ignore_index: target value whose pixels are dropped (index maps and binary maps; not
            applicable to probability maps).
        check_values: check finiteness and target ranges (costs a device sync; shapes are always
            checked).
        where: name used in error messages (e.g. ``"batches[3]"``).

    Returns:
        ``(z, y)`` detached: binary ``z (P,)`` and ``y (P,)``; multi-class ``z (P, C)`` with
        ``y (P,)`` (long) or ``y (P, C)`` (probabilities); ``P`` the kept pixels.

    Raises:
        DensecalInputError: bad shapes, dtypes, non-finite logits or targets out of range.
    """
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise input_error(where, "each item must be a (logits, target) pair of tensors")
    if not logits.is_floating_point():
        raise input_error(where, f"logits must be a floating tensor, got {logits.dtype}")
    logits, target = logits.detach(), target.detach()
    if logits.numel() == 0:
        raise input_error(where, "logits are empty")
    if task == "binary":
        z, y = _binary_pair(logits, target, where)
        z, y = z.reshape(-1), y.reshape(-1)
        if ignore_index is not None:
            keep = y != ignore_index
            z, y = z[keep], y[keep]
        if check_values:
            _check_finite(z, where)
            yf = y.double()
            if y.numel() and not bool(((yf >= 0) & (yf <= 1)).all()):
                raise input_error(where, "binary targets must lie in [0, 1]"
                                         + ("" if ignore_index is None else
                                            f" (or equal ignore_index={ignore_index})"))
        return z, y
    if logits.ndim < 2 or logits.shape[1] < 2:
        raise input_error(where, f"multi-class logits must be (N, C, *S) with C >= 2, got shape "
                                 f"{tuple(logits.shape)}")
    n_classes = logits.shape[1]
    z = logits.movedim(1, -1).reshape(-1, n_classes)
    if target.shape == logits.shape and target.is_floating_point():
        q = target.movedim(1, -1).reshape(-1, n_classes)
        if check_values:
            _check_finite(z, where)
            sums = q.double().sum(-1)
            if not bool((q >= 0).all()) or not bool(((sums - 1).abs() <= _SOFT_SUM_TOL).all()):
                raise input_error(where, "soft multi-class targets must be non-negative and sum "
                                         "to 1 over the class axis")
        return z, q
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise input_error(where, f"multi-class target shape {tuple(target.shape)} does not match "
                                 f"logits shape {tuple(logits.shape)} (expected (N, *S) indices "
                                 "or (N, C, *S) probabilities)")
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise input_error(where, f"multi-class class-index targets must be integers, got "
                                 f"{target.dtype}")
    y = target.reshape(-1)
    if ignore_index is not None:
        keep = y != ignore_index
        z, y = z[keep], y[keep]
    if check_values:
        _check_finite(z, where)
        if y.numel() and not bool(((y >= 0) & (y < n_classes)).all()):
            raise input_error(where, f"class indices must lie in [0, {n_classes})"
                                     + ("" if ignore_index is None else
                                        f" or equal ignore_index={ignore_index}"))
    return z, y.long()


def _binary_terms(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sums of NLL, dNLL/ds and d2NLL/ds2 for scaled binary logits ``z`` (float64)."""
    sig, sig_neg = torch.sigmoid(z), torch.sigmoid(-z)
    nll = z.clamp_min(0) - y * z + torch.log1p(torch.exp(-z.abs()))
    m = z * (sig - y)
    v = z * z * sig * sig_neg
    return nll.sum(), -m.sum(), (v + m).sum()


def _multiclass_terms(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sums of NLL, dNLL/ds and d2NLL/ds2 for scaled multi-class logits ``z (P, C)`` (float64)."""
    log_p = torch.log_softmax(z, dim=-1)
    p = log_p.exp()
    mean = (p * z).sum(-1)
    v = (p * (z - mean[:, None]).square()).sum(-1)
    if y.ndim == 1:
        z_y = z.gather(1, y[:, None]).squeeze(1)
        nll = -log_p.gather(1, y[:, None]).sum()
        m = mean - z_y
    else:  # exact for any mass sum(q), so float32 rounding of q costs no accuracy
        mass = y.sum(-1)
        nll = -(y * log_p).sum()
        m = mass * mean - (y * z).sum(-1)
        v = mass * v
    return nll, -m.sum(), (v + m).sum()


def scaled_nll_terms(z: Tensor, y: Tensor, log_t: float) -> tuple[Tensor, Tensor, Tensor]:
    """Summed NLL of ``z / T`` and its first two derivatives in ``s = log T``, in float64.

    Args:
        z: flattened logits from :func:`flatten_pixels`: ``(P,)`` binary or ``(P, C)``
            multi-class.
        y: the matching targets: ``(P,)`` in ``[0, 1]`` (binary), ``(P,)`` class indices or
            ``(P, C)`` probabilities (multi-class).
        log_t: ``s = log T``.

    Returns:
        Three float64 0-dim tensors on ``z``'s device: ``sum_pixels l``, ``sum dl/ds`` and
        ``sum d2l/ds2`` (formulas in the module docstring). Divide by ``P`` for means.

    Example:
        One pixel with logit ``log 3`` (``q = 3/4``) and target 1 at ``T = 1``: ``l = -log(3/4)``,
        ``dl/ds = log(3)/4``, ``d2l/ds2 = 3 log(3)^2/16 - log(3)/4``.

        >>> terms = scaled_nll_terms(torch.tensor([math.log(3.0)]), torch.ones(1), 0.0)
        >>> [round(t.item(), 6) for t in terms]
        [0.287682, 0.274653, -0.04835]
    """
    beta = math.exp(-log_t)
    totals = torch.zeros(3, dtype=torch.float64, device=z.device)
    per_row = 1 if z.ndim == 1 else z.shape[1]
    rows = max(1, _BLOCK_ELEMENTS // per_row)
    terms = _binary_terms if z.ndim == 1 else _multiclass_terms
    for start in range(0, z.shape[0], rows):
        zb = z[start:start + rows].double() * beta
        yb = y[start:start + rows]
        yb = yb if (yb.ndim == 1 and z.ndim == 2) else yb.double()
        totals += torch.stack(terms(zb, yb))
    return totals[0], totals[1], totals[2]
