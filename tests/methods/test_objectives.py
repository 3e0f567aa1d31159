"""Every registered method builds a loss that trains a binary map (finite value, gradient)."""

from __future__ import annotations

import pytest
import torch

from densecal.methods import METHODS as REGISTRY
from densecal.methods import build_objective, method_names
from densecal.methods.config import TrainConfig

METHODS = ["aslp", "bce", "ce", "ecp", "focal", "ls", "mbls", "slp", "svls", "vls"]
BINARY_METHODS = [m for m in METHODS if m != "vls"]  # vls is multi-class only (test_vls.py)


def test_registered_methods() -> None:
    """Segmentation objectives plus the families with their own trainers (car, classifier, ud-*)."""
    families = [name for name in method_names() if REGISTRY.create(name).trainer is not None]
    assert method_names() == sorted(METHODS + families)
    assert families == ["car", "classifier", "ud-gt", "ud-student", "ud-teacher"]
    assert all(REGISTRY.create(name).objective is not None for name in METHODS)


@pytest.mark.parametrize("method", BINARY_METHODS)
def test_objective_gives_finite_loss_and_gradient(method: str) -> None:
    torch.manual_seed(0)
    objective = build_objective(TrainConfig(method=method), num_images=3)
    logits = torch.randn(3, 1, 8, 8, requires_grad=True)
    target = (torch.rand(3, 1, 8, 8) > 0.5).float()
    if objective.perturbation is None:
        loss = objective.loss(logits, target)
    else:
        loss = objective.loss(logits, target, alpha=objective.perturbation(torch.arange(3)))
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_bce_methods_agree_where_they_should() -> None:
    """focal with gamma 0 and ecp with beta_H 0 are plain BCE; ls with eps 0 too."""
    logits = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    target = torch.rand(2, 1, 6, 6, dtype=torch.float64).round()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    for config in (TrainConfig(method="focal", gamma=0.0), TrainConfig(method="ecp", beta_h=0.0),
                   TrainConfig(method="ls", eps=0.0)):
        loss = build_objective(config, 2).loss(logits, target)
        assert float(loss) == pytest.approx(float(bce), abs=1e-12), config.method
