"""Progress of long jobs, shown only where a person is watching.

Library loops over images wrap their iterable in :func:`track`; it costs nothing unless
progress is switched on with :func:`reporting`, which the ``densecal`` command does for the
whole run. Then, on a terminal, a rich progress bar on stderr (count, rate, time left); when
stderr is a file or a pipe, a plain line ``densecal: evaluate: 1200/5019 images (24 %)`` at most
every :data:`PLAIN_EVERY_S` seconds, the first only after a job has run that long, so short runs
and logs stay quiet. Library users see nothing unless they call :func:`reporting` themselves.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["PLAIN_EVERY_S", "reporting", "track"]

T = TypeVar("T")

PLAIN_EVERY_S = 10.0
"""Seconds between two plain progress lines (and before the first)."""

_ON: contextvars.ContextVar[bool] = contextvars.ContextVar("densecal_progress", default=False)


@contextlib.contextmanager
def reporting(on: bool = True) -> Iterator[None]:
    """Show (``on``) or hide the progress of every :func:`track` inside the block."""
    token = _ON.set(on)
    try:
        yield
    finally:
        _ON.reset(token)


def track(items: Iterable[T], what: str, *, total: int | None = None,
          unit: str = "images") -> Iterator[T]:
    """Yield ``items`` unchanged, showing progress when :func:`reporting` is on.

    Args:
        items: the iterable to walk (consumed lazily, once).
        what: the job, shown first (``"evaluate"``, ``"predict ood"``).
        total: number of items, if known (``len(items)`` is tried otherwise).
        unit: what an item is, plural.

    Yields:
        The items of ``items``, in order.
    """
    if not _ON.get():
        yield from items
        return
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if sys.stderr.isatty():
        yield from _bar(items, what, total, unit)
    else:
        yield from _plain(items, what, total, unit)


def _bar(items: Iterable[T], what: str, total: int | None, unit: str) -> Iterator[T]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(f"{what}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _plain(items: Iterable[T], what: str, total: int | None, unit: str) -> Iterator[T]:
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= PLAIN_EVERY_S:
            last = now
            share = f"/{total} {unit} ({100 * done // total} %)" if total else f" {unit}"
            print(f"densecal: {what}: {done}{share}, {now - start:.0f} s", file=sys.stderr,
                  flush=True)
