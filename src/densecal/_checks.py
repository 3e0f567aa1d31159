"""One family of argument validators, shared by every public function and option of densecal.

Each validator takes the name the user knows the argument by (``where``: a keyword such as
``"n_bins"`` or a flag such as ``"--num-nodes"``), checks the value, and either returns it in
its working type or raises :class:`~densecal.errors.DensecalInputError` with one line
``"<where>: <problem>, got <value!r>"``. ``bool`` is never accepted as a number (``True == 1``
in Python). The default ``problem`` texts below are the wordings the CLI prints; a caller whose
documented message differs passes its own ``problem``.

Example:
    >>> check_int("n_bins", 10, low=1)
    10
    >>> check_int("n_bins", True, low=1)
    Traceback (most recent call last):
    ...
    densecal.errors.DensecalInputError: n_bins: must be a positive integer, got True
    >>> check_number("sigma", 0.0, 0.0, low_open=True)
    Traceback (most recent call last):
    ...
    densecal.errors.DensecalInputError: sigma: must lie in (0, inf], got 0.0
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from enum import Enum
from pathlib import Path
from typing import TypeVar

import numpy as np

from densecal.errors import input_error

__all__ = [
    "check_bool",
    "check_int",
    "check_number",
    "check_out_apart",
    "check_out_dir",
    "is_int",
    "is_real",
    "parse_choice",
]

E = TypeVar("E", bound=Enum)


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), ``bool`` excluded."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (``int``, ``float`` or NumPy), ``bool`` excluded."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _int_problem(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"must be an integer in [{low}, {high}]"
    if low == 1:
        return "must be a positive integer"
    if low is not None:
        return f"must be an integer >= {low}"
    return "must be an integer"


def check_int(where: str | Path, value: object, *, low: int | None = None,
              high: int | None = None, odd: bool = False, problem: str | None = None) -> int:
    """An integer in ``[low, high]`` (either bound optional), odd if ``odd``.

    Raises:
        DensecalInputError: not an integer (``bool`` included), out of range, or even where
            ``odd``; the message is ``problem`` (default: from the bounds) and the value.
    """
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high) \
        and (not odd or value % 2 == 1)  # type: ignore[operator]
    if not ok:
        raise input_error(where, f"{problem or _int_problem(low, high)}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def check_number(where: str | Path, value: object, low: float = -math.inf,
                 high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
                 problem: str | None = None) -> float:
    """A finite real number in ``[low, high]`` (``(``/``)`` with ``low_open`` / ``high_open``).

    Args:
        where: the argument's name.
        value: the user's value.
        low, high: the bounds.
        low_open, high_open: exclude the bound itself.
        problem: one message for every failure; by default a non-number or non-finite value
            reads ``"must be a finite number"`` and a value out of range ``"must lie in [lo, hi]"``.

    Returns:
        ``value`` as a ``float``.

    Raises:
        DensecalInputError: not a finite real number, or out of range.
    """
    if not is_real(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise input_error(where, f"{problem or 'must be a finite number'}, got {value!r}")
    x = float(value)  # type: ignore[arg-type]
    if x < low or x > high or (low_open and x == low) or (high_open and x == high):
        if problem is None:
            problem = (f"must lie in {'(' if low_open else '['}{low:g}, "
                       f"{high:g}{')' if high_open else ']'}")
        raise input_error(where, f"{problem}, got {value!r}")
    return x


def check_bool(where: str | Path, value: object, problem: str = "expected True or False") -> bool:
    """``value`` if it is ``True`` or ``False``.

    Raises:
        DensecalInputError: anything else (``0``, ``1``, ``"yes"``, ``None``).
    """
    if not isinstance(value, bool):
        raise input_error(where, f"{problem}, got {value!r}")
    return value


def parse_choice(enum_cls: type[E], value: object, where: str | Path, *,
                 allowed: Collection[E] | None = None, problem: str = "must be one of",
                 message: str | None = None) -> E:
    """The member of the string enum ``enum_cls`` whose value is ``value``.

    Args:
        enum_cls: a ``str``-valued :class:`~enum.Enum` (every string a user can type has one).
        value: a member or its string value.
        where: the argument's name.
        allowed: the members accepted here (default: all), e.g. a named subset such as
            :data:`densecal.types.DENSE_LOSS_TASKS`.
        problem: the message's opening words, before the list of choices.
        message: the whole message instead, a template with ``{value}`` (the value's repr)
            and ``{choices}`` (the allowed values, comma-separated).

    Returns:
        The enum member.

    Raises:
        DensecalInputError: ``value`` is not the value of an allowed member; the message lists
            the allowed values.
    """
    members = list(enum_cls) if allowed is None else [m for m in enum_cls if m in allowed]
    try:
        member = enum_cls(value)
    except ValueError:
        member = None
    if member is None or member not in members:
        choices = ", ".join(repr(m.value) for m in members)
        if message is not None:
            raise input_error(where, message.format(value=repr(value), choices=", ".join(
                str(m.value) for m in members)))
        raise input_error(where, f"{problem} {choices}, got {value!r}")
    return member


def check_out_dir(path: str | Path) -> Path:
    """An output folder path that is a folder or does not exist yet.

    Raises:
        DensecalInputError: ``path`` exists and is not a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise input_error(path, "exists and is not a folder")
    return path


def check_out_apart(out: str | Path, inputs: Mapping[str, str | Path | None],
                    option: str = "--out") -> Path:
    """An output path that neither is, nor lies inside, nor contains any input.

    Paths are compared resolved (symbolic links followed, ``..`` removed), so ``--out
    data/../data/images`` and a link to the data folder are caught as well. A result written
    into an input folder would replace the user's files (``NAME.png`` maps over ``NAME.png``
    images) or litter the folder for the next run; a result folder around an input would be
    replaced with the input inside it.

    Args:
        out: the output file or folder.
        inputs: ``{option: path}`` of the run's inputs (files or folders); ``None`` is skipped.
        option: the output's option name, for the message.

    Returns:
        ``out`` as a ``Path``.

    Raises:
        DensecalInputError: ``out`` overlaps an input (the message names both options).
    """
    out = Path(out)
    target = out.resolve()
    for name, given in inputs.items():
        if given is None or str(given) == "":
            continue
        source = Path(given).resolve()
        if target == source:
            problem = f"is the input {given} ({name})"
        elif source in target.parents:
            problem = f"lies inside the input folder {given} ({name})"
        elif target in source.parents:
            problem = f"contains the input {given} ({name})"
        else:
            continue
        raise input_error(option, f"{out} {problem}; write the result outside every input")
    return out
