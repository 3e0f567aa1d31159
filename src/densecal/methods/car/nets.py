"""CAR's networks and formulas (no Lightning): generator with latent injection, discriminator,
calibration loss, adversarial losses and the R1 penalty.

Source: Kassapis et al., "Calibrated Adversarial Refinement for Stochastic Semantic
Segmentation" (ICCV 2021), official code github.com/EliasKassapis/CARSSS; docs/methods.md
section 4. The Lightning side (training loop, schedule, sampling) is :mod:`densecal.methods.car`.

- :class:`LatentInjection`: ``h <- (h + r(z)) * (s(z) + 1e-5)``, per-channel shift ``r`` and
  scale ``s`` from linear maps of the latent ``z``.
- :class:`RefinementGenerator` ``G``: a U-Net on ``concat(x, F(x))`` with ``z`` injected at three
  decoder points; softmax output over ``K`` classes.
- :class:`CARSSSDiscriminator`: ``D`` in the CARSSS code's form (full-resolution 3x3 stem,
  strided convolutions, flatten + linear); ``CAROptions.discriminator = "carsss"``.
- :class:`ImageDiscriminator` ``D``: strided convolutions on ``concat(x, label map)``, global
  average pooling, one logit per image.
- :func:`calibration_kl`: ``L_cal = mean_pixels sum_k G_k (log G_k - log F_k)``, both clamped to
  ``[1e-3, 1 - 1e-3]``.
- :func:`r1_penalty`, :func:`discriminator_loss`, :func:`generator_adversarial_loss`,
  :func:`discriminator_accuracy`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densecal.errors import input_error

__all__ = [
    "CARSSSDiscriminator",
    "ImageDiscriminator",
    "LatentInjection",
    "RefinementGenerator",
    "calibration_kl",
    "discriminator_accuracy",
    "discriminator_loss",
    "generator_adversarial_loss",
    "r1_penalty",
]

SCALE_EPS = 1e-5
"""The ``1e-5`` added to the scale ``s(z)`` (CARSSS), so a zero scale never kills a channel."""


RESIDUAL_EPS = 1e-6
"""Floor of ``F(x)`` before the log in a residual generator's logits."""


