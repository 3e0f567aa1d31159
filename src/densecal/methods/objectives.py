"""Training objectives by method name: what ``densecal train --method NAME`` optimises.

Each entry builds the pixel loss and, for ASLP, the per-image α controller from a
:class:`~densecal.methods.config.TrainConfig`. ``bce``, ``ls``, ``slp`` and ``aslp`` are members of
the SC-BCE family (METHODS.md 1.1): BCE is α = 0, label smoothing is α = 1, β = ε, SLP is a fixed
α, and ASLP learns α per image. ``focal``, ``ecp``, ``mbls`` and ``svls`` are the calibration
baselines of METHODS.md section 2, applied to the sigmoid output.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from densecal.losses import (
    AdaptivePerturbation,
    EntropyPenaltyLoss,
    FocalLoss,
    MbLSLoss,
    SCBCELoss,
    SVLSLoss,
)
from densecal.methods.config import TrainConfig
from densecal.registry import Registry

__all__ = ["OBJECTIVES", "Objective", "build_objective", "method_names"]


@dataclass
class Objective:
    """A method's loss ``loss(logits, target)`` and, for ASLP, the per-image α controller (then
    the loss also takes ``alpha=``)."""

    loss: nn.Module
    perturbation: AdaptivePerturbation | None = None


OBJECTIVES: Registry[Objective] = Registry("method")


@OBJECTIVES.register("bce")
def _bce(config: TrainConfig, num_images: int) -> Objective:
    """Plain binary cross entropy (SC-BCE with α = 0)."""
    return Objective(SCBCELoss(alpha=0.0))


@OBJECTIVES.register("ls")
def _ls(config: TrainConfig, num_images: int) -> Objective:
    """Label smoothing with factor ε: SC-BCE with α = 1, β = ε."""
    return Objective(SCBCELoss(alpha=1.0, beta=config.eps))


@OBJECTIVES.register("slp")
def _slp(config: TrainConfig, num_images: int) -> Objective:
    """Stochastic label perturbation: SC-BCE with the same fixed α for every image."""
    return Objective(SCBCELoss(alpha=config.alpha, beta=config.beta, technique=config.technique,
                               beta_convention=config.beta_convention))


@OBJECTIVES.register("aslp")
def _aslp(config: TrainConfig, num_images: int) -> Objective:
    """Adaptive stochastic label perturbation: SC-BCE with a learned α per image."""
    loss = SCBCELoss(beta=config.beta, technique=config.technique,
                     beta_convention=config.beta_convention)
    # loss.beta is the resolved β in the paper convention (up to 4 when the code's b is given)
    controller = AdaptivePerturbation(
        num_images, loss.beta / 2.0 if config.beta_convention == "code" else loss.beta,
        lr=config.aslp_lr, penalty=config.aslp_penalty, warmup_epochs=config.aslp_warmup,
        objective=config.aslp_objective, beta_convention=config.beta_convention,
    )
    return Objective(loss, controller)


@OBJECTIVES.register("focal")
def _focal(config: TrainConfig, num_images: int) -> Objective:
    """Focal loss, γ = ``config.gamma`` (METHODS.md 2; γ = 0 is BCE)."""
    return Objective(FocalLoss(gamma=config.gamma, task="binary"))


@OBJECTIVES.register("ecp")
def _ecp(config: TrainConfig, num_images: int) -> Objective:
    """BCE minus β_H times the Bernoulli entropy (confidence penalty, β_H = 0.1)."""
    return Objective(EntropyPenaltyLoss(beta_h=config.beta_h, task="binary"))


@OBJECTIVES.register("mbls")
def _mbls(config: TrainConfig, num_images: int) -> Objective:
    """Margin-based label smoothing (Liu et al. 2022), margin 10, λ 0.1, two-logit form."""
    return Objective(MbLSLoss(margin=config.margin, lam=config.mbls_lambda, task="binary"))


@OBJECTIVES.register("svls")
def _svls(config: TrainConfig, num_images: int) -> Objective:
    """Spatially varying label smoothing (Islam & Glocker 2021), 3x3 Gaussian, σ = 1."""
    return Objective(SVLSLoss(kernel_size=3, sigma=config.svls_sigma, task="binary"))


def build_objective(config: TrainConfig, num_images: int) -> Objective:
    """The loss (and ASLP controller) for ``config.method``.

    Raises:
        DensecalInputError: unknown method name.
    """
    return OBJECTIVES.get(config.method)(config, num_images)


def method_names() -> list[str]:
    """Registered method names."""
    return OBJECTIVES.names()
