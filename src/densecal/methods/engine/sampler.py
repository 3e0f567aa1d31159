"""The order of a training epoch, sharded over processes, and items seeded by their place in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from densecal.methods.engine.seeding import SEED_DATA, derive_seed

__all__ = ["EpochSampler", "SeededItems"]


class EpochSampler(Sampler[tuple[int, int]]):
    """One process's share of a training epoch, yielding ``(epoch, index)`` pairs.

    The order is that of :class:`torch.utils.data.DistributedSampler`: ``torch.randperm(n)``
    seeded with ``seed + epoch`` (``range(n)`` without ``shuffle``), padded by repeating its
    head to a multiple of ``num_replicas`` (``pad``), then every ``num_replicas``-th entry from
    ``rank``. So consecutive blocks of ``num_replicas x b`` entries of the epoch's order are the
    images of one step, whatever the number of processes (batch ``b`` per process). Without
    ``pad`` the shards may differ in length by one (validation: no image counted twice).

    The epoch travels with each index so that :class:`SeededItems` can seed the item's
    augmentation from it, also in (persistent) DataLoader workers.

    Args:
        size: dataset length ``n``, ``>= 0``.
        seed: the run seed.
        num_replicas: number of processes ``W >= 1``.
        rank: this process, ``0 <= rank < W``.
        shuffle: permute each epoch (training) or keep ``0..n-1`` (validation).
        pad: repeat the first indices so that all shards have ``ceil(n / W)`` entries.

    Example:
        >>> [i for _, i in EpochSampler(5, seed=0, num_replicas=2, rank=1, shuffle=False)]
        [1, 3, 0]
    """

    def __init__(self, size: int, *, seed: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, pad: bool = True) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.size, self.seed, self.shuffle, self.pad = size, seed, shuffle, pad
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields (Lightning calls it)."""
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        if self.pad and order:
            padding = -(-len(order) // self.num_replicas) * self.num_replicas - len(order)
            order += (order * -(-padding // len(order)))[:padding]  # padding < num_replicas
        return order[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self._order()])

    def __len__(self) -> int:
        if self.pad:
            return -(-self.size // self.num_replicas)
        return len(range(self.rank, self.size, self.num_replicas))


class SeededItems(Dataset):
    """``dataset`` indexed by ``(epoch, index)``: item ``index`` drawn with torch's RNG seeded
    from ``(seed, epoch, index)`` (:func:`~densecal.methods.engine.seeding.derive_seed`).

    A training item's random augmentation then depends on nothing but its epoch and image: not
    on the batch, the process, the DataLoader worker or whether the run was resumed. The RNG
    state around the call is restored (``torch.random.fork_rng``), so loading data never moves
    the training step's random stream.

    Args:
        dataset: a map-style dataset whose items use torch's global RNG for randomness.
        seed: the run seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, SEED_DATA, epoch, index))
            return self.dataset[index]
