"""CALSeg's Variational Label Smoothing (VLS): the conditional VAE and the formulas (no Lightning).

Source: Guo et al., "CALSeg: Improving Calibration of Medical Image
Segmentation via Variational Label Smoothing" (ICASSP 2024), the paper's figure
and its (incomplete, stage-1-only) official code github.com/Guoxt/CALSeg; ``docs/methods.md``,
CALSeg. The Lightning side (stage-1 module, soft-label cache, stage-2 data) is
:mod:`densecal.methods.vls.stage1`.

- :class:`ConditionalVAE` (stage 1): ``f_theta`` a U-Net on the image giving a feature map
  ``h_x``; ``f_omega`` a posterior encoder on ``concat(x, onehot(y))`` giving ``mu, log sigma^2``
  after global average pooling; ``z = mu + sigma * eps`` broadcast over space and concatenated
  with ``h_x``; heads ``f_phi`` (segmentation logits ``v``) and ``f_psi`` (reconstruction
  ``x_hat``, sigmoid).
- :class:`BottleneckCVAE` (densecal's non-paper variant, ``--vls-variant bottleneck``): the same
  posterior, but ``f_theta`` is an encoder without skip connections and ``z`` joins its
  bottleneck, so every segmentation and reconstruction passes through ``z``.
- :func:`make_cvae`: the network of a run's ``vls_variant``.
- :func:`gaussian_kl`, :func:`cvae_loss`: ``CE(v, y) + MSE(x_hat, x) + w KL(q(z|x,y) || N(0, I))``
  (``w = 1`` in the paper; below 1 during KL annealing).
- :func:`vls_soft_labels`: ``Y_s = (1 - a) onehot(y) + a mean_m softmax(v_m / tau)``.
- stage 2's loss, pixel-mean ``KL(Y_s || softmax)``, is :class:`densecal.losses.SoftLabelKLLoss`.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densecal._checks import parse_choice
from densecal.errors import input_error
from densecal.losses._common import reduce_pixels
from densecal.losses.soft_label import one_hot_labels
from densecal.methods.config import VLSVariant

__all__ = [
    "BottleneckCVAE",
    "CVAEOutput",
    "ConditionalVAE",
    "cvae_loss",
    "gaussian_kl",
    "make_cvae",
    "vls_soft_labels",
]

_ACT = ("LEAKYRELU", {"negative_slope": 0.01})


class CVAEOutput(NamedTuple):
    """What :meth:`ConditionalVAE.forward` returns.

    Attributes:
        logits: segmentation logits ``v``, ``(N, K, H, W)``.
        reconstruction: ``x_hat`` in (0, 1), ``(N, C, H, W)``.
        mu: posterior mean ``(N, L)``.
        logvar: posterior log-variance ``log sigma^2``, ``(N, L)``.
    """

    logits: Tensor
    reconstruction: Tensor
    mu: Tensor
    logvar: Tensor


def _head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    # 1x1 convolutions without normalisation: z is constant over space, so an instance norm
    # after mixing it in would subtract exactly its contribution and the latent would be ignored
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.LeakyReLU(0.01),
                         nn.Conv2d(hidden, out_channels, 1))


class ConditionalVAE(nn.Module):
    """CALSeg's stage-1 conditional VAE over (image, label map).

    Architecture (densecal's CPU-sized reading of the official code, which uses 24 base channels,
    depth 5, instance norm and leaky ReLU):

    - ``f_theta``: MONAI ``UNet`` (channels ``channels``, strides 2, one residual unit, instance
      norm, leaky ReLU) mapping the image to ``features`` channels ``h_x``;
    - ``f_omega``: four MONAI ``Convolution`` blocks (3x3, instance norm, leaky ReLU, strides
      1, 2, 2, 1) on ``concat(x, onehot(y))``, global average pooling, a linear map to
      ``2 * latent`` numbers ``(mu, log sigma^2)``;
    - heads ``f_phi`` / ``f_psi`` on ``concat(h_x, z)``: 1x1 conv, leaky ReLU, 1x1 conv to ``K``
      logits / ``in_channels`` sigmoid outputs. No normalisation in the heads (an instance norm
      would remove the spatially constant ``z``).

    Args:
        num_classes: ``K >= 2``.
        in_channels: image channels ``C`` (3 for densecal's RGB tensors).
        latent: latent size ``L`` (3 in the official code).
        features: channels of ``h_x``.
        channels: U-Net channels per level (three down-samplings: ``H, W`` multiples of 8).

    Raises:
        DensecalInputError: ``num_classes < 2`` or ``latent < 1``.

    Example:
        >>> net = ConditionalVAE(num_classes=3)
        >>> out = net(torch.rand(2, 3, 32, 32), one_hot_labels(torch.zeros(2, 32, 32).long(), 3))
        >>> tuple(out.logits.shape), tuple(out.reconstruction.shape), tuple(out.mu.shape)
        ((2, 3, 32, 32), (2, 3, 32, 32), (2, 3))
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, latent: int = 3,
                 features: int = 16, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        from monai.networks.blocks import Convolution
        from monai.networks.nets import UNet

        if num_classes < 2:
            raise input_error("num_classes", f"VLS needs K >= 2 classes, got {num_classes}")
        if latent < 1:
            raise input_error("latent", f"must be a positive integer, got {latent}")
        self.num_classes, self.latent = num_classes, latent
        self.f_theta = UNet(spatial_dims=2, in_channels=in_channels, out_channels=features,
                            channels=channels, strides=(2,) * (len(channels) - 1),
                            num_res_units=1, act=_ACT, norm="INSTANCE")
        widths = (16, 32, 64, 64)
        blocks, previous = [], in_channels + num_classes
        for width, stride in zip(widths, (1, 2, 2, 1), strict=True):
            blocks.append(Convolution(2, previous, width, strides=stride, act=_ACT,
                                      norm="INSTANCE"))
            previous = width
        self.f_omega = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(previous, 2 * latent))
        self.f_phi = _head(features + latent, features, num_classes)
        self.f_psi = _head(features + latent, features, in_channels)

    def features(self, image: Tensor) -> Tensor:
        """``h_x = f_theta(x)``: ``(N, C, H, W)`` -> ``(N, features, H, W)``."""
        return self.f_theta(image)

    def posterior(self, image: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log sigma^2)``, each ``(N, L)``, of ``q(z | x, y)`` from the image and the
        one-hot label map ``(N, K, H, W)``."""
        stats = self.f_omega(torch.cat([image, onehot.to(image.dtype)], 1))
        return stats[:, :self.latent], stats[:, self.latent:]

    def _with_latent(self, h: Tensor, z: Tensor) -> Tensor:
        return torch.cat([h, z[:, :, None, None].expand(-1, -1, *h.shape[2:])], 1)

    def segment(self, h: Tensor, z: Tensor) -> Tensor:
        """Logits ``v = f_phi(concat(h_x, z))`` ``(N, K, H, W)`` for features ``h`` and a latent
        ``z`` ``(N, L)`` broadcast over space."""
        return self.f_phi(self._with_latent(h, z))

    def reconstruct(self, h: Tensor, z: Tensor) -> Tensor:
        """``x_hat = sigmoid(f_psi(concat(h_x, z)))`` ``(N, C, H, W)`` in (0, 1)."""
        return torch.sigmoid(self.f_psi(self._with_latent(h, z)))

    def forward(self, image: Tensor, onehot: Tensor) -> CVAEOutput:
        """One reparameterised pass (``z = mu + sigma * eps``, ``eps ~ N(0, I)``).

        Args:
            image: ``(N, C, H, W)`` in [0, 1].
            onehot: ``(N, K, H, W)`` one-hot labels (all-zero at ignored pixels).

        Returns:
            :class:`CVAEOutput` with logits, reconstruction, ``mu`` and ``log sigma^2``.
        """
        h = self.features(image)
        mu, logvar = self.posterior(image, onehot)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return CVAEOutput(self.segment(h, z), self.reconstruct(h, z), mu, logvar)


def _decoder(in_channels: int, out_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    # no normalisation: z is constant over space and an instance norm would remove it
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1),
                               nn.LeakyReLU(0.01)]
    for previous, width in itertools.pairwise(widths):
        layers += [nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1),
                   nn.LeakyReLU(0.01)]
    layers.append(nn.Conv2d(widths[-1], out_channels, 1))
    return nn.Sequential(*layers)


class BottleneckCVAE(ConditionalVAE):
    """densecal's non-paper VLS stage 1: the latent at the bottleneck, no path around it.

    In the paper's network (:class:`ConditionalVAE`) the U-Net's full-resolution features reach
    the heads directly, so the heads can segment without ``z`` and the KL term pushes the
    posterior to the prior (posterior collapse). Here ``f_theta`` is an encoder of four MONAI
    ``Convolution`` blocks (3x3, instance norm, leaky ReLU, strides 1, 2, 2, 2: ``h_x`` at
    1/8 of the input side, ``channels[-1]`` channels) and ``f_phi`` / ``f_psi`` are decoders on
    ``concat(h_x, z)`` (a 3x3 convolution, three stride-2 transposed convolutions back to full
    size, a 1x1 convolution to ``K`` logits / ``C`` sigmoid outputs; no normalisation, which
    would remove the spatially constant ``z``). Combine with KL annealing
    (``--vls-kl-warmup``). Posterior, loss and soft labels are those of the paper.

    Args:
        num_classes: ``K >= 2``.
        in_channels: image channels ``C``.
        latent: latent size ``L``.
        channels: encoder widths (four levels, three down-samplings: ``H, W`` multiples of 8).

    Example:
        >>> net = BottleneckCVAE(num_classes=3)
        >>> out = net(torch.rand(2, 3, 32, 32), one_hot_labels(torch.zeros(2, 32, 32).long(), 3))
        >>> tuple(out.logits.shape), tuple(net.features(torch.rand(1, 3, 32, 32)).shape)
        ((2, 3, 32, 32), (1, 64, 4, 4))
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, latent: int = 3,
                 channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__(num_classes, in_channels=in_channels, latent=latent)
        from monai.networks.blocks import Convolution

        if len(channels) != 4:
            raise input_error("channels", f"expected four encoder widths, got {channels!r}")
        blocks, previous = [], in_channels
        for width, stride in zip(channels, (1, 2, 2, 2), strict=True):
            blocks.append(Convolution(2, previous, width, strides=stride, act=_ACT,
                                      norm="INSTANCE"))
            previous = width
        self.f_theta = nn.Sequential(*blocks)
        widths = tuple(reversed(channels))
        self.f_phi = _decoder(previous + latent, num_classes, widths)
        self.f_psi = _decoder(previous + latent, in_channels, widths)


