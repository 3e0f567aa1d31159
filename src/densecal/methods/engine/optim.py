"""The optimiser of a run: Adam with an optional learning-rate decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from densecal.methods.config import TrainConfig, lr_factor

__all__ = ["adam_schedule"]


def adam_schedule(parameters: Iterable[nn.Parameter], config: TrainConfig) -> Any:
    """Lightning's ``configure_optimizers`` value for a run: Adam at ``config.lr`` (torch's
    default betas, as the official ASLP code) and, when ``config.lr_decay != 1``, the learning
    rate times :func:`~densecal.methods.config.lr_factor` of the epoch (``step`` or the official
    ``compound`` rule, ``docs/methods.md`` section 1.3), updated at each epoch's end."""
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    if config.lr_decay == 1.0:
        return optimizer
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                 lambda epoch: lr_factor(config, epoch))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
