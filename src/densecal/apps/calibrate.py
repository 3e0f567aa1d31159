"""Fit a checkpoint's post-hoc temperature on held-out data: ``densecal calibrate``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from densecal._checks import check_out_apart
from densecal.apps.predict import load_segmenter, predicted
from densecal.data.pairs import find_pairs
from densecal.data.readers import read_label, read_mask
from densecal.errors import DensecalInputError, input_error, naming_sources
from densecal.methods.engine.checkpoints import read_checkpoint, write_checkpoint
from densecal.methods.segmentation.inference import predict_logits
from densecal.posthoc.temperature import FitResult

__all__ = ["calibrate_checkpoint"]


def calibrate_checkpoint(checkpoint: str | Path, data: str | Path, out: str | Path | None = None,
                         *, batch_size: int = 16) -> tuple[FitResult, Path]:
    """Fit the checkpoint's post-hoc temperature on a held-out folder dataset and save it.

    The frozen model predicts every image of ``data`` at its original size; T is fitted by
    streamed NLL minimisation (:meth:`densecal.posthoc.TemperatureScaler.fit`) against the masks,
    and a copy of the checkpoint carrying T is written atomically. ``predict`` and ``evaluate``
    then apply ``sigmoid(logits / T)``. The logits are cached on the CPU during the fit (4 bytes
    per pixel of ``data``).

    Args:
        checkpoint: a ``densecal train`` checkpoint.
        data: a folder dataset held out from training (e.g. the validation split).
        out: where to write the calibrated checkpoint (default: ``NAME-calibrated.ckpt`` beside
            the input; the input is never modified unless ``out`` names it). An existing
            ``out`` must be a densecal checkpoint; any other file is refused.
        batch_size: images per forward pass.

    Returns:
        The fit result (temperature, NLL before and after, passes, whether it hit a bound) and
        the path written.
    """
    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else checkpoint.with_name(
        f"{checkpoint.stem}-calibrated{checkpoint.suffix}")
    check_out_apart(out, {"--data": data})
    module = load_segmenter(checkpoint)
    _check_replaceable_checkpoint(out)
    pairs = [(p.name, p.image, p.mask) for p in find_pairs(data)]

    binary = module.task == "binary"

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for (_, _, mask_path), _, logits in predicted(module, pairs, predict_logits,
                                                       batch_size, what="calibrate"):
            mask = read_mask(mask_path) if binary else read_label(mask_path)
            if mask.shape != tuple(logits.shape[-2:]):
                raise input_error(mask_path, f"mask size {mask.shape} differs from image "
                                  f"size {tuple(logits.shape[-2:])}")
            yield logits[None].cpu(), torch.from_numpy(mask)[None]

    with naming_sources({f"batches[{i}]": f"{image} (mask {mask})"
                         for i, (_, image, mask) in enumerate(pairs)}):
        result = module.temperature.fit(batches(), cache_logits=True,
                                        ignore_index=None if binary else module.config.ignore_index)
    state, _ = read_checkpoint(checkpoint)
    for key, value in module.temperature.state_dict().items():
        state["state_dict"][f"temperature.{key}"] = value.cpu()
    write_checkpoint(state, out)
    return result, out


def _check_replaceable_checkpoint(out: Path) -> None:
    """Refuse an existing ``out`` that is not a densecal checkpoint (it may be the user's file).

    Raises:
        DensecalInputError: naming ``--out``.
    """
    if not out.exists():
        return
    if out.is_dir():
        raise input_error("--out", f"{out} is a folder; name the checkpoint file to write")
    try:
        state, hparams = read_checkpoint(out)
    except DensecalInputError:
        state, hparams = {}, {}
    if "state_dict" not in state or "config" not in hparams:
        raise input_error("--out", f"{out} exists and is not a densecal checkpoint; densecal "
                                   f"only replaces files it wrote, so choose a new file")
