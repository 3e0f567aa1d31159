"""Errors raised for bad user input.

Every problem caused by what a user passed (a file, a folder, an argument value) raises
:class:`DensecalInputError`. The CLI turns it into one line on stderr and exit code 2; library
users can catch it like any ``ValueError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["DensecalInputError", "input_error", "naming_sources"]


class DensecalInputError(ValueError):
    """Bad input from the user: a malformed file, a missing folder, an invalid option value.

    The message is one line that names the file or argument and the problem.
    """


def input_error(where: str | Path, problem: str) -> DensecalInputError:
    """Build a :class:`DensecalInputError` whose message reads ``"<where>: <problem>"``.

    Args:
        where: the file path or argument name at fault.
        problem: what is wrong with it, one short clause.

    Returns:
        The exception (to be raised by the caller).

    Example:
        >>> raise input_error("masks/a.png", "cannot be decoded as an image")
        Traceback (most recent call last):
        ...
        densecal.errors.DensecalInputError: masks/a.png: cannot be decoded as an image
    """
    return DensecalInputError(f"{where}: {problem}")


@contextlib.contextmanager
def naming_sources(sources: Mapping[str, str]) -> Iterator[None]:
    """Re-raise an error about an internal name as one naming what the user passed.

    Inner code often knows an image only by its stem (``im0``) or an index (``batches[3]``);
    inside this block a :class:`DensecalInputError` whose ``<where>`` is a key of ``sources``
    is raised again with ``sources[where]`` (e.g. ``pred/im0.npy (ground truth gt/im0.png)``).

    Raises:
        DensecalInputError: the re-named error; any other error passes unchanged.
    """
    try:
        yield
    except DensecalInputError as exc:
        where, sep, problem = str(exc).partition(": ")
        if not sep or where not in sources:
            raise
        raise input_error(sources[where], problem) from None
