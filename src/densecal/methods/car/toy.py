"""CAR's 1-D toy (Kassapis et al., ICCV 2021, Sec. 4.1; github.com/gdikov/calibrated-adversarial-
learning): with the calibration loss the GAN's samples cover both branches of a bimodal target
in proportion ``pi : 1 - pi``; without it they tend to collapse onto one. Figure data only.

Data (docs/methods.md section 4): ``x ~ U(0, 1)``; branch ``b ~ Bernoulli(1 - pi)`` (``b = 0``
upper);
``y = (-1)^b * 0.5`` for ``x < 0.4``, ``(-1)^b (1 - 1.25 x)`` for ``0.4 <= x < 0.8``, ``0`` after,
plus ``N(0, sigma^2)`` noise.

Networks: MLPs with 4 hidden layers of 64 units. ``F(x)`` regresses the mean (MSE) and is fitted
first, then frozen; ``G(x, F(x), z)`` outputs ``y``; ``D(x, y)`` one logit. ``L_cal = 1/2
mean((G_bar - F)^2)`` with ``G_bar`` the mean of 10 samples per ``x`` (the regression analogue of
``KL(G_bar || F)``); generator loss ``adv_weight * BCE(D(x, G), 1) + cal_weight * L_cal``.

Two protocols (:data:`AUTHORS_PROTOCOL` and :data:`DENSECAL_PROTOCOL`, keyword arguments of
:func:`train_toy`). The authors' (``part_2.ipynb`` and ``utils/networks.py`` of their code): F
with ReLU, G and D with leaky ReLU 0.01, Adam's default betas; the ablation's generator loss on 1
sample per ``x`` (CAR: the 10 samples of ``L_cal``); D's fake 1 fresh sample per ``x``; sigma
0.03 in the reported grid; the log-likelihood of one sample per ``x`` under the true mixture
(:func:`~densecal.data.synthetic.toy.toy_log_likelihood`) tracked during training. densecal's
earlier variant: leaky ReLU 0.2 everywhere, betas (0.5, 0.99), 10 samples per ``x`` in both
variants' generator loss and as D's fakes, sigma 0.02 (it weakens the ablation's collapse;
kept as a labelled extra).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densecal.data.synthetic.toy import toy_branches, toy_log_likelihood

__all__ = ["AUTHORS_PROTOCOL", "DENSECAL_PROTOCOL", "mlp", "sample_toy", "toy_mean",
           "train_toy"]

AUTHORS_PROTOCOL: dict[str, Any] = {
    "betas": (0.9, 0.999), "negative_slope": 0.01, "f_activation": "relu",
    "ablation_samples": 1, "d_fake_samples": 1, "sigma": 0.03,
}
"""The authors' toy protocol (github.com/gdikov/calibrated-adversarial-learning)."""

DENSECAL_PROTOCOL: dict[str, Any] = {
    "betas": (0.5, 0.99), "negative_slope": 0.2, "f_activation": "leaky",
    "ablation_samples": None, "d_fake_samples": None, "sigma": 0.02,
}
"""densecal 0.1's toy variant (a labelled extra row)."""


