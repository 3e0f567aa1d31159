"""Joint image/mask tensor transforms: resizing and the light training augmentation.

Plain torch (no torchvision, which has no CPU build that matches the pinned torch). Random draws
use torch's global generator, so ``lightning.seed_everything`` (which also seeds DataLoader
workers) makes them reproducible.

The augmentation follows the ASLP training recipe (docs/methods.md section 1.3; Liu et al., ICCV
2023, official code github.com/Carlisle-Liu/ASLP): horizontal flip, a small random border crop
(up to 30 px, here also at most 1/8 of each side so small images are not cropped away), rotation
by a uniform angle in [-15, 15] degrees with probability 0.2. The mask is transformed with the
same bilinear resampling as the image, so it stays soft.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "image_to_tensor", "normalize_images",
           "pair_to_tensors", "random_augment", "resize"]

MAX_BORDER_CROP = 30
ROTATION_PROBABILITY = 0.2
MAX_ROTATION_DEG = 15.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet (the official ASLP recipe's ``transforms.Normalize``)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet."""


def normalize_images(image: torch.Tensor, kind: str) -> torch.Tensor:
    """Images ``(N, 3, H, W)`` in [0, 1] as the network sees them: unchanged for ``none``,
    ``(x - mean) / std`` per channel for ``imagenet`` (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).

    Example:
        >>> normalize_images(torch.full((1, 3, 1, 1), 0.485), "imagenet")[0, 0].item()
        0.0
    """
    if kind == "none":
        return image
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image - mean) / std


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Convert an ``(H, W, 3)`` uint8 image to a ``(3, H, W)`` float32 tensor in [0, 1]."""
    # the float32 copy is ours (writable), so read-only inputs raise no warning
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255.0)


def pair_to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert an ``(H, W, 3)`` uint8 image and ``(H, W)`` float mask to float32 tensors.

    Returns:
        ``(3, H, W)`` image in [0, 1] (value / 255) and ``(1, H, W)`` mask.
    """
    image_t = image_to_tensor(image)
    mask_t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)).unsqueeze(0)
    return image_t, mask_t


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``(C, H, W)`` float tensor to ``(C, size, size)`` with bilinear interpolation.

    Antialiasing (PyTorch's ``antialias=True``, a triangle filter widened by the scale factor,
    as PIL's resize) is used when either side shrinks. The output is clamped to [0, 1] (inputs
    are expected there), so soft masks stay soft and in range.
    """
    height, width = x.shape[-2:]
    if (height, width) == (size, size):
        return x
    shrink = height > size or width > size
    out = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                        antialias=shrink)[0]
    return out.clamp_(0.0, 1.0)


def _rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a ``(C, H, W)`` tensor about its centre (bilinear, zeros outside)."""
    height, width = x.shape[-2:]
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    # Normalised coordinates scale x by 2/W and y by 2/H; a pixel-space rotation becomes this
    # matrix (the aspect ratio enters the off-diagonal terms).
    theta = torch.tensor([[cos, -sin * height / width, 0.0],
                          [sin * width / height, cos, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta[None], [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def _randint(high: int) -> int:
    """Uniform integer in [0, high] from torch's global generator."""
    return int(torch.randint(0, high + 1, ()).item())


def random_augment(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the same random flip / border crop / rotation to an image and its mask.

    Args:
        image: ``(C, H, W)`` float tensor.
        mask: ``(1, H, W)`` float tensor, same ``H, W``.

    Returns:
        The transformed image and mask (the crop may make them smaller than ``H, W``).
    """
    joint = torch.cat([image, mask], dim=0)
    if torch.rand(()) < 0.5:
        joint = joint.flip(-1)
    height, width = joint.shape[-2:]
    crop_h = _randint(min(MAX_BORDER_CROP, height // 8))
    crop_w = _randint(min(MAX_BORDER_CROP, width // 8))
    top, left = _randint(crop_h), _randint(crop_w)
    joint = joint[:, top:top + height - crop_h, left:left + width - crop_w]
    if torch.rand(()) < ROTATION_PROBABILITY:
        degrees = (torch.rand(()).item() * 2.0 - 1.0) * MAX_ROTATION_DEG
        joint = _rotate(joint, degrees)
    channels = image.shape[0]
    return joint[:channels].contiguous(), joint[channels:].contiguous()
