"""The optimiser of a run: Adam with an optional step decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from densecal.methods.config import TrainConfig

__all__ = ["adam_schedule"]


def adam_schedule(parameters: Iterable[nn.Parameter], config: TrainConfig) -> Any:
    """Lightning's ``configure_optimizers`` value for a run: Adam at ``config.lr`` and, when
    ``config.lr_decay != 1``, the learning rate times ``lr_decay ** (epoch // lr_decay_every)``
    (the ASLP recipe's step decay, ``docs/methods.md``)."""
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    if config.lr_decay == 1.0:
        return optimizer
    every, decay = config.lr_decay_every, config.lr_decay
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: decay ** (epoch // every))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
