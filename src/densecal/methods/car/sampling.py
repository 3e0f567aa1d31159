"""Load a CAR checkpoint and draw samples: ``F`` once, then ``n`` samples of ``G``.

Source: Kassapis et al., ICCV 2021 (inference: 16 samples by default, 50/100 also reported);
docs/methods.md section 4. Training: :mod:`densecal.methods.car`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from densecal._checks import check_int
from densecal.data.folder import resize_labels
from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error
from densecal.methods.car.module import CARModule
from densecal.methods.loading import load_module_checkpoint

__all__ = ["load_car", "sample_car", "sample_images"]


def load_car(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> CARModule:
    """Load a CAR checkpoint (written by :func:`train_car`) in eval mode.

    Raises:
        DensecalInputError: missing file, unreadable, or not a CAR checkpoint.
    """
    module = load_module_checkpoint(checkpoint, CARModule, family=lambda m: m == "car",
                                    what="CAR checkpoint", required=("config",))
    return module.to(map_location)


@torch.no_grad()
def sample_car(module: CARModule, images: Tensor, n: int = 16, *,
               generator: torch.Generator | None = None, base: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
    """``F`` once, then ``n`` samples of ``G`` (CAR inference; 16 by default in the paper).

    Args:
        module: a CAR module (put it in eval mode first).
        images: ``(3, H, W)`` one image or ``(N, 3, H, W)`` a batch, in [0, 1], H and W
            multiples of 8.
        n: samples per image.
        generator: optional RNG for the latents (on the module's device).
        base: base label maps ``(H, W)`` or ``(N, H, W)``, needed by an oracle ``F``
            (``car.oracle``).

    Returns:
        ``(f, samples)``: ``F``'s probabilities ``(K, H, W)`` and the samples ``(n, K, H, W)``
        for one image, or ``(N, K, H, W)`` and ``(N, n, K, H, W)`` for a batch; probabilities
        over ``K``.

    Raises:
        DensecalInputError: ``n < 1`` or ``images`` not 3- or 4-dimensional.
    """
    check_int("n", n, low=1)
    if images.dim() not in (3, 4):
        raise input_error("images", "expected (3, H, W) or (N, 3, H, W), got "
                          f"{tuple(images.shape)}")
    single = images.dim() == 3
    batch = images[None] if single else images
    if base is not None and single:
        base = base[None]
    f_probs = module.calibration_probs(batch, base)
    count, latent = batch.shape[0], module.car.latent_dim
    z = torch.randn(n * count, latent, generator=generator, device=batch.device)
    out = module.net_g(batch.repeat(n, 1, 1, 1), f_probs.repeat(n, 1, 1, 1), z)
    samples = out.view(n, count, *out.shape[1:]).transpose(0, 1)  # (N, n, K, H, W)
    return (f_probs[0], samples[0]) if single else (f_probs, samples)


@torch.no_grad()
def sample_images(module: CARModule, images: Iterable[np.ndarray], n: int = 16, *,
                  seed: int = 0, bases: Iterable[np.ndarray] | None = None
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`sample_car` for RGB images at their original sizes.

    Each image is resized to the training ``image_size``, sampled, and the probabilities are
    resized back (bilinear) to the image's size.

    Args:
        module: a loaded CAR module (see :func:`load_car`).
        images: RGB ``(H, W, 3)`` uint8 arrays.
        n: samples per image.
        seed: seed of the latent draws (reproducible output).
        bases: the images' base label maps ``(H, W)`` (an oracle ``F`` needs them), resized to
            the training size by nearest neighbour.

    Yields:
        ``(f, samples)`` float32 arrays ``(K, H, W)`` and ``(n, K, H, W)``, in input order.
    """
    size = module.config.image_size
    device = next(module.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    base_maps = iter(bases) if bases is not None else None
    for image in images:
        h, w = image.shape[:2]
        x = resize(image_to_tensor(image), size).to(device)
        base = None
        if base_maps is not None:
            label = torch.from_numpy(np.asarray(next(base_maps), dtype=np.int64))
            base = resize_labels(label, size).to(device)
        f_probs, samples = sample_car(module, x, n, generator=generator, base=base)
        both = torch.cat([f_probs[None], samples])
        both = F.interpolate(both, size=(h, w), mode="bilinear", align_corners=False)
        yield both[0].float().cpu().numpy(), both[1:].float().cpu().numpy()
