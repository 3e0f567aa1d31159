"""The training engine: everything a run needs that knows no method.

One framework concept per file: :mod:`~.run_folder` (where a run lives, resume rules),
:mod:`~.seeding` (keyed random streams), :mod:`~.sampler` (the sharded epoch order),
:mod:`~.data_module` (the Lightning data module), :mod:`~.epoch_checkpoint` (the checkpoint
callback), :mod:`~.checkpoints` (reading checkpoints safely), :mod:`~.optim` (the optimiser) and
:mod:`~.fit` (the Trainer and the fit loop).
"""

from __future__ import annotations

from densecal.methods.engine.data_module import EpochData
from densecal.methods.engine.epoch_checkpoint import EpochCheckpoint
from densecal.methods.engine.fit import fit_family_run, run_trainer
from densecal.methods.engine.run_folder import (
    is_primary_process,
    last_checkpoint,
    resume_or_refuse,
    run_folder,
)
from densecal.methods.engine.sampler import EpochSampler, SeededItems

__all__ = [
    "EpochCheckpoint",
    "EpochData",
    "EpochSampler",
    "SeededItems",
    "fit_family_run",
    "is_primary_process",
    "last_checkpoint",
    "resume_or_refuse",
    "run_folder",
    "run_trainer",
]
