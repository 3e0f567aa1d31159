"""Repeated passes over a stream of ``(logits, target)`` batches, with optional caching.

Post-hoc calibrators fit on predictions that do not fit in memory at once (every pixel of a
validation split), so they read them batch by batch, several times. :class:`PixelPasses` turns
what the user gave into one fresh pass per call:

* a re-iterable (list, tuple, ``torch.utils.data.DataLoader``): iterated again for every pass;
* a zero-argument callable returning a fresh iterable (e.g. a function running a frozen model over
  a validation loader): called once per pass;
* a one-shot iterator (a generator): readable once, so only with ``cache=True``.

With ``cache=True`` the prepared (flattened, non-ignored) pixels of the first pass are kept,
detached, on the CPU in the logits' own dtype, and later passes read that cache. Memory: about
``P * C * itemsize(logits) + P * itemsize(target)`` bytes for ``P`` kept pixels and ``C`` channels
(``C = 1`` binary), e.g. 1,000 maps of 352 x 352 float32 binary logits with float targets are
about 1 GB. Without cache, memory is one batch at a time.

Every pass must yield the same data: the number of pixels is checked against the first pass
(shuffling is harmless, sums do not depend on order beyond float64 rounding; random augmentation
is not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import Tensor

from densecal.errors import input_error

__all__ = ["Batches", "PixelPasses", "Prepare"]

Batches = Iterable[Any] | Callable[[], Iterable[Any]]
"""What users pass: a re-iterable or a zero-argument callable of ``(logits, target)`` pairs."""

Prepare = Callable[[Tensor, Tensor, str, bool], tuple[Tensor, Tensor]]
"""``(logits, target, where, first_pass) -> (z, y)`` flattened pixels of one batch."""


class PixelPasses:
    """One pass over the data per call of :meth:`chunks`, preparing each batch on the way.

    Args:
        batches: a re-iterable of ``(logits, target)`` pairs, a zero-argument callable returning
            a fresh iterable of them, or (with ``cache=True``) a one-shot iterator.
        prepare: turns one pair into flattened pixels ``(z, y)`` (rows = pixels); it is told
            whether this is the first pass (validate values then) and the item's name for errors.
        cache: keep the prepared pixels of the first pass on the CPU and replay them.
        where: the argument name used in error messages.

    Raises:
        DensecalInputError: a one-shot iterator without ``cache``; or, while iterating, an item
            that is not a pair, no batch or no pixel at all, a pass whose pixel count differs from
            the first pass.
    """

    def __init__(self, batches: Batches, prepare: Prepare, *, cache: bool = False,
                 where: str = "batches") -> None:
        if isinstance(batches, Iterator):
            if not cache:
                raise input_error(where, "is a one-shot iterator that cannot be read again; pass a "
                                         "re-iterable (list, DataLoader), a zero-argument callable "
                                         "returning a fresh iterable, or cache_logits=True")
        elif not callable(batches) and not isinstance(batches, Iterable):
            raise input_error(where, f"must be an iterable of (logits, target) pairs or a "
                                     f"zero-argument callable returning one, got "
                                     f"{type(batches).__name__}")
        self._batches = batches
        self._prepare = prepare
        self._cache_on = cache
        self._cache: list[tuple[Tensor, Tensor]] | None = None
        self._where = where
        self.n_pixels: int | None = None
        self.passes = 0

    def _source(self) -> Iterable[Any]:
        if isinstance(self._batches, Iterable):
            return self._batches
        source = self._batches()
        if not isinstance(source, Iterable):
            raise input_error(self._where, f"the callable must return an iterable of (logits, "
                                           f"target) pairs, got {type(source).__name__}")
        return source

    def chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield the prepared pixels ``(z, y)`` of every batch, for one full pass.

        Yields:
            ``(z, y)`` with ``z.shape[0] == y.shape[0]`` pixels, on the batch's device (or the
            CPU when replayed from the cache).
        """
        if self._cache is not None:
            yield from self._cache
            self.passes += 1
            return
        first = self.n_pixels is None
        keep: list[tuple[Tensor, Tensor]] | None = [] if (first and self._cache_on) else None
        n_items = n_pixels = 0
        for index, item in enumerate(self._source()):
            where = f"{self._where}[{index}]"
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise input_error(where, f"must be a (logits, target) pair, got "
                                         f"{type(item).__name__}")
            z, y = self._prepare(item[0], item[1], where, first)
            n_items += 1
            n_pixels += int(z.shape[0])
            if keep is not None and z.shape[0]:
                keep.append((z.cpu(), y.cpu()))
            yield z, y
        if n_items == 0:
            raise input_error(self._where, "yielded no batch")
        if first:
            if n_pixels == 0:
                raise input_error(self._where, "holds no pixel to fit on (all ignored?)")
            self.n_pixels = n_pixels
            self._cache = keep
        elif n_pixels != self.n_pixels:
            raise input_error(self._where, f"pass {self.passes + 1} yielded {n_pixels} pixels, "
                                           f"the first pass {self.n_pixels}: every pass must "
                                           "yield the same data")
        self.passes += 1