def make_cvae(num_classes: int, *, latent: int = 3, variant: str = "paper") -> ConditionalVAE:
    """The stage-1 network of ``variant``: ``paper`` (:class:`ConditionalVAE`) or
    ``bottleneck`` (:class:`BottleneckCVAE`).

    Raises:
        DensecalInputError: an unknown variant, ``num_classes < 2`` or ``latent < 1``.
    """
    chosen = parse_choice(VLSVariant, variant, "--vls-variant")
    cls = BottleneckCVAE if chosen == VLSVariant.BOTTLENECK else ConditionalVAE
    return cls(num_classes, latent=latent)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag sigma^2) || N(0, I))`` per sample, summed over latent dimensions.

    ``KL = 1/2 sum_l (mu_l^2 + sigma_l^2 - 1 - log sigma_l^2)`` (Kingma & Welling 2014, app. B).

    Args:
        mu: ``(N, L)`` means.
        logvar: ``(N, L)`` log-variances.

    Returns:
        ``(N,)`` non-negative KL values.

    Example:
        >>> gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))
        tensor([0.5000])
    """
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)


def cvae_loss(output: CVAEOutput, image: Tensor, labels: Tensor,
              ignore_index: int | None = None, *, kl_weight: float = 1.0) -> dict[str, Tensor]:
    """Stage-1 loss ``CE(v, y) + MSE(x_hat, x) + w KL``, all weights 1 in the paper
    (docs/methods.md section 3); ``w = kl_weight`` below 1 while KL annealing.

    CE is the mean over labelled pixels (0 if none), MSE the mean over image elements, KL
    (:func:`gaussian_kl`) summed over latent dimensions and **averaged over the batch** -- the
    official code sums it over the batch too; densecal averages so the weight of the KL term
    does not grow with the batch size.

    Args:
        output: the CVAE's forward output.
        image: ``(N, C, H, W)`` the reconstruction target in [0, 1].
        labels: ``(N, H, W)`` class indices (or ``ignore_index``).
        ignore_index: label value left out of the CE, or ``None``.
        kl_weight: ``w >= 0``.

    Returns:
        ``{"loss", "ce", "mse", "kl"}`` scalars (``kl`` unweighted).
    """
    pixel_ce = F.cross_entropy(output.logits, torch.where(labels == ignore_index, 0, labels)
                               if ignore_index is not None else labels, reduction="none")
    mask = None if ignore_index is None else labels != ignore_index
    ce = reduce_pixels(pixel_ce, mask, "mean")
    mse = F.mse_loss(output.reconstruction, image)
    kl = gaussian_kl(output.mu, output.logvar).mean()
    return {"loss": ce + mse + kl_weight * kl, "ce": ce, "mse": mse, "kl": kl}


def vls_soft_labels(sample_logits: Tensor, labels: Tensor, *, tau: float = 2.0,
                    mix: float = 0.3, ignore_index: int | None = None) -> Tensor:
    """Variational soft labels ``Y_s = (1 - a) onehot(y) + a y_s``, ``y_s = mean_m
    softmax(v_m / tau)`` (docs/methods.md section 3).

    The paper gives no values for ``m``, ``tau`` and ``a``; densecal's defaults ``m = 8``,
    ``tau = 2``, ``a = 0.3`` are its own choice. At ignored pixels (no one-hot) ``Y_s = y_s``.

    Args:
        sample_logits: ``(M, N, K, *S)`` logits of ``M`` posterior samples.
        labels: ``(N, *S)`` class indices (or ``ignore_index``).
        tau: temperature ``> 0``.
        mix: weight ``a`` in [0, 1] of the sampled distribution.
        ignore_index: label value without a one-hot, or ``None``.

    Returns:
        ``(N, K, *S)`` distributions over ``K`` (each pixel sums to 1), the logits' dtype.

    Raises:
        DensecalInputError: ``tau <= 0``, ``mix`` outside [0, 1], or mismatched shapes.

    Example:
        >>> v = torch.zeros(1, 1, 2, 1)  # one sample, one pixel, K = 2: y_s = (1/2, 1/2)
        >>> vls_soft_labels(v, torch.tensor([[1]]), mix=0.5).flatten().tolist()
        [0.25, 0.75]
    """
    if not tau > 0:
        raise input_error("--vls-tau", f"must be positive, got {tau!r}")
    if not 0.0 <= mix <= 1.0:
        raise input_error("--vls-mix", f"must lie in [0, 1], got {mix!r}")
    if sample_logits.ndim < 3 or sample_logits.shape[1:2] + sample_logits.shape[3:] \
            != labels.shape:
        raise input_error("sample_logits", f"shape {tuple(sample_logits.shape)} is not "
                                           f"(M, N, K, *S) for labels {tuple(labels.shape)}")
    mean = torch.softmax(sample_logits / tau, dim=2).mean(0)
    onehot = one_hot_labels(labels, mean.shape[1], ignore_index).to(mean.dtype)
    mixed = (1.0 - mix) * onehot + mix * mean
    if ignore_index is None:
        return mixed
    return torch.where((labels == ignore_index).unsqueeze(1), mean, mixed)
