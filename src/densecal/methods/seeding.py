"""Seeds of a run's random streams, keyed by what they draw for (resume- and DDP-exact).

Every random draw of a ``densecal train`` run comes from a stream named by a tag and integer
keys (epoch, image, batch, rank), seeded by :func:`derive_seed`. A stream depends on nothing
but its keys, so a resumed run, or one split over several processes, draws the same numbers for
the same (epoch, image) as an uninterrupted single-process run.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SEED_COINS", "SEED_DATA", "SEED_STEP", "derive_seed"]

# stream tags of :func:`derive_seed`: every random draw of a run is keyed by one of them
SEED_DATA = 0  # (SEED_DATA, epoch, image): augmentation of one training item
SEED_COINS = 1  # (SEED_COINS, epoch): ASLP's per-image coin uniforms of one epoch
SEED_STEP = 2  # (SEED_STEP, epoch, batch, rank): torch's global RNG for one training step


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