def sample_toy(n: int, *, pi: float = 0.6, sigma: float = 0.02,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw ``n`` toy pairs from a torch generator (the branches of
    :func:`densecal.data.synthetic.toy.toy_branches`; training draws fresh batches every step).

    Returns:
        ``x`` ``(n, 1)`` in [0, 1) and ``y`` ``(n, 1)``; the upper branch has probability ``pi``.
    """
    x = torch.rand(n, 1, generator=generator)
    sign = torch.where(torch.rand(n, 1, generator=generator) < pi, 1.0, -1.0)
    return x, sign * toy_branches(x)[0] + sigma * torch.randn(n, 1, generator=generator)


def toy_mean(x: Tensor, pi: float = 0.6) -> Tensor:
    """The exact conditional mean ``E[y | x] = (2 pi - 1) * |branch(x)|`` (what ``F`` learns)."""
    return (2.0 * pi - 1.0) * toy_branches(x)[0]


def mlp(in_features: int, out_features: int = 1, *, width: int = 64, depth: int = 4,
        negative_slope: float = 0.2, activation: str = "leaky") -> nn.Sequential:
    """MLP with ``depth`` hidden layers of ``width`` units (the toy's 4x64), leaky ReLU of
    ``negative_slope`` or (``activation="relu"``) ReLU."""
    layers: list[nn.Module] = []
    size = in_features
    for _ in range(depth):
        act = nn.ReLU() if activation == "relu" else nn.LeakyReLU(negative_slope)
        layers += [nn.Linear(size, width), act]
        size = width
    layers.append(nn.Linear(size, out_features))
    return nn.Sequential(*layers)


def train_toy(with_cal: bool, steps: int = 5000, seed: int = 0, *, pi: float = 0.6,
              sigma: float = 0.02, batch_size: int = 100, samples: int = 10, latent_dim: int = 1,
              adv_weight: float = 1.0, cal_weight: float = 1.0, lr: float = 1e-4,
              f_steps: int = 1500, f_batch_size: int = 1000, grid_size: int = 101,
              grid_samples: int = 200, betas: tuple[float, float] = (0.5, 0.99),
              negative_slope: float = 0.2, f_activation: str = "leaky",
              ablation_samples: int | None = None, d_fake_samples: int | None = None,
              eval_every: int = 0, eval_points: int = 2000) -> dict[str, Any]:
    """Train ``F``, then ``G`` and ``D``, on the toy with or without ``L_cal``; return figure
    data.

    The protocol of the paper's toy code (github.com/gdikov/calibrated-adversarial-learning,
    part 2): ``F`` is fitted first (``f_steps`` Adam steps of MSE on batches of
    ``f_batch_size``) and frozen; then each step takes one Adam step of ``D``
    (``BCE(D(x, y), 1) + BCE(D(x, G), 0)``) and one of ``G`` on ``samples`` draws per ``x``
    (``adv_weight * BCE(D(x, G), 1)`` plus ``cal_weight * L_cal`` with ``with_cal``). Both
    variants draw the same ``samples`` per ``x``, so they differ in the loss only.

    Args:
        with_cal: include ``cal_weight * L_cal`` in the generator loss.
        steps: adversarial training iterations (5000).
        seed: seeds data, weights and latents.
        pi: probability of the upper branch.
        sigma: label noise.
        batch_size: ``x`` per adversarial step (100).
        samples: generator samples per ``x`` for ``G_bar`` (10).
        latent_dim: size of ``z`` (1).
        adv_weight, cal_weight: generator loss weights (1 and 1).
        lr: Adam learning rate of all three nets (1e-4).
        f_steps, f_batch_size: ``F``'s fit before the adversarial phase (1500 steps of 1000).
        grid_size: points of the evaluation grid on [0, 1).
        grid_samples: samples per grid point in the output.
        betas: Adam's betas (the authors: torch's default (0.9, 0.999)).
        negative_slope: leaky-ReLU slope of ``G`` and ``D`` (and ``F`` unless ReLU).
        f_activation: ``leaky`` or ``relu`` (the authors' ``F``).
        ablation_samples: samples per ``x`` in the ablation's generator loss (``None``:
            ``samples``; the authors: 1).
        d_fake_samples: fresh samples per ``x`` that ``D`` sees as fakes (``None``: the
            generator step's samples, detached; the authors: 1).
        eval_every: every so many iterations, the mean log-likelihood of one ``G`` sample per
            ``x`` for ``eval_points`` fresh ``x`` under the true mixture (0: never).
        eval_points: ``x`` per evaluation.

    Returns:
        ``{"x": (grid_size,), "f": (grid_size,), "samples": (grid_samples, grid_size),
        "upper_fraction": float, "pi": pi, "with_cal": bool, "ll_curve": [(iteration,
        mean log-likelihood), ...]}`` (numpy arrays); ``upper_fraction`` is the fraction of
        samples with ``y > 0`` over the grid points with ``x < 0.4`` (about ``pi`` when both
        branches are covered; 0 or 1 on collapse).
    """
    gen = torch.Generator().manual_seed(seed)
    eval_gen = torch.Generator().manual_seed(seed + 10_000)
    torch.manual_seed(seed)
    net_f = mlp(1, negative_slope=negative_slope, activation=f_activation)
    net_g = mlp(2 + latent_dim, negative_slope=negative_slope)
    net_d = mlp(2, negative_slope=negative_slope)
    opt = {name: torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
           for name, net in (("f", net_f), ("g", net_g), ("d", net_d))}
    n_g = samples if with_cal or ablation_samples is None else ablation_samples
    ll_curve: list[tuple[int, float]] = []
    for _ in range(f_steps):
        x, y = sample_toy(f_batch_size, pi=pi, sigma=sigma, generator=gen)
        loss_f = F.mse_loss(net_f(x), y)
        opt["f"].zero_grad()
        loss_f.backward()
        opt["f"].step()
    net_f.requires_grad_(False)

    def draw(x: Tensor, f: Tensor, n: int) -> tuple[Tensor, Tensor]:
        z = torch.randn(n * x.shape[0], latent_dim, generator=gen)
        xs = x.repeat(n, 1)
        return xs, net_g(torch.cat([xs, f.repeat(n, 1), z], dim=1))

    for step in range(steps):
        x, y = sample_toy(batch_size, pi=pi, sigma=sigma, generator=gen)
        f = net_f(x)
        xs, fake = draw(x, f, n_g)
        if d_fake_samples is None:  # densecal's variant: D sees the generator step's samples
            xd, fake_d = xs, fake.detach()
        else:
            with torch.no_grad():
                xd, fake_d = draw(x, f, d_fake_samples)
        real_logit = net_d(torch.cat([x, y], dim=1))
        fake_logit = net_d(torch.cat([xd, fake_d], dim=1))
        loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        opt["d"].zero_grad()
        loss_d.backward()
        opt["d"].step()

        gen_logit = net_d(torch.cat([xs, fake], dim=1))
        loss_g = adv_weight * F.binary_cross_entropy_with_logits(
            gen_logit, torch.ones_like(gen_logit))
        if with_cal:
            mean = fake.view(n_g, batch_size, 1).mean(0)
            loss_g = loss_g + cal_weight * 0.5 * (mean - f).pow(2).mean()
        opt["g"].zero_grad()
        loss_g.backward()
        opt["g"].step()
        if eval_every and (step + 1) % eval_every == 0:
            with torch.no_grad():
                xe = torch.rand(eval_points, 1, generator=eval_gen)
                ye = draw(xe, net_f(xe), 1)[1]
                ll = toy_log_likelihood(xe[:, 0], ye[:, 0], pi, sigma).mean()
            ll_curve.append((step + 1, float(ll)))

    with torch.no_grad():
        grid = torch.linspace(0.0, 1.0, grid_size + 1)[:-1, None]
        f_grid = net_f(grid)
        z = torch.randn(grid_samples * grid_size, latent_dim, generator=gen)
        out = net_g(torch.cat([grid.repeat(grid_samples, 1), f_grid.repeat(grid_samples, 1), z],
                              dim=1)).view(grid_samples, grid_size)
    left = grid[:, 0] < 0.4
    return {"x": grid[:, 0].numpy(), "f": f_grid[:, 0].numpy(), "samples": out.numpy(),
            "upper_fraction": float((out[:, left] > 0).float().mean()), "pi": pi,
            "with_cal": with_cal, "ll_curve": ll_curve}
