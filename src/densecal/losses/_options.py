"""Option enums and parsing shared by the densecal losses: ASLP's perturbation techniques and
the paper/code conventions of β (docs/methods.md section 1.1)."""

from __future__ import annotations

import warnings

from densecal._checks import check_number, parse_choice
from densecal.errors import input_error
from densecal.types import StrEnum

__all__ = ["BetaConvention", "Technique", "resolve_beta", "technique_beta"]


class Technique(StrEnum):
    """Label perturbation techniques of ASLP (paper Table 1), each fixing ``beta``.

    ============================  ======  =======================================
    member                        beta    perturbed target (foreground / background)
    ============================  ======  =======================================
    ``HARD_INVERSION``            2       0 / 1 (DisturbLabel-like flip)
    ``SOFT_INVERSION``            1.5     0.25 / 0.75
    ``MODERATION``                1       0.5 / 0.5
    ``MODERATION_NOISE``          1       0.5 / 0.5 plus per-pixel noise
    ============================  ======  =======================================

    Plain strings with the member values are accepted wherever a ``Technique`` is expected.
    """

    HARD_INVERSION = "hard_inversion"
    SOFT_INVERSION = "soft_inversion"
    MODERATION = "moderation"
    MODERATION_NOISE = "moderation_noise"


class BetaConvention(StrEnum):
    """How a user's ``beta`` is read: ``PAPER`` (``beta`` in ``[0, 2]``, the paper's convention)
    or ``CODE`` (the official code's ``b = beta / 2``; ``docs/methods.md`` section 1.1)."""

    PAPER = "paper"
    CODE = "code"


_TECHNIQUE_BETA = {
    Technique.HARD_INVERSION: 2.0,
    Technique.SOFT_INVERSION: 1.5,
    Technique.MODERATION: 1.0,
    Technique.MODERATION_NOISE: 1.0,
}

def technique_beta(technique: Technique | str) -> float:
    """Return the paper-convention ``beta`` of a perturbation technique.

    Args:
        technique: a :class:`Technique` or its string value.

    Returns:
        2.0 (hard inversion), 1.5 (soft inversion) or 1.0 (moderation, with or without noise).

    Raises:
        DensecalInputError: unknown technique.

    Example:
        >>> technique_beta("soft_inversion")
        1.5
    """
    return _TECHNIQUE_BETA[parse_choice(Technique, technique, "technique")]


def resolve_beta(beta: float | None, technique: Technique | str = Technique.HARD_INVERSION,
                 beta_convention: BetaConvention | str = "paper") -> float:
    """Turn a user's ``beta`` into the paper-convention value densecal computes with.

    Args:
        beta: ``None`` to take the technique's ``beta``; otherwise a number in the convention
            ``beta_convention``: ``"paper"`` (``beta`` in ``[0, 2]``) or ``"code"`` (the official
            code's ``b = beta / 2`` in ``[0, 2]``).
        technique: used when ``beta`` is ``None``.
        beta_convention: ``"paper"`` or ``"code"``.

    Returns:
        ``beta`` in the paper convention, in ``[0, 4]``.

    Raises:
        DensecalInputError: ``beta`` out of range or not finite, unknown convention/technique.

    Warns:
        UserWarning: paper ``beta > 2`` (only reachable with ``"code"``): perturbed targets
        leave ``[0, 1]``.
    """
    convention = parse_choice(BetaConvention, beta_convention, "beta_convention",
                              message="must be 'paper' or 'code', got {value}")
    if beta is None:
        return technique_beta(technique)
    parse_choice(Technique, technique, "technique")
    check_number("beta", beta)
    if convention is BetaConvention.PAPER:
        if not 0.0 <= beta <= 2.0:
            raise input_error("beta", f"must lie in [0, 2] (paper convention), got {beta}; "
                                      "use beta_convention='code' for the official code's b")
        return float(beta)
    if not 0.0 <= beta <= 2.0:
        raise input_error("beta", f"must lie in [0, 2] as the official code's b, got {beta}")
    paper = 2.0 * float(beta)
    if paper > 2.0:
        warnings.warn(f"beta: b = {beta} (paper beta = {paper}) puts perturbed targets at "
                      f"{1 - paper / 2:g} / {paper / 2:g}, outside [0, 1]", UserWarning,
                      stacklevel=3)
    return paper
