"""CAR's one-dimensional bimodal regression toy (Kassapis et al., ICCV 2021, section 4.1).

``x ~ U(0, 1)``; a branch ``b`` is drawn per sample, ``b = 0`` (upper) with probability ``pi``:

- ``x < 0.4``: ``y = +0.5`` (b = 0) or ``-0.5`` (b = 1), two parallel modes;
- ``0.4 <= x < 0.8``: ``y = (-1)^b (1 - 1.25 x)``, two lines converging to 0 at ``x = 0.8``;
- ``x >= 0.8``: ``y = 0``, one mode;

plus Gaussian noise ``N(0, sigma^2)`` (docs/methods.md section 4; toy code:
github.com/gdikov/calibrated-adversarial-learning). The defaults ``pi = 0.5``,
``sigma = 0.03`` are densecal's choices; pass the paper's values explicitly when reproducing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from densecal.errors import input_error

__all__ = ["sample_toy", "toy_branches", "toy_log_likelihood"]


def toy_branches(x: Tensor) -> tuple[Tensor, Tensor]:
    """Noise-free upper (b = 0) and lower (b = 1) branch values at ``x``.

    Args:
        x: ``(n,)`` float tensor, values in [0, 1].

    Returns:
        ``(upper, lower)``, each shaped like ``x``; ``lower = -upper``.

    Example:
        >>> toy_branches(torch.tensor([0.0, 0.4, 0.6, 0.9]))[0].tolist()
        [0.5, 0.5, 0.25, 0.0]
    """
    upper = torch.where(x < 0.4, torch.full_like(x, 0.5),
                        torch.where(x < 0.8, 1.0 - 1.25 * x, torch.zeros_like(x)))
    return upper, -upper


def sample_toy(n: int, pi: float = 0.5, sigma: float = 0.03,
               seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``n`` points of the bimodal toy.

    Args:
        n: number of points, >= 0.
        pi: probability of the upper branch (b = 0), in [0, 1].
        sigma: standard deviation of the additive Gaussian noise, >= 0.
        seed: seed of ``numpy.random.default_rng``; the draw is a deterministic function of it.

    Returns:
        ``(x, y, branch)``: ``(n,)`` float32 inputs in [0, 1), ``(n,)`` float32 targets and
        ``(n,)`` int64 branch indices in {0, 1} (0 = upper).

    Raises:
        DensecalInputError: negative ``n`` or ``sigma``, ``pi`` outside [0, 1].

    Example:
        >>> x, y, b = sample_toy(4, seed=0)
        >>> x.shape, y.dtype, b.dtype
        (torch.Size([4]), torch.float32, torch.int64)
    """
    if n < 0:
        raise input_error("n", f"must be >= 0, got {n}")
    if not 0.0 <= pi <= 1.0:
        raise input_error("pi", f"must be in [0, 1], got {pi}")
    if not sigma >= 0.0:
        raise input_error("sigma", f"must be >= 0, got {sigma}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=n)
    branch = (rng.random(size=n) >= pi).astype(np.int64)
    noise = rng.normal(0.0, 1.0, size=n) * sigma
    x_t = torch.from_numpy(x)
    upper, _ = toy_branches(x_t)
    sign = 1.0 - 2.0 * torch.from_numpy(branch).double()
    y = sign * upper + torch.from_numpy(noise)
    return x_t.float(), y.float(), torch.from_numpy(branch)


LL_EPSILON = 1e-11
"""Added to the mixture density inside the log, as the authors' toy code does (it bounds the
log-likelihood of a far-off sample at log(1e-11) = -25.3)."""


def toy_log_likelihood(x: Tensor, y: Tensor, pi: float, sigma: float) -> Tensor:
    """Log-density of ``y`` under the toy's true conditional mixture at ``x``, float64.

    ``log(pi N(y; upper(x), sigma) + (1 - pi) N(y; lower(x), sigma) + 1e-11)``; for ``x >= 0.8``
    both branches are 0, so the mixture is ``N(0, sigma)`` there (as in the authors' code,
    ``utils/data.py``, ``Bifurcation.ll``).

    Args:
        x: ``(n,)`` inputs in [0, 1).
        y: ``(n,)`` values (e.g. one generator sample per ``x``).
        pi: probability of the upper branch.
        sigma: noise standard deviation, > 0.

    Returns:
        ``(n,)`` float64 log-likelihoods.

    Example:
        >>> ll = toy_log_likelihood(torch.tensor([0.1]), torch.tensor([0.5]), 0.5, 0.03)
        >>> round(float(ll), 4)  # log(0.5 / (0.03 sqrt(2 pi)))
        1.8947
    """
    x, y = x.double(), y.double()
    upper, lower = toy_branches(x)
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), sigma)
    upper_density = normal.log_prob(y - upper).exp()
    lower_density = normal.log_prob(y - lower).exp()
    one_mode = x >= 0.8
    density = torch.where(one_mode, upper_density,
                          pi * upper_density + (1.0 - pi) * lower_density)
    return torch.log(density + LL_EPSILON)
