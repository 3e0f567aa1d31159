"""Lightning module for binary or multi-class dense classification with any registered objective.

One module serves every method: the network and data path are shared and only the objective
differs, so methods are compared on equal terms. ``config.num_classes`` picks the task: 1 is a
binary map (one sigmoid channel), ``K >= 2`` a softmax over ``K`` channels; only
:meth:`SegmentationModule.task` and the objects built from it (output channels, validation
metric, post-hoc temperature) depend on it.

Batches are the dicts of :class:`densecal.data.FolderDataset`: ``image`` ``(N, 3, H, W)`` in
[0, 1], ``mask`` ``(N, 1, H, W)`` in [0, 1] (binary) or ``(N, H, W)`` int64 class indices
(multi-class, ``labels=True``), ``index`` ``(N,)`` the image's position in the training set
(ASLP's α key), and for ``vls`` training batches ``soft`` ``(N, K, H, W)``, the cached soft
labels, which replace ``mask`` as the training target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from densecal.data.transforms import normalize_images
from densecal.methods.config import TrainConfig
from densecal.methods.engine.optim import adam_schedule
from densecal.methods.engine.seeding import SEED_COINS, StepSeeded, derive_seed
from densecal.methods.segmentation.objectives import build_objective, is_multiclass
from densecal.metrics.calibration import PixelCalibration
from densecal.models.segmentation import create_model
from densecal.posthoc.temperature import TemperatureScaler

__all__ = ["BinarySegmentationModule", "SegmentationModule"]


class SegmentationModule(StepSeeded, L.LightningModule):
    """Train a dense classifier (sigmoid, or softmax over ``config.num_classes``) with any
    registered objective.

    Args:
        config: the run configuration (saved in the checkpoint's hyper-parameters).
        num_train_images: size of the training set (length of ASLP's α table).
        train_names: training image names in index order (for ``alpha.csv``).

    Logged per epoch: ``train_loss``, ``val_accuracy`` (pixel accuracy: at 0.5 with the hard
    target for binary, argmax for multi-class, ``ignore_index`` pixels left out), ``val_ece``
    (top-label), with ``config.aslp_val_rule == "strict"`` also ``val_accuracy_strict`` (the
    official ASLP rule, :meth:`_strict_update`), and for ASLP ``alpha_mean``/``alpha_max``; all
    global values under DDP. ASLP's ``A_val`` is ``val_accuracy`` or, under the strict rule,
    ``val_accuracy_strict``.

    ``config.normalize == "imagenet"`` normalises the images inside :meth:`forward`, so training,
    validation and prediction all see the same inputs.

    Randomness is keyed, not streamed (:mod:`densecal.methods.engine.seeding`), so that a resumed
    or a distributed run draws what a single uninterrupted run draws: ASLP's coin of image ``i`` in
    epoch ``e`` is ``1[u < alpha_i]`` with ``u`` from ``(seed, e, i)``, and torch's global RNG
    is reseeded before every training step. Under DDP, ASLP's α updates are all-gathered so
    every rank holds the same table, each image updated once per epoch (:meth:`_update_alpha`).
    """

    def __init__(self, config: dict[str, Any], num_train_images: int,
                 train_names: list[str] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig.from_dict(config)
        self.train_names = list(train_names or [])
        task = self.task
        self.net = create_model(self.config.model, in_channels=3,
                                out_channels=self.config.num_classes)
        objective = build_objective(self.config, num_train_images)
        self.loss = objective.loss
        self.perturbation = objective.perturbation
        # ASLP bookkeeping of the current epoch (not saved: checkpoints fall between epochs)
        self._coin_epoch = -1
        self._coin_uniforms = torch.empty(0)
        self._seen_epoch = -1
        self.register_buffer("_alpha_seen", torch.zeros(num_train_images if self.perturbation
                                                        is not None else 0, dtype=torch.bool),
                             persistent=False)
        if task == "binary":
            self.val_calibration = PixelCalibration(n_bins=10, input="logits")
        else:
            self.val_calibration = PixelCalibration(
                n_bins=10, input="logits", task="multiclass",
                num_classes=self.config.num_classes, ignore_index=self.config.ignore_index)
        self.val_strict = (PixelCalibration(n_bins=10, target_type="strict")
                           if self.config.aslp_val_rule == "strict" and task == "binary"
                           else None)
        # post-hoc temperature (T = 1 until ``densecal calibrate`` fits it); applied by
        # :meth:`calibrated_logits`, never during training
        self.temperature = TemperatureScaler(task=task)

    @property
    def task(self) -> str:
        """``"binary"`` (``num_classes == 1``) or ``"multiclass"``."""
        return "multiclass" if is_multiclass(self.config) else "binary"

    def forward(self, image: Tensor) -> Tensor:
        """Logits ``(N, K, H, W)`` (``K = num_classes``, 1 for binary) for images
        ``(N, 3, H, W)`` in [0, 1] (normalised here when ``config.normalize`` asks)."""
        return self.net(normalize_images(image, self.config.normalize))

    def calibrated_logits(self, logits: Tensor) -> Tensor:
        """``logits / T`` with the fitted post-hoc temperature (T = 1 when not calibrated)."""
        return self.temperature(logits)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``; weights saved before densecal had a post-hoc
        temperature load with T = 1."""
        weights = dict(state_dict)
        for key, value in self.temperature.state_dict().items():
            weights.setdefault(f"temperature.{key}", value)
        return super().load_state_dict(weights, strict=strict, assign=assign)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["image"])
        # ``soft``: a per-pixel target distribution (VLS's cached soft labels) replacing the mask
        target = batch["soft"] if "soft" in batch else batch["mask"]
        if self.perturbation is None:
            loss = self.loss(logits, target)
        else:
            loss = self.loss(logits, target, alpha=self._coins(batch["index"]))
            self._update_alpha(batch["index"], logits.detach(), target)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=target.shape[0], sync_dist=True)
        return loss

    def _coins(self, index: Tensor) -> Tensor:
        """ASLP's coins ``Z_i = 1[u_i < alpha_i]`` of the images ``index`` ``(B,)``, as 0/1
        float32 ``(B,)`` on the α table's device.

        ``u_i ~ U[0, 1)`` is drawn once per (seed, epoch, image) (``SEED_COINS``), not from a
        stream consumed batch by batch, so an image's coin does not depend on the batch it
        lands in, on the number of processes or on a resume. Handed to the loss as its ``alpha``
        the coins are its draw: the loss's own ``u < 1`` always holds and ``u < 0`` never does.
        """
        assert self.perturbation is not None
        alpha = self.perturbation(index)
        epoch = self.current_epoch
        if self._coin_epoch != epoch or self._coin_uniforms.device != alpha.device:
            gen = torch.Generator().manual_seed(derive_seed(self.config.seed, SEED_COINS, epoch))
            self._coin_uniforms = torch.rand(self.perturbation.num_images,
                                             generator=gen).to(alpha.device)
            self._coin_epoch = epoch
        u = self._coin_uniforms[index.to(device=alpha.device, dtype=torch.int64)]
        return (u < alpha).to(torch.float32)

    @torch.no_grad()
    def _update_alpha(self, index: Tensor, logits: Tensor, target: Tensor) -> None:
        """ASLP's α step for a training batch, identical on every DDP rank.

        Each rank computes the per-image statistics of its own images; ``(index, BCE_i, C_i)``
        are all-gathered (``LightningModule.all_gather``, nothing on one process) and every rank
        applies the step to all gathered images, so all ranks hold the same table. An image is
        updated at most once per epoch, at its first appearance: ``DistributedSampler`` pads the
        shards by repeating the first images of the epoch's order, and those repeats are skipped
        (repeats within one gathered batch share one averaged step,
        :meth:`~densecal.losses.aslp.AdaptivePerturbation.apply_update`).
        """
        ctrl = self.perturbation
        assert ctrl is not None
        epoch = self.current_epoch
        if epoch < ctrl.warmup_epochs:
            return
        bce, c = ctrl.compute_statistics(logits, target)
        index = index.to(device=bce.device, dtype=torch.int64)
        if self._trainer is not None and self.trainer.world_size > 1:
            index, bce, c = (self.all_gather(t).reshape(-1) for t in (index, bce, c))
        seen = self._alpha_seen
        if self._seen_epoch != epoch:
            seen.zero_()
            self._seen_epoch = epoch
        index = index.to(seen.device)
        fresh = ~seen[index]
        seen[index] = True
        ctrl.apply_update(index[fresh], bce[fresh.to(bce.device)], c[fresh.to(c.device)], epoch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self(batch["image"])
        self.val_calibration.update(logits, batch["mask"])
        if self.val_strict is not None:
            self._strict_update(logits, batch["original"])

    @torch.no_grad()
    def _strict_update(self, logits: Tensor, originals: list[Tensor]) -> None:
        """The official ASLP validation accuracy (``main_ASLP.py`` ``acc_val`` and ``ECE.py``
        ``Compute_ECE_Valid``): each binary logit map ``(1, S, S)`` upsampled bilinearly
        (``align_corners=False``) to its mask's original ``(H, W)``, the sigmoid written as the
        8-bit level ``round_half_even(255 q)`` (as OpenCV writes a float image), and scored with
        the ``strict`` target rule (predicted 1 at level >= 128; a pixel is correct only when its
        truth is exactly 0 or 1 and agrees)."""
        assert self.val_strict is not None
        for logit, mask in zip(logits, originals, strict=True):
            full = F.interpolate(logit[None].float(), size=tuple(mask.shape), mode="bilinear",
                                 align_corners=False)[0, 0]
            levels = torch.round(255.0 * torch.sigmoid(full)).clamp_(0.0, 255.0)
            self.val_strict.update((levels / 255.0)[None], mask.to(levels.device)[None])

    def on_validation_epoch_end(self) -> None:
        values = self.val_calibration.compute()
        self.val_calibration.reset()
        # the metric's states are summed over the ranks before compute(): every rank gets the
        # global values, so ASLP's A_val is the same everywhere (sync_dist averages equal values)
        accuracy = float(values["accuracy"])
        self.log("val_accuracy", accuracy, prog_bar=True, sync_dist=True)
        self.log("val_ece", float(values["ece"]), prog_bar=True, sync_dist=True)
        if self.val_strict is not None:
            accuracy = float(self.val_strict.compute()["accuracy"])
            self.val_strict.reset()
            self.log("val_accuracy_strict", accuracy, prog_bar=True, sync_dist=True)
        if self.perturbation is not None and not self.trainer.sanity_checking:
            self.perturbation.set_validation_accuracy(accuracy)
            self.log("alpha_mean", self.perturbation.alpha.mean(), prog_bar=True, sync_dist=True)
            self.log("alpha_max", self.perturbation.alpha.max(), sync_dist=True)

    def configure_optimizers(self) -> Any:
        return adam_schedule(self.net.parameters(), self.config)


BinarySegmentationModule = SegmentationModule
"""The name of :class:`SegmentationModule` from when it was binary-only (kept for imports)."""
