"""Uncertainty distillation for multi-label classification (Song et al., ACM MM 2021).

docs/methods.md section 5; official code github.com/lsongx/ud. Three training methods share one
network (:class:`UDNet`: a :class:`~densecal.models.classifiers.Classifier` with global **max**
pooling and a bias-free head ``o = W·f``, plus the calibration branch
``s = Linear(512)–BN–ReLU–Linear(C)``):

- ``ud-teacher``: the large backbone trained with :func:`~densecal.losses.distillation.
  teacher_loss` (BCE on ``o`` + PAL-N on ``s``).
- ``ud-student``: a smaller backbone trained with ``L_PDD + L_UAD`` (+ ``gt_weight`` · BCE on
  ``o``) from a frozen teacher checkpoint (``config.extra["ud"]["teacher"]``).
- ``ud-gt``: the student backbone trained on the ground truth only, with the teacher's recipe
  (densecal's baseline: the same network and loss as the teacher, no distillation).

Options (``TrainConfig.extra["ud"]``, ``densecal train --set ud.KEY=VALUE``, see
:class:`UDOptions`): ``teacher``, ``backbone``, ``temperature`` (3), ``uad_weight`` (0.1),
``gt_weight`` (0), ``hidden`` (512), ``distill`` (``ud``; controls ``pdd``, ``kd``),
``scaling`` (``official``: PDD summed over the batch as lsongx/ud; ``mean``: densecal 0.1).
``config.model`` is used as the backbone when it names a classifier; otherwise ``resnet-small``
for the teacher and ``resnet-tiny`` for students. Optimiser: Adam with ``config.lr`` (the paper's
SGD schedule is for ImageNet-pretrained ResNet-101 teachers; densecal trains from scratch).

Run folder: ``RUN/config.json``, ``RUN/checkpoints/last.ckpt``, ``RUN/logs/version_K``.
Training is resume-exact and DDP-sharded as the segmentation objectives'
(:func:`densecal.methods.engine.fit.fit_family_run`,
:class:`~densecal.methods.engine.seeding.StepSeeded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from densecal._checks import check_int, check_number, parse_choice
from densecal.data.classification import ClassificationDataset, read_classification_folder
from densecal.data.folder import split_indices
from densecal.errors import input_error
from densecal.losses.distillation import (
    kd_loss,
    label_uncertainty,
    pdd_loss,
    teacher_loss,
    uad_loss,
    uncertainty_attention,
)
from densecal.methods.config import TrainConfig, check_run_options, family_options
from densecal.methods.engine.fit import fit_family_run
from densecal.methods.engine.run_folder import resume_or_refuse
from densecal.methods.engine.seeding import StepSeeded
from densecal.methods.loading import load_module_checkpoint
from densecal.methods.registry import register_trainer
from densecal.metrics.calibration import PixelCalibration
from densecal.metrics.multilabel import MultilabelMetrics
from densecal.models.classifiers import classifier_names, create_classifier
from densecal.types import StrEnum

__all__ = ["UD_METHODS", "Distillation", "LossScaling", "UDModule", "UDNet", "UDOptions",
           "UDOutput", "evaluate_multilabel", "load_ud", "train_ud"]

UD_METHODS: tuple[str, ...] = ("ud-teacher", "ud-student", "ud-gt")


class Distillation(StrEnum):
    """What a ``ud-student`` distils (``ud.distill``)."""

    UD = "ud"  # PDD + UAD (the paper)
    PDD = "pdd"  # PDD alone
    KD = "kd"  # the classification head's predictions alone


class LossScaling(StrEnum):
    """How the student's terms are reduced over the batch (``ud.scaling``)."""

    OFFICIAL = "official"  # PDD / KD summed over the batch, UAD a mean (lsongx/ud)
    MEAN = "mean"  # every term a mean over images (densecal 0.1)


class UDOutput(NamedTuple):
    """Outputs of :class:`UDNet`: ``logits`` ``o`` ``(N, C)``, ``scores`` ``s`` ``(N, C)``,
    ``features`` ``F`` ``(N, K, h, w)``."""

    logits: Tensor
    scores: Tensor
    features: Tensor


