"""Training objectives by method name: what ``densecal train --method NAME`` optimises.

Each entry builds the pixel loss and, for ASLP, the per-image α controller from a
:class:`~densecal.methods.config.TrainConfig`. ``bce``, ``ls``, ``slp`` and ``aslp`` are members of
the SC-BCE family (docs/methods.md section 1.1): BCE is α = 0, label smoothing is α = 1, β = ε, SLP
is a fixed
α, and ASLP learns α per image. ``focal``, ``ecp``, ``mbls`` and ``svls`` are the calibration
baselines of docs/methods.md section 2, applied to the sigmoid output.

With ``config.num_classes = K >= 2`` the network has ``K`` softmax channels and the target is a
class-index map ``(N, *S)``: ``ce`` (plain cross entropy), ``ls``, ``focal``, ``ecp``, ``mbls``
and ``svls`` use their ``task="multiclass"`` forms with ``config.ignore_index``; ``bce``,
``slp`` and ``aslp`` are binary-only and refused. For ``K = 1``, ``ce`` is an alias of ``bce``.
``vls`` (CALSeg's variational label smoothing, docs/methods.md section 3) is multi-class only: its
objective is the KL to soft labels that its own stage 1 produces (:mod:`densecal.methods.vls`).
"""

from __future__ import annotations

from typing import Any

from densecal._checks import check_int, check_number, is_int, parse_choice
from densecal.errors import input_error
from densecal.losses.aslp import AdaptivePerturbation
from densecal.losses.entropy import EntropyPenaltyLoss
from densecal.losses.focal import FocalLoss
from densecal.losses.label_smoothing import LabelSmoothingLoss
from densecal.losses.mbls import MbLSLoss
from densecal.losses.scbce import SCBCELoss
from densecal.losses.soft_label import SoftLabelKLLoss
from densecal.losses.svls import SVLSLoss
from densecal.methods.config import RUN_LIMITS, TrainConfig, VLSVariant
from densecal.methods.registry import METHODS, MethodLoss, register_objective

__all__ = ["build_objective", "is_multiclass"]


def is_multiclass(config: TrainConfig) -> bool:
    """Whether ``config`` trains a softmax over ``num_classes >= 2`` channels.

    Raises:
        DensecalInputError: ``num_classes`` is not a positive integer, or ``ignore_index`` is set
            for a binary run or is not an integer outside ``0..num_classes-1``.
    """
    k = config.num_classes
    check_int("--num-classes", k, low=1)
    ignore = config.ignore_index
    if ignore is not None:
        if k == 1:
            raise input_error("--ignore-index", "is for multi-class runs (--num-classes >= 2)")
        if not is_int(ignore) or 0 <= ignore < k:
            raise input_error("--ignore-index", f"must be an integer outside the class range "
                              f"0..{k - 1}, got {ignore!r}")
    return k >= 2


def _binary_only(config: TrainConfig) -> None:
    if is_multiclass(config):
        raise input_error("--method", f"method {config.method} is binary-only; use ce for "
                          f"--num-classes {config.num_classes}")


def _multiclass(config: TrainConfig) -> dict[str, Any]:
    """Loss options of ``config``'s task: ``task`` and, for multi-class, ``ignore_index``."""
    if is_multiclass(config):
        return {"task": "multiclass", "ignore_index": config.ignore_index}
    return {"task": "binary"}


@register_objective("bce")
def _bce(config: TrainConfig, num_images: int) -> MethodLoss:
    """Plain binary cross entropy (SC-BCE with α = 0). Binary-only."""
    _binary_only(config)
    return MethodLoss(SCBCELoss(alpha=0.0))


@register_objective("ce")
def _ce(config: TrainConfig, num_images: int) -> MethodLoss:
    """Plain cross entropy: softmax CE over ``K`` classes (label smoothing with ε = 0, which
    skips ``ignore_index`` pixels); for a binary run, the same as ``bce``."""
    if not is_multiclass(config):
        return _bce(config, num_images)
    return MethodLoss(LabelSmoothingLoss(eps=0.0, **_multiclass(config)))


@register_objective("ls")
def _ls(config: TrainConfig, num_images: int) -> MethodLoss:
    """Label smoothing with factor ε: SC-BCE with α = 1, β = ε (binary); multi-class target
    ``(1 − ε)·onehot + ε/K`` (Szegedy et al. 2016)."""
    if is_multiclass(config):
        return MethodLoss(LabelSmoothingLoss(eps=config.eps, **_multiclass(config)))
    return MethodLoss(SCBCELoss(alpha=1.0, beta=config.eps))