class LatentInjection(nn.Module):
    """Inject a latent vector into a feature map: ``h <- (h + r(z)) * (s(z) + 1e-5)``.

    ``r`` and ``s`` are linear maps ``R^L -> R^C`` giving one shift and one scale per channel,
    broadcast over space (CAR, Kassapis et al. 2021, Sec. 3 / the CARSSS generator). The scale's
    bias starts at 1, so at initialisation the block is close to the identity plus a
    ``z``-dependent perturbation.

    Args:
        latent_dim: size ``L`` of ``z``.
        channels: channels ``C`` of the feature map.

    Example:
        >>> inj = LatentInjection(2, 3)
        >>> inj(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.shift = nn.Linear(latent_dim, channels)
        self.scale = nn.Linear(latent_dim, channels)
        nn.init.ones_(self.scale.bias)

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        """Args: ``h`` ``(N, C, H, W)``, ``z`` ``(N, L)``. Returns ``(N, C, H, W)``."""
        r = self.shift(z)[:, :, None, None]
        s = self.scale(z)[:, :, None, None]
        return (h + r) * (s + SCALE_EPS)


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    # no normalisation: an instance norm after the injection would remove its spatially constant
    # shift, and a batch norm would mix the M samples of one image
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2))


class RefinementGenerator(nn.Module):
    """CAR's refinement network ``G``: a U-Net on ``concat(x, F(x))`` with latent injection.

    Encoder: four two-conv blocks (channels ``channels``), 2x2 max-pooling between them (three
    down-samplings). Decoder: three levels of bilinear up-sampling, concatenation with the skip,
    a two-conv block and a :class:`LatentInjection` of ``z`` (the three injection points of
    CARSSS); a 1x1 convolution to ``K`` logits and a softmax over classes. H and W must be
    divisible by 8. Plain torch, no normalisation (densecal's CPU-sized reading of CARSSS, whose
    generator is deeper).

    Args:
        num_classes: ``K >= 2``.
        in_channels: image channels (3).
        latent_dim: size of ``z`` (8 on LIDC, 32 on Cityscapes in the paper).
        channels: four encoder widths.
        residual: add ``log max(F(x), 1e-6)`` to the logits, so ``G`` learns a refinement of
            ``F`` and starts near it (densecal's option, see :class:`~densecal.methods.car.
            CAROptions`); ``False`` is CARSSS's plain U-Net output.

    Example:
        >>> g = RefinementGenerator(3, latent_dim=4, channels=(4, 8, 8, 8))
        >>> x, f = torch.rand(2, 3, 16, 16), torch.full((2, 3, 16, 16), 1 / 3)
        >>> g(x, f, torch.randn(2, 4)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3, latent_dim: int = 8,
                 channels: Sequence[int] = (16, 32, 64, 128), residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        if len(channels) != 4:
            raise ValueError(f"channels: need 4 widths, got {len(channels)}")
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        c = list(channels)
        self.encoder = nn.ModuleList([_block(in_channels + num_classes, c[0]),
                                      _block(c[0], c[1]), _block(c[1], c[2]),
                                      _block(c[2], c[3])])
        self.decoder = nn.ModuleList([_block(c[3] + c[2], c[2]), _block(c[2] + c[1], c[1]),
                                      _block(c[1] + c[0], c[0])])
        self.inject = nn.ModuleList([LatentInjection(latent_dim, w) for w in (c[2], c[1], c[0])])
        self.head = nn.Conv2d(c[0], num_classes, 1)

    def logits(self, image: Tensor, f_probs: Tensor, z: Tensor) -> Tensor:
        """Class logits ``(N, K, H, W)`` before the softmax (see :meth:`forward`)."""
        h = torch.cat([image, f_probs], dim=1)
        skips = []
        for i, block in enumerate(self.encoder):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for block, inject, skip in zip(self.decoder, self.inject, reversed(skips[:-1]),
                                       strict=True):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = inject(block(torch.cat([h, skip], dim=1)), z)
        if self.residual:  # refine F in log space: a zero head gives back F itself
            return self.head(h) + f_probs.clamp_min(RESIDUAL_EPS).log()
        return self.head(h)

    def forward(self, image: Tensor, f_probs: Tensor, z: Tensor) -> Tensor:
        """One sample per row of ``z``.

        Args:
            image: ``(N, C, H, W)`` in [0, 1].
            f_probs: ``(N, K, H, W)`` calibration-net probabilities (detach them before).
            z: ``(N, L)`` latent codes, ``N(0, I)`` draws.

        Returns:
            ``(N, K, H, W)`` class probabilities (softmax over ``K``).
        """
        return torch.softmax(self.logits(image, f_probs, z), dim=1)


class ImageDiscriminator(nn.Module):
    """CAR's discriminator ``D``: one logit per image for an (image, label map) pair.

    Strided 4x4 convolutions (stride 2) with leaky ReLU on ``concat(x, y)``, global average
    pooling and a linear layer. ``y`` is a one-hot (real) or soft (generated) ``(N, K, H, W)``
    map. No normalisation, so the R1 penalty stays a per-image quantity.

    Args:
        num_classes: ``K``.
        in_channels: image channels (3).
        channels: widths of the strided convolutions.
    """

    def __init__(self, num_classes: int, *, in_channels: int = 3,
                 channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels + num_classes
        for out in channels:
            layers += [nn.Conv2d(width, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, 1)

    def forward(self, image: Tensor, label: Tensor) -> Tensor:
        """Args: ``image`` ``(N, C, H, W)``, ``label`` ``(N, K, H, W)``. Returns ``(N,)``
        logits (real when positive)."""
        h = self.features(torch.cat([image, label], dim=1))
        return self.fc(h.mean(dim=(2, 3)))[:, 0]


class CARSSSDiscriminator(nn.Module):
    """CAR's discriminator in the form of the CARSSS code (``PixelDiscriminator``): one logit
    per image for an (image, label map) pair.

    A full-resolution stem of three 3x3 convolutions (reflection padding, ``width`` channels),
    a 4x4 stride-2 convolution, ``n_layers`` 4x4 convolutions widening to ``width * min(2^i,
    8)`` (stride 2, the last stride 1), a 4x4 convolution back to ``width`` channels, then the
    feature map flattened into one linear layer (no pooling: D sees where things are). Leaky
    ReLU 0.2 throughout, no normalisation. CARSSS ends with a sigmoid; densecal's losses take
    the logit. Heavier than :class:`ImageDiscriminator` (the stem runs at full resolution).

    Args:
        num_classes: ``K``.
        image_size: side ``S`` of the square inputs (the linear layer's size depends on it;
            ``S >= 8 * 3`` with the default ``n_layers``).
        in_channels: image channels (3).
        width: ``n_hidden`` of CARSSS (64).
        n_layers: widening layers (3).

    Raises:
        DensecalInputError: ``image_size`` too small for ``n_layers``.
    """

    def __init__(self, num_classes: int, image_size: int, *, in_channels: int = 3,
                 width: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        side = image_size // 2**n_layers - 2
        if side < 1:
            raise input_error("image_size", f"must be at least {8 * 2 ** (n_layers - 3) * 3} "
                                            f"for the CARSSS discriminator, got {image_size}")
        layers: list[nn.Module] = []
        channels = in_channels + num_classes
        for _ in range(3):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, width, 3), nn.LeakyReLU(0.2)]
            channels = width
        layers += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for i in range(1, n_layers + 1):
            out = width * min(2**i, 8)
            stride = 1 if i == n_layers else 2
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False),
                       nn.LeakyReLU(0.2)]
            channels = out
        layers += [nn.Conv2d(channels, width, 4, stride=1, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width * side * side, 1)

    def forward(self, image: Tensor, label: Tensor) -> Tensor:
        """Args: ``image`` ``(N, C, S, S)``, ``label`` ``(N, K, S, S)``. Returns ``(N,)``
        logits (real when positive)."""
        h = self.features(torch.cat([image, label], dim=1))
        return self.fc(h.flatten(1))[:, 0]


def calibration_kl(mean_samples: Tensor, f_probs: Tensor, valid: Tensor | None = None, *,
                   eps: float = 1e-3) -> Tensor:
    """CAR's calibration loss ``L_cal = mean_pixels KL(G_bar || F)``.

    ``KL = sum_k G_k (log G_k - log F_k)`` per pixel with both distributions clamped to
    ``[eps, 1 - eps]`` (no renormalisation, as CARSSS), averaged over the valid pixels
    (Kassapis et al. 2021, Eq. 5; docs/methods.md section 4). Pass ``f_probs`` detached.

    Args:
        mean_samples: ``G_bar``, the mean of the generator's samples, ``(N, K, H, W)``.
        f_probs: calibration-net probabilities ``(N, K, H, W)``.
        valid: optional ``(N, H, W)`` boolean mask of labelled pixels (``ignore_index`` pixels
            false); all pixels when ``None``. No valid pixel gives 0.
        eps: clamp bound (``1e-3``).

    Returns:
        Scalar tensor.

    Example:
        >>> p = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
        >>> float(calibration_kl(p, p))
        0.0
    """
    g = mean_samples.clamp(eps, 1.0 - eps)
    f = f_probs.clamp(eps, 1.0 - eps)
    kl = (g * (g.log() - f.log())).sum(dim=1)
    if valid is None:
        return kl.mean()
    weight = valid.to(kl.dtype)
    return (kl * weight).sum() / weight.sum().clamp_min(1.0)


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss ``BCE(D(G(x, z)), 1)``, mean over all samples (Goodfellow
    et al. 2014; CAR applies it to all ``M`` samples).

    Args:
        fake_logits: ``(N,)`` discriminator logits of generated pairs.
    """
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``BCE(D(real), 1) + BCE(D(fake), 0)``, each a mean over its images (the R1 term is added
    by the caller; see :func:`r1_penalty`)."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def discriminator_accuracy(real_logits: Tensor, fake_logits: Tensor) -> float:
    """Fraction of images ``D`` classifies right (real: logit > 0, fake: logit < 0), pooled over
    real and fake images."""
    right = (real_logits > 0).sum() + (fake_logits < 0).sum()
    return float(right) / float(real_logits.numel() + fake_logits.numel())


def r1_penalty(real_logits: Tensor, inputs: Sequence[Tensor]) -> Tensor:
    """R1 gradient penalty (Mescheder et al., ICML 2018): ``mean_images ||grad_in D(real)||^2``.

    The squared norm sums over every element of every input of one image (image and label map),
    then averages over images. The weight (10 in CAR) is applied by the caller. The graph is kept
    (``create_graph=True``) so the penalty trains ``D``.

    Args:
        real_logits: ``(N,)`` logits of real pairs, computed from ``inputs``.
        inputs: the tensors ``D`` saw, each ``(N, ...)`` with ``requires_grad=True``.

    Returns:
        Scalar tensor.
    """
    grads = torch.autograd.grad(real_logits.sum(), list(inputs), create_graph=True)
    return sum(g.pow(2).flatten(1).sum(dim=1) for g in grads).mean()  # type: ignore[union-attr]
