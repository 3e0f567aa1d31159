"""Load a trained checkpoint and turn images into probability maps at their original size."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error
from densecal.methods.binary import BinarySegmentationModule

__all__ = ["load_module", "predict_images", "predict_logits"]


def load_module(checkpoint: str | Path, map_location: str | torch.device = "cpu"
                ) -> BinarySegmentationModule:
    """Load a ``densecal train`` checkpoint, ready for inference (eval mode).

    Raises:
        DensecalInputError: the file is missing, is not a checkpoint, or was not written by
            ``densecal train`` (named in the message).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise input_error(path, "no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError) as exc:
        raise input_error(path, f"cannot be read as a checkpoint ({type(exc).__name__})") from None
    hparams = state.get("hyper_parameters", {}) if isinstance(state, dict) else {}
    if "config" not in hparams or "num_train_images" not in hparams:
        raise input_error(path, "is not a densecal training checkpoint")
    module = BinarySegmentationModule(**hparams)
    weights = dict(state["state_dict"])
    for key, value in module.temperature.state_dict().items():  # uncalibrated: T = 1
        weights.setdefault(f"temperature.{key}", value)
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise input_error(path, f"weights do not match its configuration ({first})") from None
    return module.eval().to(map_location)


@torch.no_grad()
def predict_logits(module: BinarySegmentationModule, images: Sequence[np.ndarray],
                   batch_size: int = 16) -> Iterator[torch.Tensor]:
    """Foreground logits for RGB images, each at its own original size (before any temperature).

    Images are resized to the training ``image_size``, passed through the network in batches,
    and the logits resized back (bilinear) to the image size.

    Args:
        module: a loaded module (see :func:`load_module`).
        images: RGB images ``(H, W, 3)`` uint8, sizes may differ.
        batch_size: images per forward pass.

    Yields:
        ``(H, W)`` float32 logit tensors on the module's device, in input order.
    """
    size = module.config.image_size
    device = next(module.parameters()).device
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = torch.stack([resize(image_to_tensor(im), size) for im in chunk]).to(device)
        logits = module(batch)
        for im, logit in zip(chunk, logits, strict=True):
            h, w = im.shape[:2]
            up = F.interpolate(logit[None], size=(h, w), mode="bilinear", align_corners=False)
            yield up[0, 0].float()


@torch.no_grad()
def predict_images(module: BinarySegmentationModule, images: Sequence[np.ndarray],
                   batch_size: int = 16) -> Iterator[np.ndarray]:
    """Foreground probability maps ``sigmoid(logits / T)`` at each image's original size.

    ``T`` is the checkpoint's post-hoc temperature (1 unless fitted by ``densecal calibrate``).

    Yields:
        ``(H, W)`` float32 maps in [0, 1], in input order.
    """
    for logits in predict_logits(module, images, batch_size):
        yield torch.sigmoid(module.calibrated_logits(logits)).cpu().numpy()
