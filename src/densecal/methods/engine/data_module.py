"""The Lightning data module of every densecal run: sharded, seeded epochs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from densecal.methods.config import TrainConfig
from densecal.methods.engine.sampler import EpochSampler, SeededItems

__all__ = ["EpochData"]


class EpochData(L.LightningDataModule):
    """Training (and validation) loaders sharded over the trainer's processes by
    :class:`EpochSampler` over :class:`SeededItems`, built once Lightning knows the ranks (also
    under ``ddp_spawn``). Used with ``Trainer(use_distributed_sampler=False)``.

    Items may be anything the default collate stacks (the dicts of
    :class:`~densecal.data.FolderDataset`, the tuples of
    :class:`~densecal.data.classification.ClassificationDataset`).

    Args:
        config: ``batch_size``, ``num_workers`` and ``seed`` are used.
        train_set: training dataset (shuffled, shards padded to equal length).
        val_set: validation dataset or ``None`` (in order, shards not padded).
        drop_single: drop the last training batch of a shard when it holds one image (for
            BatchNorm layers; shards have equal lengths, so all ranks drop together).
        collate: the loaders' ``collate_fn`` (None: torch's default).
    """

    def __init__(self, config: TrainConfig, train_set: Dataset, val_set: Dataset | None, *,
                 drop_single: bool = False, collate: Callable[[list[Any]], Any] | None = None
                 ) -> None:
        super().__init__()
        self.config, self.train_set, self.val_set = config, train_set, val_set
        self.drop_single = drop_single
        self.collate = collate

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSampler(len(dataset), seed=self.config.seed,  # type: ignore[arg-type]
                               num_replicas=world, rank=rank, shuffle=train, pad=train)
        if train and trainer is not None:
            # Lightning makes the first iterator before it calls set_epoch (and DataLoader
            # workers draw their first indices then): start at the epoch Lightning will set,
            # the number of epochs processed (also right after a resume)
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        batch = self.config.batch_size
        return DataLoader(SeededItems(dataset, self.config.seed), batch_size=batch,
                          sampler=sampler, num_workers=self.config.num_workers,
                          collate_fn=self.collate,
                          persistent_workers=self.config.num_workers > 0,
                          drop_last=train and self.drop_single and len(sampler) % batch == 1)

    def train_dataloader(self) -> DataLoader:
        """The training loader of this rank."""
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation loader of this rank (an empty list without a validation set)."""
        return [] if self.val_set is None else self._loader(self.val_set, train=False)
