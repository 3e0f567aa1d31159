"""Errors raised for bad user input.

Every problem caused by what a user passed (a file, a folder, an argument value) raises
:class:`DensecalInputError`. The CLI turns it into one line on stderr and exit code 2; library
users can catch it like any ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DensecalInputError", "input_error"]


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
