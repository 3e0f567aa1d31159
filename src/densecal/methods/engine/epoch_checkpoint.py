"""The checkpoint callback: ``last.ckpt`` after every epoch, written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from densecal.atomic import atomic_write_bytes

__all__ = ["EpochCheckpoint", "RunFolderCheckpointIO"]


class RunFolderCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing only inside the run folder.

    Lightning's own writer goes through fsspec, which stages the file in ``$TMPDIR``: a small
    ``/tmp`` failed training although the run folder had room. Here the checkpoint is serialised
    in memory and written beside its destination (:func:`densecal.atomic.atomic_write_bytes`), so
    a full disk names the checkpoint file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str],
                        storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


class EpochCheckpoint(Callback):
    """Write ``last.ckpt`` atomically at the end of every training epoch (after validation).

    Lightning's ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes ``last.ckpt`` only when
    another checkpoint was saved in the same step, i.e. once at the end of training (Lightning
    2.6), so a killed run could not resume. Here every epoch ends with a complete checkpoint
    (weights, optimiser, schedulers, module buffers such as ASLP's alpha table, loop state)
    written to a temporary file and renamed over the previous one: a kill at any moment leaves
    the last finished epoch's checkpoint intact.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning 2 runs the epoch's validation before this hook."""
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)  # collective; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