class UDNet(nn.Module):
    """Backbone with global max pooling, bias-free classification head and calibration branch.

    Args:
        backbone: classifier name (:func:`~densecal.models.classifiers.classifier_names`).
        num_classes: C.
        hidden: width of the calibration branch (512 as the paper).
        in_channels: image channels.

    Raises:
        DensecalInputError: unknown backbone or ``num_classes < 1``.
    """

    def __init__(self, backbone: str, num_classes: int, hidden: int = 512,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.classifier = create_classifier(backbone, num_classes=num_classes,
                                            in_channels=in_channels, pool="max", bias=False)
        k = self.classifier.feature_channels
        self.calibration = nn.Sequential(nn.Linear(k, hidden), nn.BatchNorm1d(hidden),
                                         nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def heads(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(o, s)`` ``(N, C)`` each from features ``(N, K, h, w)`` (global max pooling)."""
        pooled = self.classifier.pooled(features)
        return self.classifier.head(pooled), self.calibration(pooled)

    def forward(self, image: Tensor) -> UDOutput:
        """:class:`UDOutput` of an image batch ``(N, C_in, H, W)``."""
        features = self.classifier.features(image)
        return UDOutput(*self.heads(features), features)


@dataclass(frozen=True)
class UDOptions:
    """Uncertainty-distillation options, stored in ``TrainConfig.extra["ud"]``.

    Attributes:
        teacher: teacher checkpoint (``ud-student`` only).
        backbone: classifier name; ``None``: ``config.model`` if it names a classifier, else
            ``resnet-small`` (teacher) / ``resnet-tiny`` (students).
        temperature: distillation temperature T (3).
        uad_weight: weight of the attention loss (0.1).
        gt_weight: weight of an extra ground-truth BCE term for the student (0: off).
        hidden: calibration-branch width (512).
        distill: what the student distils (``ud-student``): ``ud`` (PDD + UAD, the paper),
            ``pdd`` (PDD alone, UAD off) or ``kd`` (plain Bernoulli distillation of the
            classification head, :func:`~densecal.losses.distillation.kd_loss`: no
            uncertainty at all); the last two are controls.
        scaling: ``official`` (lsongx/ud: the PDD / KD terms summed over the batch, the UAD
            term a mean, so at batch N UAD weighs N times less than in ``mean``) or ``mean``
            (densecal 0.1: every term a mean over images).
    """

    teacher: str | None = None
    backbone: str | None = None
    temperature: float = 3.0
    uad_weight: float = 0.1
    gt_weight: float = 0.0
    hidden: int = 512
    distill: str = "ud"
    scaling: str = "official"

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> UDOptions:
        """Options from a dict (e.g. ``config.extra.get("ud")``), refusing unknown keys.

        Raises:
            DensecalInputError: not a dict, unknown keys or a bad value (named in the message).

        Example:
            >>> UDOptions.from_dict({"temperature": 2}).temperature
            2
        """
        options = cls(**family_options(data, "ud", cls))
        for name, rule in (("temperature", "> 0"), ("uad_weight", ">= 0"), ("gt_weight", ">= 0")):
            check_number(f"ud.{name}", getattr(options, name), 0.0, low_open=rule == "> 0",
                         problem=f"must be a number {rule}")
        check_int("ud.hidden", options.hidden, low=1)
        parse_choice(Distillation, options.distill, "ud.distill")
        parse_choice(LossScaling, options.scaling, "ud.scaling")
        for name in ("teacher", "backbone"):
            if getattr(options, name) is not None and not isinstance(getattr(options, name), str):
                raise input_error(f"ud.{name}", f"must be text, got {getattr(options, name)!r}")
        return options

    @classmethod
    def from_config(cls, config: TrainConfig) -> UDOptions:
        """Options of ``config.extra["ud"]`` (defaults when absent)."""
        return cls.from_dict(config.extra.get("ud"))

    def backbone_for(self, config: TrainConfig) -> str:
        """The backbone name this run uses."""
        if self.backbone:
            return self.backbone
        if config.model in classifier_names():
            return config.model
        return "resnet-small" if config.method == "ud-teacher" else "resnet-tiny"


class UDModule(StepSeeded, L.LightningModule):
    """Lightning module of one uncertainty-distillation method.

    Args:
        config: ``TrainConfig.to_dict()`` of the run (method ``ud-teacher``, ``ud-student``
            or ``ud-gt``).
        classes: class names, in target order.

    Raises:
        DensecalInputError: unknown method or options.
    """

    def __init__(self, config: dict[str, Any], classes: list[str]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = TrainConfig.from_dict(config)
        if self.config.method not in UD_METHODS:
            raise input_error("--method", f"expected one of {', '.join(UD_METHODS)}, got "
                                          f"{self.config.method!r}")
        self.options = UDOptions.from_config(self.config)
        self.classes = list(classes)
        self.net = UDNet(self.options.backbone_for(self.config), len(classes),
                         self.options.hidden)
        self._teacher: list[UDNet] = []  # kept out of the state dict (and the checkpoint)
        self.val_metrics = MultilabelMetrics(len(classes))

    def forward(self, image: Tensor) -> UDOutput:
        """Network outputs; probabilities are ``sigmoid(logits)``."""
        return self.net(image)

    @property
    def teacher(self) -> UDNet:
        """The frozen teacher (``ud-student``), loaded on first use."""
        if not self._teacher:
            if not self.options.teacher:
                raise input_error("ud.teacher", "ud-student needs a teacher checkpoint")
            teacher = load_ud(self.options.teacher).net
            if teacher.classifier.num_classes != len(self.classes):
                raise input_error(self.options.teacher, "teacher has a different number of "
                                                        "classes than the data")
            teacher.eval().requires_grad_(False)
            self._teacher.append(teacher)
        return self._teacher[0].to(self.device)

    def _distillation(self, image: Tensor, out: UDOutput) -> dict[str, Tensor]:
        """The student's distillation terms for ``options.distill``, scaled as
        ``options.scaling`` (``official``: prediction terms summed over the batch)."""
        teacher, options = self.teacher.eval(), self.options
        attention = options.distill == Distillation.UD
        with torch.enable_grad():
            with torch.no_grad():
                f_t = teacher.classifier.features(image)
            f_t.requires_grad_(attention)
            o_t, s_t = teacher.heads(f_t)
        batch = float(len(image)) if options.scaling == LossScaling.OFFICIAL else 1.0
        if options.distill == Distillation.KD:
            return {"kd": batch * kd_loss(out.logits, o_t.detach(), options.temperature)}
        parts = {"pdd": batch * pdd_loss(out.logits, out.scores, o_t.detach(), s_t.detach(),
                                         options.temperature)}
        if attention:
            with torch.enable_grad():
                a_t = uncertainty_attention(f_t, label_uncertainty(o_t, s_t)).detach()
            a_s = uncertainty_attention(out.features, label_uncertainty(out.logits, out.scores))
            parts["uad"] = uad_loss(a_s, a_t, options.uad_weight)
        return parts

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        image, target, _ = batch
        out = self.net(image)
        if self.config.method == "ud-student":
            parts = self._distillation(image, out)
            if self.options.gt_weight > 0:
                parts["bce"] = self.options.gt_weight * \
                    F.binary_cross_entropy_with_logits(out.logits, target)
        else:
            parts = {"teacher_loss": teacher_loss(out.logits, out.scores, target)}
        loss = torch.stack(list(parts.values())).sum()
        for name, value in parts.items():
            self.log(f"train_{name}", value.detach(), on_step=False, on_epoch=True,
                     batch_size=len(image), sync_dist=True)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(image), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        image, _, labels = batch
        self.val_metrics.update(torch.sigmoid(self.net(image).logits), labels)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        for key in ("map", "cf1", "of1"):
            value = values[key]
            if not torch.isnan(value):
                self.log(f"val_{key}", value.float(), prog_bar=key == "map")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.config.lr)


def load_ud(checkpoint: str | Path, map_location: str = "cpu") -> UDModule:
    """Load a :class:`UDModule` from a ``train_ud`` checkpoint (evaluation mode).

    Raises:
        DensecalInputError: missing file or not an uncertainty-distillation checkpoint.
    """
    module = load_module_checkpoint(checkpoint, UDModule, family=lambda m: m.startswith("ud-"),
                                    what="uncertainty-distillation checkpoint",
                                    required=("config", "classes"))
    return module.to(map_location)


def _datasets(config: TrainConfig) -> tuple[ClassificationDataset, ClassificationDataset]:
    folder = read_classification_folder(config.data)
    if config.val_data:
        val = read_classification_folder(config.val_data)
        if val.classes != folder.classes:
            raise input_error(config.val_data, "its classes differ from the training data's")
    else:
        if not 0.0 < config.val_fraction < 1.0:
            raise input_error("--val-fraction", f"must be in (0, 1), got {config.val_fraction}")
        if len(folder) < 2:
            raise input_error(config.data, f"{len(folder)} images are too few to hold out a "
                                           "validation split")
        train_idx, val_idx = split_indices(len(folder), config.val_fraction, config.seed)
        folder, val = folder.subset(train_idx), folder.subset(val_idx)
    return (ClassificationDataset(folder, config.image_size, augment=config.augment),
            ClassificationDataset(val, config.image_size))


def _check(config: TrainConfig) -> None:
    if config.method not in UD_METHODS:
        raise input_error("--method", f"expected one of {', '.join(UD_METHODS)}, got "
                                      f"{config.method!r}")
    check_run_options(config)
    options = UDOptions.from_config(config)
    if options.backbone_for(config) not in classifier_names():
        raise input_error("ud.backbone", f"unknown classifier {options.backbone!r}")
    if config.method == "ud-student":
        if not options.teacher:
            raise input_error("ud.teacher", "ud-student needs a teacher checkpoint")
        if not Path(options.teacher).is_file():
            raise input_error(options.teacher, "no such teacher checkpoint")


@register_trainer("ud-teacher", "ud-student", "ud-gt",
                  reader="densecal.methods.ud.load_ud (benchmarks/ud_multilabel.py)")
def train_ud(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
             progress: bool = True) -> Path:
    """Train ``ud-teacher``, ``ud-student`` or ``ud-gt`` on a classification folder.

    Args:
        config: run configuration (``data``: a classification folder; options in
            ``extra["ud"]``, see :class:`UDOptions`). With ``resume=True`` the run's saved
            ``config.json`` is used, except for ``epochs``.
        run_dir: output folder.
        resume: continue from ``RUN/checkpoints/last.ckpt``.
        progress: show Lightning's progress bar.

    Returns:
        Path of ``RUN/checkpoints/last.ckpt``.

    Raises:
        DensecalInputError: bad data or options, a run already in ``run_dir`` without
            ``resume``, ``resume`` without a checkpoint, a missing teacher checkpoint.
    """
    run_dir = Path(run_dir)
    config = resume_or_refuse(config, run_dir, resume)
    _check(config)
    train_set, val_set = _datasets(config)

    def make_module() -> UDModule:
        module = UDModule(config.to_dict(), list(train_set.classes))
        if config.method == "ud-student":
            _ = module.teacher  # fail early on a bad teacher
        return module

    # the calibration branch's BatchNorm1d cannot train on a last batch of one image
    return fit_family_run(config, run_dir, make_module, train_set, val_set, resume=resume,
                          progress=progress, drop_single=True)


@torch.no_grad()
def evaluate_multilabel(checkpoint: str | Path, data: str | Path, *, image_size: int | None = None,
                        batch_size: int = 32, n_bins: int = 10,
                        device: str = "cpu") -> dict[str, Any]:
    """Accuracy and calibration of a ``train_ud`` checkpoint on a classification folder.

    Probabilities are ``sigmoid(o)`` of the classification head (the only head used at test
    time). Accuracy: :func:`densecal.metrics.functional.multilabel_metrics` (difficult ignored).
    Calibration: :class:`~densecal.metrics.PixelCalibration` with ``task="multilabel"`` on the
    ``(N, C)`` probabilities viewed as ``(N, C, 1, 1)`` maps, difficult entries ignored
    (``ignore_index=2``), ``n_bins`` equal-width bins; ``classwise_ece`` is the mean over classes
    of each class's ECE of p_c vs the frequency of y_c = 1, ``ece`` the top-label ECE of the
    binary decisions max(p, 1 − p).

    Args:
        checkpoint: a ``last.ckpt`` written by :func:`train_ud`.
        data: a classification folder with the checkpoint's classes.
        image_size: resize side; ``None``: the run's ``image_size``.
        batch_size: images per forward pass.
        n_bins: calibration bins (10).
        device: torch device.

    Returns:
        ``{"n_images", "map", "map_hard", "cp", "cr", "cf1", "op", "or", "of1", "cp_top3", ...,
        "ap": [C], "ece", "classwise_ece", "marginal_ece", "brier", "nll", "ece_class": [C],
        "classes": [C]}``; plain floats (fractions, NaN where undefined).

    Raises:
        DensecalInputError: bad checkpoint or data, or classes that differ from the run's.
    """
    module = load_ud(checkpoint, map_location=device)
    dataset = ClassificationDataset(data, image_size or module.config.image_size)
    if list(dataset.classes) != module.classes:
        raise input_error(data, f"classes {list(dataset.classes)} differ from the "
                                f"checkpoint's {module.classes}")
    c = len(module.classes)
    metrics = MultilabelMetrics(c)
    calibration = PixelCalibration(n_bins, task="multilabel", num_classes=c, ignore_index=2)
    for image, _, labels in DataLoader(dataset, batch_size=batch_size):
        probs = torch.sigmoid(module(image.to(device)).logits).cpu()
        metrics.update(probs, labels)
        calibration.update(probs[:, :, None, None].double(),
                           labels[:, :, None, None].double())
    out: dict[str, Any] = {"n_images": len(dataset), "classes": module.classes}
    values = {**metrics.compute(), **calibration.compute()}
    for key, value in values.items():
        out[key] = value.tolist() if value.dim() else float(value)
    return out
