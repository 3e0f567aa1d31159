"""The one registry of training methods: every name ``densecal train --method`` accepts.

A method is registered where it is defined, with a decorator (timm's ``register_model``):

- :func:`register_objective` for the segmentation objectives (``bce``, ``aslp``, ``vls`` ...),
  trained by the shared :class:`~densecal.methods.segmentation.SegmentationModule`;
- :func:`register_trainer` for the method families with their own networks and loop
  (``car``, ``classifier``, ``ud-*``).

``METHODS.create(name)`` gives the :class:`Method`; an unknown name raises the one-line
``--method: unknown method ...; choose one of ...`` error. Importing :mod:`densecal.methods`
registers every method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from densecal.registry import Registry

if TYPE_CHECKING:
    from densecal.losses import AdaptivePerturbation
    from densecal.methods.config import TrainConfig

__all__ = ["METHODS", "Method", "MethodLoss", "method_names", "register_objective",
           "register_trainer"]


@dataclass
class MethodLoss:
    """A segmentation method's loss ``loss(logits, target)`` and, for ASLP, the per-image α
    controller (then the loss also takes ``alpha=``)."""

    loss: nn.Module
    perturbation: AdaptivePerturbation | None = None


ObjectiveBuilder = Callable[["TrainConfig", int], MethodLoss]
"""``build(config, num_train_images) -> MethodLoss``; validates the method's options."""
Trainer = Callable[..., Path]
"""``train(config, run_dir, *, resume, progress) -> last checkpoint path``."""


@dataclass(frozen=True)
class Method:
    """A registered training method: exactly one of ``objective`` and ``trainer`` is set."""

    name: str
    objective: ObjectiveBuilder | None = None
    trainer: Trainer | None = None
    reader: str = "densecal predict, evaluate or calibrate"
    """The verbs that read this method's checkpoints (for messages)."""


METHODS: Registry[Method] = Registry("method")


def register_objective(name: str) -> Callable[[ObjectiveBuilder], ObjectiveBuilder]:
    """Register a segmentation objective builder under ``name`` (decorator)."""
    def decorator(build: ObjectiveBuilder) -> ObjectiveBuilder:
        METHODS.register(name)(lambda: Method(name, objective=build))
        return build

    return decorator


def register_trainer(*names: str, reader: str) -> Callable[[Trainer], Trainer]:
    """Register a method family's training entry under each of ``names`` (decorator);
    ``reader`` names the verbs or functions that read its checkpoints."""
    def decorator(train: Trainer) -> Trainer:
        for name in names:
            METHODS.register(name)(_family(name, train, reader))
        return train

    return decorator


def _family(name: str, train: Trainer, reader: str) -> Callable[[], Method]:
    return lambda: Method(name, trainer=train, reader=reader)


def method_names() -> list[str]:
    """The registered method names, sorted."""
    return METHODS.names()
