"""A plain single-label image classifier trained with cross-entropy on a classification folder.

The network is a :func:`densecal.models.classifiers.create_classifier` trunk (``config.model``
must be a classifier name, e.g. ``resnet-tiny``); images are resized to ``config.image_size``,
augmented with horizontal flips when ``config.augment``. Optimiser: Adam with densecal's step
decay (:func:`densecal.methods.engine.optim.adam_schedule`). The run folder follows
:mod:`densecal.methods.train`: ``RUN/config.json``, ``RUN/checkpoints/last.ckpt`` (atomic,
resumable), ``RUN/logs/version_K/metrics.csv`` (``train_loss``, ``val_loss``, ``val_accuracy``).
Training is resume-exact and DDP-sharded as the segmentation objectives'
(:func:`densecal.methods.engine.fit.fit_family_run`,
:class:`~densecal.methods.engine.seeding.StepSeeded`).

Family options in ``config.extra["classifier"]`` (``densecal train --set classifier.KEY=VALUE``,
see :class:`ClassifierOptions`): ``pool`` (``"avg"``, default, or ``"max"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from densecal.data.classification import (
    ClassificationDataset,
    ClassificationFolder,
    read_classification_folder,
)
from densecal.data.folder import split_indices
from densecal.data.transforms import image_to_tensor, resize
from densecal.errors import input_error
from densecal.methods.config import TrainConfig, check_run_options, family_options
from densecal.methods.engine.fit import fit_family_run
from densecal.methods.engine.optim import adam_schedule
from densecal.methods.engine.run_folder import resume_or_refuse
from densecal.methods.engine.seeding import StepSeeded
from densecal.methods.loading import load_module_checkpoint
from densecal.methods.registry import register_trainer
from densecal.models.classifiers import Classifier, classifier_names, create_classifier

__all__ = ["ClassifierModule", "ClassifierOptions", "images_to_batch", "load_classifier",
           "predict_classifier", "train_classifier"]


@dataclass(frozen=True)
class ClassifierOptions:
    """Options of the ``classifier`` family, stored in ``TrainConfig.extra["classifier"]``.

    Attributes:
        pool: global pooling of the trunk's features, ``"avg"`` (default) or ``"max"``
            (:class:`~densecal.models.classifiers.Classifier`).
    """

    pool: str = "avg"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClassifierOptions:
        """Options from a dict (e.g. ``config.extra.get("classifier")``), refusing unknown keys.

        Raises:
            DensecalInputError: not a dict, unknown keys or a bad value (named in the message).

        Example:
            >>> ClassifierOptions.from_dict({"pool": "max"})
            ClassifierOptions(pool='max')
        """
        options = cls(**family_options(data, "classifier", cls))
        if options.pool not in ("avg", "max"):
            raise input_error("classifier.pool", f"expected 'avg' or 'max', got {options.pool!r}")
        return options

    @classmethod
    def from_config(cls, config: TrainConfig) -> ClassifierOptions:
        """Options of ``config.extra["classifier"]`` (defaults when absent)."""
        return cls.from_dict(config.extra.get("classifier"))


class ClassifierModule(StepSeeded, L.LightningModule):
    """Cross-entropy training of a :class:`~densecal.models.classifiers.Classifier`.

    Args:
        config: a :class:`~densecal.methods.config.TrainConfig` as a dict (``to_dict``).
        classes: class names; ``len(classes)`` logits.

    Batches are :class:`~densecal.data.classification.ClassificationDataset` items of a
    single-label folder: ``(image (N, 3, S, S) in [0, 1], label (N,) int64, labels (N, C))``.

    Raises:
        DensecalInputError: bad options in ``config["extra"]["classifier"]``.
    """

    def __init__(self, config: dict[str, Any], classes: list[str]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig.from_dict(config)
        self.classes = list(classes)
        self.options = ClassifierOptions.from_config(self.config)
        self.net: Classifier = create_classifier(
            self.config.model, num_classes=len(self.classes), pool=self.options.pool)

    def forward(self, image: Tensor) -> Tensor:
        """Logits ``(N, C)`` of images ``(N, 3, S, S)``."""
        return self.net(image)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        image, label, _ = batch
        loss = F.cross_entropy(self(image), label)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(label),
                 sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        image, label, _ = batch
        logits = self(image)
        self.log("val_loss", F.cross_entropy(logits, label), batch_size=len(label),
                 sync_dist=True)
        self.log("val_accuracy", (logits.argmax(1) == label).float().mean(),
                 batch_size=len(label), sync_dist=True)

    def configure_optimizers(self) -> Any:
        return adam_schedule(self.parameters(), self.config)


def _check(config: TrainConfig) -> None:
    if config.model not in classifier_names():
        raise input_error("--model", f"{config.model!r} is not a classifier; choose one of "
                          f"{', '.join(classifier_names())}")
    check_run_options(config)
    ClassifierOptions.from_config(config)


def _read_single_label(root: str) -> ClassificationFolder:
    folder = read_classification_folder(root)
    if folder.multilabel:
        raise input_error(folder.root / "labels.csv", "is multi-label; the classifier needs a "
                                                      "single-label 'name,label' folder")
    return folder


def _splits(config: TrainConfig) -> tuple[ClassificationFolder, ClassificationFolder]:
    folder = _read_single_label(config.data)
    if config.val_data:
        val = _read_single_label(config.val_data)
        if val.classes != folder.classes:
            raise input_error(config.val_data, "its classes differ from the training data's")
        return folder, val
    if not 0.0 < config.val_fraction < 1.0:
        raise input_error("--val-fraction", f"must be in (0, 1), got {config.val_fraction}")
    train_idx, val_idx = split_indices(len(folder), config.val_fraction, config.seed)
    return folder.subset(train_idx), folder.subset(val_idx)


@register_trainer("classifier", reader="densecal overmap --classifier")
def train_classifier(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
                     progress: bool = True) -> Path:
    """Train a single-label classifier on ``config.data`` and return its last checkpoint.

    Args:
        config: run configuration; ``data`` (and optionally ``val_data``) are classification
            folders, ``model`` a classifier name. With ``resume=True`` the run folder's saved
            config is used, except for ``epochs``.
        run_dir: output folder (created).
        resume: continue from ``RUN/checkpoints/last.ckpt``.
        progress: show Lightning's progress bar.

    Returns:
        Path to ``RUN/checkpoints/last.ckpt``.

    Raises:
        DensecalInputError: bad data or options; ``run_dir`` already holds a run and ``resume``
            is false; ``resume`` without a checkpoint.
    """
    run_dir = Path(run_dir)
    config = resume_or_refuse(dataclasses.replace(config, method="classifier"), run_dir, resume)
    _check(config)
    train_folder, val_folder = _splits(config)
    train_set = ClassificationDataset(train_folder, config.image_size, augment=config.augment)
    val_set = ClassificationDataset(val_folder, config.image_size)
    classes = list(train_folder.classes)
    return fit_family_run(config, run_dir, lambda: ClassifierModule(config.to_dict(), classes),
                          train_set, val_set, resume=resume, progress=progress)


def load_classifier(checkpoint: str | Path, map_location: str | torch.device = "cpu"
                    ) -> ClassifierModule:
    """Load a checkpoint written by :func:`train_classifier`, in eval mode.

    Raises:
        DensecalInputError: missing file, not a checkpoint, or not a classifier checkpoint.
    """
    module = load_module_checkpoint(checkpoint, ClassifierModule,
                                    family=lambda m: m == "classifier",
                                    what="classifier checkpoint", required=("config", "classes"))
    return module.to(map_location)


def images_to_batch(images: Sequence[np.ndarray], image_size: int) -> Tensor:
    """Stack RGB uint8 images ``(H, W, 3)`` into ``(N, 3, S, S)`` float32 in [0, 1] (resized)."""
    return torch.stack([resize(image_to_tensor(im), image_size) for im in images])


@torch.no_grad()
def predict_classifier(module: ClassifierModule, images: Sequence[np.ndarray],
                       batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``softmax(logits)`` of RGB images.

    Args:
        module: a loaded module (:func:`load_classifier`).
        images: ``(H, W, 3)`` uint8 images, sizes may differ (each resized to the training
            ``image_size``).
        batch_size: images per forward pass.

    Returns:
        ``(N, C)`` float64 probabilities, rows summing to 1.
    """
    device = next(module.parameters()).device
    out = [torch.softmax(module(images_to_batch(images[i:i + batch_size],
                                                module.config.image_size).to(device)).double(), 1)
           for i in range(0, len(images), batch_size)]
    if not out:
        return np.zeros((0, len(module.classes)))
    return torch.cat(out).cpu().numpy()
