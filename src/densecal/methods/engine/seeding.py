"""Seeds of a run's random streams, keyed by what they draw for (resume- and DDP-exact).

Every random draw of a ``densecal train`` run comes from a stream named by a tag and integer
keys (epoch, image, batch, rank), seeded by :func:`derive_seed`. A stream depends on nothing
but its keys, so a resumed run, or one split over several processes, draws the same numbers for
the same (epoch, image) as an uninterrupted single-process run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["SEED_COINS", "SEED_DATA", "SEED_EVAL", "SEED_STEP", "StepSeeded", "derive_seed",
           "seed_global_rng"]

# stream tags of :func:`derive_seed`: every random draw of a run is keyed by one of them
SEED_DATA = 0  # (SEED_DATA, epoch, image): augmentation of one training item
SEED_COINS = 1  # (SEED_COINS, epoch): ASLP's per-image coin uniforms of one epoch
SEED_STEP = 2  # (SEED_STEP, epoch, batch, rank): torch's global RNG for one training step
SEED_EVAL = 3  # (SEED_EVAL, epoch, batch, loader, rank): the global RNG for one validation step


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the random stream ``keys`` of the run seeded with ``seed``.

    Hashes ``(seed, *keys)`` with :class:`numpy.random.SeedSequence`, so that streams with
    different keys are independent and a stream depends on nothing but its keys: a resumed run,
    or one split over several processes, draws the same numbers for the same (epoch, image).

    Args:
        seed: the run seed, ``>= 0``.
        keys: non-negative integers naming the stream (a ``SEED_*`` tag first).

    Returns:
        An integer in ``[0, 2**63)`` for ``torch.manual_seed`` / ``Generator.manual_seed``.

    Example:
        >>> derive_seed(0, SEED_COINS, 3) == derive_seed(0, SEED_COINS, 3) != derive_seed(1, 1, 3)
        True
    """
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_global_rng(seed: int, *keys: int) -> None:
    """Reseed torch's global RNG (CPU and every CUDA device) with ``derive_seed(seed, *keys)``."""
    torch.manual_seed(derive_seed(seed, *keys))


def _rank(module: Any) -> int:
    return module.global_rank if getattr(module, "_trainer", None) is not None else 0


class StepSeeded:
    """Mixin of a :class:`lightning.LightningModule` whose steps draw from torch's global RNG.

    Before every training step torch's global RNG is reseeded from ``(SEED_STEP, epoch,
    batch_idx, rank)``, before every validation step from ``(SEED_EVAL, epoch, batch_idx,
    dataloader_idx, rank)`` (:func:`derive_seed` with the run seed ``self.config.seed``). What a
    step draws (dropout masks, CAR's latent ``z``, SLP's coins) then depends only on where the
    step is in the run, not on how many steps this process ran before, whether validation or a
    DataLoader iterator drew in between, or whether the run was resumed: Lightning restores
    weights, optimisers and the loop position from a checkpoint, but not the RNG state.

    Put it first among the bases (``class M(StepSeeded, L.LightningModule)``) so that its hooks
    are the ones Lightning calls; the module needs a ``config`` attribute with an integer
    ``seed`` (:class:`~densecal.methods.config.TrainConfig`).
    """

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed the global RNG for training step ``batch_idx`` of the current epoch."""
        module: Any = self
        seed_global_rng(module.config.seed, SEED_STEP, module.current_epoch, batch_idx,
                        _rank(module))

    def on_validation_batch_start(self, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        """Reseed the global RNG for validation step ``batch_idx`` of loader ``dataloader_idx``."""
        module: Any = self
        seed_global_rng(module.config.seed, SEED_EVAL, module.current_epoch, batch_idx,
                        dataloader_idx, _rank(module))