@register_objective("slp")
def _slp(config: TrainConfig, num_images: int) -> MethodLoss:
    """Stochastic label perturbation: SC-BCE with the same fixed α for every image. Binary-only."""
    _binary_only(config)
    return MethodLoss(SCBCELoss(alpha=config.alpha, beta=config.beta, technique=config.technique,
                               beta_convention=config.beta_convention))


@register_objective("aslp")
def _aslp(config: TrainConfig, num_images: int) -> MethodLoss:
    """Adaptive stochastic label perturbation: SC-BCE with a learned α per image. Binary-only."""
    _binary_only(config)
    loss = SCBCELoss(beta=config.beta, technique=config.technique,
                     beta_convention=config.beta_convention)
    # loss.beta is the resolved β in the paper convention (up to 4 when the code's b is given)
    controller = AdaptivePerturbation(
        num_images, loss.beta / 2.0 if config.beta_convention == "code" else loss.beta,
        lr=config.aslp_lr, penalty=config.aslp_penalty, warmup_epochs=config.aslp_warmup,
        objective=config.aslp_objective, beta_convention=config.beta_convention,
    )
    return MethodLoss(loss, controller)


@register_objective("focal")
def _focal(config: TrainConfig, num_images: int) -> MethodLoss:
    """Focal loss, γ = ``config.gamma`` (docs/methods.md section 2; γ = 0 is BCE / CE)."""
    return MethodLoss(FocalLoss(gamma=config.gamma, **_multiclass(config)))


@register_objective("ecp")
def _ecp(config: TrainConfig, num_images: int) -> MethodLoss:
    """(B)CE minus β_H times the Bernoulli / softmax entropy (confidence penalty, β_H = 0.1)."""
    return MethodLoss(EntropyPenaltyLoss(beta_h=config.beta_h, **_multiclass(config)))


@register_objective("mbls")
def _mbls(config: TrainConfig, num_images: int) -> MethodLoss:
    """Margin-based label smoothing (Liu et al. 2022), margin 10, λ 0.1 (binary: two-logit
    form)."""
    return MethodLoss(MbLSLoss(margin=config.margin, lam=config.mbls_lambda, **_multiclass(config)))


@register_objective("svls")
def _svls(config: TrainConfig, num_images: int) -> MethodLoss:
    """Spatially varying label smoothing (Islam & Glocker 2021), 3x3 Gaussian, σ = 1."""
    return MethodLoss(SVLSLoss(kernel_size=3, sigma=config.svls_sigma, **_multiclass(config)))


def _positive_int(option: str, value: object) -> None:
    check_int(option, value, low=1)


@register_objective("vls")
def _vls(config: TrainConfig, num_images: int) -> MethodLoss:
    """CALSeg's variational label smoothing, stage 2 (Guo et al. 2024, docs/methods.md section 3):
    pixel-mean ``KL(Y_s || softmax)`` against the cached soft labels ``Y_s`` (``batch["soft"]``).
    Multi-class only; also validates the ``vls_*`` options (the stages themselves are run by
    :func:`densecal.methods.train.train`, see :mod:`densecal.methods.vls`)."""
    if not is_multiclass(config):
        raise input_error("--method", "method vls needs a multi-class run (--num-classes >= 2)")
    _positive_int("--vls-samples", config.vls_samples)
    _positive_int("--vls-latent", config.vls_latent)
    if config.vls_stage1_epochs is not None:
        _positive_int("--vls-stage1-epochs", config.vls_stage1_epochs)
    check_number("--vls-tau", config.vls_tau, 0.0, low_open=True)
    check_number("--vls-mix", config.vls_mix, 0.0, 1.0)
    check_number("--vls-stage1-lr", config.vls_stage1_lr, 0.0, low_open=True)
    parse_choice(VLSVariant, config.vls_variant, "--vls-variant")
    check_int("--vls-kl-warmup", config.vls_kl_warmup, low=0, high=RUN_LIMITS["epochs"])
    check_int("--vls-folds", config.vls_folds, low=1, high=100)
    check_number("--vls-kl-weight", config.vls_kl_weight, 0.0, 1e6, low_open=True)
    return MethodLoss(SoftLabelKLLoss(ignore_index=config.ignore_index))


def build_objective(config: TrainConfig, num_images: int) -> MethodLoss:
    """The loss (and ASLP controller) for ``config.method``.

    Raises:
        DensecalInputError: unknown method name, a method family with its own networks, a
            binary-only method with ``num_classes >= 2``, bad ``num_classes`` /
            ``ignore_index`` or method options.
    """
    method = METHODS.create(config.method)
    if method.objective is None:
        raise input_error("--method", f"method {config.method} trains its own networks; it "
                                      f"has no segmentation objective")
    return method.objective(config, num_images)
