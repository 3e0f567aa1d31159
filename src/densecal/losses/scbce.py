"""SC-BCE, the Self-Calibrating Binary Cross Entropy of ASLP, and its special cases.

Source: Liu et al., "Model Calibration in Dense Classification with Adaptive Label Perturbation"
(ICCV 2023), Sec. 3, and the official code github.com/Carlisle-Liu/ASLP (``perturbance.py``,
``utils.py``, ``main_ASLP.py``). Formulas are those of docs/methods.md section 1.1.

Each image ``i`` of a batch has a perturbation probability ``alpha_i``. One coin
``Z_i ~ Bernoulli(alpha_i)`` is tossed per image and per call (not per pixel)::

    L = Z_i * BCE(q, p(y, beta)) + (1 - Z_i) * BCE(q, y),      p(y, beta) = (1 - beta) y + beta/2

with ``q = sigmoid(logit)``. BCE is linear in its target, so the expectation over the coin is
``E_Z[L] = BCE(q, (1 - alpha*beta) y + alpha*beta/2)``; its minimiser on a foreground pixel is
``q* = 1 - alpha*beta/2``. Special cases: plain BCE (``alpha = 0``), binary label smoothing with
factor ``eps`` (``alpha = 1, beta = eps``), stochastic label perturbation SLP (one fixed ``alpha``
for every image).

Beta conventions: densecal uses the paper's ``beta`` in ``[0, 2]``. The official code writes the
perturbed target as ``(1 - 2b) y + b``, so ``b = beta / 2``; pass ``beta_convention="code"`` to
give ``b`` instead (``b`` up to 2, i.e. ``beta`` up to 4, the official default ``b = 2``, which
puts targets at -1 / 2 outside ``[0, 1]`` and emits a ``UserWarning``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densecal._checks import check_number, parse_choice
from densecal.errors import input_error
from densecal.losses._common import align, check_reduction, check_target, valid_mask
from densecal.losses._options import BetaConvention, Technique, resolve_beta, technique_beta
from densecal.types import Reduction

__all__ = [
    "BetaConvention",
    "SCBCELoss",
    "Technique",
    "per_image_statistics",
    "perturbed_target",
    "resolve_beta",
    "sc_bce_loss",
    "technique_beta",
]

# -log p for p clamped to [1e-7, 1 - 1e-7], the clamp of the official utils.py
_NLOG_LO = -math.log1p(-1e-7)
_NLOG_HI = -math.log(1e-7)


def perturbed_target(target: Tensor, beta: float | Tensor, noise: Tensor | None = None) -> Tensor:
    """The perturbed label ``p(y, beta) = (1 - beta) * y + beta / 2`` (+ ``noise``).

    Source: ASLP paper Eq. (2) (paper convention; the official code's ``b`` is ``beta / 2``).

    Args:
        target: label map ``y``, any shape, values in ``[0, 1]`` (soft labels allowed).
        beta: paper-convention ``beta`` (a number, or a tensor broadcastable to ``target``).
        noise: optional additive noise broadcastable to ``target`` (the moderation-with-noise
            technique).

    Returns:
        Tensor of ``target``'s shape (floating point).

    Example:
        >>> perturbed_target(torch.tensor([0.0, 1.0]), 1.5)
        tensor([0.7500, 0.2500])
    """
    if not target.is_floating_point():
        target = target.float()
    b = torch.as_tensor(beta, dtype=target.dtype, device=target.device)
    out = torch.addcmul(b / 2, target, 1.0 - b)  # one fused pass over the map
    return out if noise is None else out + noise


def _check_alpha(alpha: float | Tensor, n: int) -> float | Tensor:
    if isinstance(alpha, Tensor):
        if alpha.ndim == 0:
            alpha = alpha.expand(n)
        if alpha.shape != (n,):
            raise input_error("alpha", f"must be a float or a tensor of shape ({n},), got "
                                       f"shape {tuple(alpha.shape)}")
        a = alpha.detach()
        if not bool(((a >= 0) & (a <= 1)).all()):
            raise input_error("alpha", "perturbation probabilities must lie in [0, 1]")
        return alpha
    return check_number("alpha", alpha, 0.0, 1.0, problem="must be a probability in [0, 1]")


def _per_image(value: float | Tensor, like: Tensor) -> float | Tensor:
    """Reshape a per-image tensor (N,) to broadcast over ``like`` (N, ...)."""
    if isinstance(value, Tensor):
        return value.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))
    return value


def _draw(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None,
          normal: bool) -> Tensor:
    """Uniform [0, 1) or standard normal draws on ``generator``'s device, moved to ``like``'s."""
    device = generator.device if generator is not None else like.device
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32  # fine-grained coins
    fn = torch.randn if normal else torch.rand
    out = fn(shape, generator=generator, device=device, dtype=dtype)
    return out.to(device=like.device, dtype=like.dtype) if normal else out.to(like.device)


def sc_bce_loss(logits: Tensor, target: Tensor, alpha: float | Tensor = 0.0,
                beta: float | None = None, *, technique: Technique | str = "hard_inversion",
                beta_convention: BetaConvention | str = "paper", expected: bool = False,
                noise_clip: float = 0.25, reduction: Reduction | str = "mean",
                ignore_index: float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """Self-Calibrating BCE (ASLP paper Eq. 3) on raw logits, one coin per image.

    ``L = Z_i BCE(q, p(y, beta)) + (1 - Z_i) BCE(q, y)``, ``Z_i ~ Bernoulli(alpha_i)``, computed
    with the numerically stable BCE-with-logits. The coin is ``u_i < alpha_i`` with
    ``u_i ~ U[0, 1)`` as in the official ``stochastic_label_perturbation``; no random number is
    drawn when ``alpha`` is the float 0 or 1 (or ``expected=True``), so plain BCE and label
    smoothing leave the random stream untouched.

    Technique ``"moderation_noise"`` (DM) adds to the perturbed target of perturbed images a
    per-pixel ``N(0, 1)`` draw clipped to ``[-noise_clip, noise_clip]`` (docs/methods.md section
    1.1; the
    official code uses a *truncated* normal on the same interval instead). The noise has zero
    mean, so ``expected=True`` ignores it. Input validation reads two scalars back from the
    device (target range, alpha range).

    Args:
        logits: raw logits, shape ``(N, *spatial)`` or ``(N, 1, *spatial)``, floating point.
        target: labels of ``logits``' shape (a missing channel axis of size 1 is added), values in
            ``[0, 1]`` (soft allowed) or ``ignore_index``.
        alpha: perturbation probability in ``[0, 1]``: a float for every image or a tensor
            ``(N,)`` (ASLP's per-image values; a differentiable input when ``expected=True``).
        beta: ``None`` takes the technique's ``beta``; a number overrides it (in
            ``beta_convention``).
        technique: :class:`Technique` or its string value.
        beta_convention: ``"paper"`` (``beta`` in ``[0, 2]``) or ``"code"`` (official ``b``,
            ``beta = 2 b`` up to 4, warns above paper ``beta = 2``).
        expected: use the coin's expectation ``BCE(q, (1 - alpha beta) y + alpha beta / 2)``
            instead of a draw (deterministic).
        noise_clip: clip of the DM noise, ``>= 0``.
        reduction: ``"mean"`` (over non-ignored pixels of the whole batch), ``"sum"`` or
            ``"none"`` (per-pixel loss of ``logits``' shape, 0 at ignored pixels).
        ignore_index: pixels whose target equals it are excluded (also from the mean's
            denominator; an all-ignored batch has mean 0).
        generator: random generator for the coins and the noise (any device; draws are moved to
            ``logits``' device).

    Returns:
        Scalar loss, or per-pixel losses for ``reduction="none"``.

    Raises:
        DensecalInputError: shape mismatch, target or alpha out of range, bad beta, technique,
            convention, reduction or noise_clip.

    Example:
        >>> x = torch.zeros(1, 2)  # q = 0.5
        >>> round(sc_bce_loss(x, torch.ones(1, 2)).item(), 6)  # ln 2
        0.693147
    """
    reduction = _check_options(reduction, noise_clip)
    tech = parse_choice(Technique, technique, "technique")
    beta_p = resolve_beta(beta, tech, beta_convention)
    return _sc_bce(logits, target, alpha, beta_p, tech, expected, float(noise_clip), reduction,
                   ignore_index, generator)


def _check_options(reduction: Reduction | str, noise_clip: float) -> str:
    """The reduction's name, after checking it and ``noise_clip``."""
    name = check_reduction(reduction)
    check_number("noise_clip", noise_clip, 0.0, problem="must be a finite number >= 0")
    return name


def _sc_bce(logits: Tensor, target: Tensor, alpha: float | Tensor, beta_p: float,
            tech: Technique, expected: bool, noise_clip: float, reduction: str,
            ignore_index: float | None, generator: torch.Generator | None) -> Tensor:
    """:func:`sc_bce_loss` with options already validated and ``beta`` in paper convention."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise input_error("logits", "must be a floating-point tensor")
    target = align(logits, target)
    mask = valid_mask(target, ignore_index)
    target = check_target(target, mask).to(logits.dtype)
    n = logits.shape[0]
    alpha = _check_alpha(alpha, n)

    if expected:
        shift = _per_image(alpha, logits) * beta_p  # E[Z] beta, noise has zero mean
        noise = None
    else:
        if isinstance(alpha, float) and alpha in (0.0, 1.0):
            z = alpha
        else:
            u = _draw((n,), logits, generator, normal=False)
            a = alpha.detach().to(u) if isinstance(alpha, Tensor) else alpha
            z = _per_image(u < a, logits)  # Z_i = 1[u_i < alpha_i], one coin per image
        shift = z * beta_p
        noise = None
        if tech is Technique.MODERATION_NOISE and not (isinstance(z, float) and z == 0.0):
            noise = z * _draw(tuple(logits.shape), logits, generator, normal=True).clamp_(
                -noise_clip, noise_clip)
    if isinstance(shift, float) and shift == 0.0 and noise is None:
        soft = target
    else:
        soft = perturbed_target(target, shift, noise)  # (1 - Z beta) y + Z beta / 2 (+ Z noise)
    if mask is None:
        return F.binary_cross_entropy_with_logits(logits, soft, reduction=reduction)
    loss = torch.where(mask, F.binary_cross_entropy_with_logits(logits, soft, reduction="none"),
                       0.0)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / mask.sum().clamp_min(1)


def per_image_statistics(logits: Tensor, target: Tensor,
                         ignore_index: float | None = None) -> tuple[Tensor, Tensor]:
    """Per-image statistics of ASLP's alpha update: mean BCE and mean ``-log(q (1 - q))``.

    ``BCE_i = mean_pixels[-y log q - (1 - y) log(1 - q)]`` with the unperturbed ``y`` and
    ``C_i = mean_pixels[-log(q (1 - q))]``, ``q = sigmoid(logit)`` clamped to
    ``[1e-7, 1 - 1e-7]`` (official ``utils.compute_bce_individual`` and
    ``compute_entropy_individual``). Computed without gradient from detached float32 logits in
    one pass: ``-log q = softplus(-l)``, ``-log(1 - q) = softplus(l)``, clamped in the log
    domain (the same clamp as on ``q``, but without float32 round-off of ``q`` near 1), then
    three per-image reductions.
    Note ``C_i - 2 BCE_i = mean[(2y - 1) logit]`` (unclamped), the signed logit margin.

    Args:
        logits: raw logits ``(N, *spatial)`` or ``(N, 1, *spatial)``.
        target: labels of the same shape, values in ``[0, 1]`` or ``ignore_index``.
        ignore_index: pixels whose target equals it are left out of the means.

    Returns:
        ``(bce, c)``, two float32 tensors of shape ``(N,)`` on ``logits``' device; NaN for an
        image whose pixels are all ignored.

    Raises:
        DensecalInputError: shape mismatch or target values out of range.

    Example:
        >>> bce, c = per_image_statistics(torch.zeros(1, 4), torch.ones(1, 4))
        >>> round(bce.item(), 6), round(c.item(), 6)  # ln 2, 2 ln 2
        (0.693147, 1.386294)
    """
    with torch.no_grad():
        target = align(logits, target)
        mask = valid_mask(target, ignore_index)
        y = check_target(target, mask).to(torch.float32).flatten(1)
        lg = logits.detach().to(torch.float32).flatten(1)
        nlq = F.softplus(-lg).clamp_(_NLOG_LO, _NLOG_HI)  # -log q, q clamped to [eps, 1 - eps]
        nl1mq = F.softplus(lg).clamp_(_NLOG_LO, _NLOG_HI)  # -log(1 - q)
        # per image: sum BCE = sum[-log(1-q)] + sum[y (-log q + log(1-q))], sum C = sum of both
        if mask is None:
            count = torch.tensor(float(lg.shape[1]), device=lg.device)
            s_q, s_1mq = nlq.sum(1), nl1mq.sum(1)
        else:
            m = mask.flatten(1).to(torch.float32)
            count = m.sum(1)  # 0 -> NaN below, by design
            y = y * m
            s_q, s_1mq = torch.linalg.vecdot(m, nlq), torch.linalg.vecdot(m, nl1mq)
        s_y = torch.linalg.vecdot(y, nlq.sub_(nl1mq))
        return (s_1mq + s_y) / count, (s_q + s_1mq) / count


class SCBCELoss(nn.Module):
    """Self-Calibrating BCE as an ``nn.Module`` (see :func:`sc_bce_loss` for the formula).

    Covers plain BCE (``alpha=0``), binary label smoothing (:meth:`label_smoothing`), SLP with a
    fixed ``alpha`` (:meth:`slp`) and ASLP (pass the per-image ``alpha (N,)`` of an
    :class:`~densecal.losses.aslp.AdaptivePerturbation` to :meth:`forward`).

    Args:
        alpha: default perturbation probability in ``[0, 1]`` for every image.
        beta: ``None`` (take it from ``technique``) or a number in ``beta_convention``.
        technique: :class:`Technique` or its string value.
        beta_convention: ``"paper"`` or ``"code"`` (official ``b = beta / 2``).
        expected: use the expectation over the coin instead of a draw.
        noise_clip: clip of the moderation-with-noise noise.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: target value marking pixels to ignore.

    Raises:
        DensecalInputError: invalid option values.

    Example:
        >>> loss = SCBCELoss.label_smoothing(0.1)
        >>> float(loss(torch.zeros(1, 3), torch.ones(1, 3))) == float(torch.log(torch.tensor(2.)))
        True
    """

    def __init__(self, alpha: float = 0.0, beta: float | None = None,
                 technique: Technique | str = "hard_inversion",
                 beta_convention: BetaConvention | str = "paper",
                 expected: bool = False, noise_clip: float = 0.25,
                 reduction: Reduction | str = "mean",
                 ignore_index: float | None = None) -> None:
        super().__init__()
        _check_alpha(alpha, 1)
        self.technique = parse_choice(Technique, technique, "technique")
        self.beta = resolve_beta(beta, self.technique, beta_convention)  # paper, up to 4
        self.alpha = float(alpha)
        self.expected = bool(expected)
        self.reduction = _check_options(reduction, noise_clip)
        self.noise_clip = float(noise_clip)
        self.ignore_index = ignore_index

    @classmethod
    def bce(cls, **kwargs: object) -> SCBCELoss:
        """Plain BCE on logits (``alpha = 0``)."""
        return cls(alpha=0.0, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def label_smoothing(cls, eps: float = 0.1, **kwargs: object) -> SCBCELoss:
        """Binary label smoothing ``y -> (1 - eps) y + eps / 2`` (``alpha = 1, beta = eps``)."""
        return cls(alpha=1.0, beta=eps, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def slp(cls, alpha: float, technique: Technique | str = "hard_inversion",
            **kwargs: object) -> SCBCELoss:
        """Stochastic label perturbation: one fixed ``alpha`` for every image."""
        return cls(alpha=alpha, technique=technique, **kwargs)  # type: ignore[arg-type]

    def forward(self, logits: Tensor, target: Tensor, alpha: Tensor | float | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Compute the loss.

        Args:
            logits: raw logits ``(N, *spatial)`` or ``(N, 1, *spatial)``.
            target: labels of the same shape in ``[0, 1]``.
            alpha: optional override of the module's ``alpha``: a float or a tensor ``(N,)``.
            generator: optional random generator for the coins and noise.

        Returns:
            The reduced loss, or per-pixel losses for ``reduction="none"``.
        """
        return _sc_bce(logits, target, self.alpha if alpha is None else alpha, self.beta,
                       self.technique, self.expected, self.noise_clip, self.reduction,
                       self.ignore_index, generator)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, technique={self.technique.value}, "
                f"expected={self.expected}, reduction={self.reduction}, "
                f"ignore_index={self.ignore_index}")
