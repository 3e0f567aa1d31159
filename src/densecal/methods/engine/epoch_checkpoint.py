"""The checkpoint callback: ``last.ckpt`` after every epoch, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from densecal.methods.engine.checkpoints import write_checkpoint

__all__ = ["EpochCheckpoint", "RunFolderCheckpointIO"]


class RunFolderCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer replaced by :func:`write_checkpoint`: atomic, written
    beside its destination and never staged in ``$TMPDIR``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str],
                        storage_options: Any | None = None) -> None:
        write_checkpoint(checkpoint, path)


class EpochCheckpoint(Callback):
    """Write ``last.ckpt`` atomically at the end of every training epoch (after validation).

    Lightning's ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes ``last.ckpt`` only when
    another checkpoint was saved in the same step, i.e. once at the end of training (Lightning
    2.6), so a killed run could not resume. Here every epoch ends with a complete checkpoint
    (weights, optimiser, schedulers, module buffers such as ASLP's alpha table, loop state)
    written atomically by :class:`RunFolderCheckpointIO` (the trainer's checkpoint plugin): a
    kill at any moment leaves the last finished epoch's checkpoint intact.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning 2 runs the epoch's validation before this hook."""
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path)  # collective; rank 0 writes, atomically
