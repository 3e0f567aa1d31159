"""The resolved configuration of a training run, saved as ``RUN/config.json``.

A run folder holds everything needed to resume or reproduce it: ``config.json`` (this dataclass),
``checkpoints/last.ckpt`` (weights, optimiser and, for ASLP, the per-image α table) and, at the
end, ``alpha.csv`` for ASLP. A ``vls`` run also holds ``vls/stage1/`` (the conditional VAE's
checkpoint and log) and ``vls/soft_labels/`` (the cached soft labels and their manifest).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densecal._checks import check_int, check_number, is_int, parse_choice
from densecal.atomic import atomic_write_text
from densecal.errors import input_error
from densecal.types import StrEnum

__all__ = [
    "CONFIG_SCHEMA",
    "OFFICIAL_ASLP_RECIPE",
    "LrDecayRule",
    "Normalization",
    "Recipe",
    "TrainConfig",
    "VLSVariant",
    "ValidationRule",
    "check_distributed",
    "check_run_options",
    "family_options",
    "load_config",
    "lr_factor",
    "parse_devices",
    "save_config",
]

CONFIG_SCHEMA = "densecal.train-config/1"


@dataclass
class TrainConfig:
    """Everything that defines a dense-classification training run (binary or multi-class).

    Attributes:
        method: training objective, one of ``bce``, ``ce``, ``ls``, ``slp``, ``aslp``,
            ``focal``, ``ecp``, ``mbls``, ``svls``, ``vls`` (``bce``, ``slp``, ``aslp`` are
            binary-only, ``vls`` multi-class only; ``ce`` is an alias of ``bce`` when
            ``num_classes == 1``).
        num_classes: 1 for a binary map (one sigmoid channel, masks in [0, 1]); ``K >= 2`` for a
            softmax over ``K`` channels trained on class-index label maps (values ``0..K-1``).
        ignore_index: multi-class label value left out of the loss and the metrics (e.g. 255);
            ``None`` when every pixel is labelled. Multi-class only.
        data: folder dataset of training image/mask pairs.
        val_data: optional separate validation folder; otherwise ``val_fraction`` of ``data`` is
            held out (seeded). ASLP needs the validation pixel accuracy every epoch.
        val_fraction: fraction of ``data`` held out for validation when ``val_data`` is unset.
        model: network name (see ``densecal.models.model_names()``).
        epochs: training epochs.
        batch_size: images per step.
        image_size: images and masks are resized to ``image_size x image_size`` for training.
        lr: Adam learning rate.
        lr_decay: learning-rate decay factor ``d`` (1.0 disables decay; the official ASLP recipe
            uses 0.95 with ``lr_decay_every`` 10 and the ``compound`` rule).
        lr_decay_every: the ``k`` of :attr:`lr_decay_rule`.
        lr_decay_rule: ``step``: the learning rate of (0-based) epoch ``e`` is
            ``lr * d ** (e // k)``; ``compound``: the official ASLP code's ``adjust_lr``, which
            multiplies the learning rate by ``d ** (j // k)`` after every (1-based) epoch ``j``,
            so epoch ``e`` runs at ``lr * d ** sum(j // k for j in 1..e)`` (0.95 in epoch 11,
            0.599 in 20, 0.215 in 30 of the official run; ``step`` gives 0.9025 in 30).
        seed: global seed (weights, sampling order, augmentation, perturbation coins).
        augment: random flips/crops/rotations as the ASLP recipe.
        normalize: ``none`` (images in [0, 1] go to the network) or ``imagenet`` (the official
            ASLP recipe: each channel minus ImageNet's mean, divided by its standard deviation;
            applied inside the model, so prediction does the same). Segmentation methods.
        num_workers: DataLoader worker processes.
        deterministic: ask PyTorch for deterministic kernels (slower on GPU).
        eps: label-smoothing factor ε for ``ls`` (binary target (1 − ε)·y + ε/2).
        alpha: fixed perturbation probability α for ``slp``.
        technique: label-perturbation technique for ``slp`` and ``aslp`` (``hard_inversion`` β=2,
            ``soft_inversion`` β=1.5, ``moderation`` β=1, ``moderation_noise``).
        beta: explicit β overriding ``technique`` (paper convention unless
            ``beta_convention="code"``).
        beta_convention: ``paper`` (β ∈ [0, 2]) or ``code`` (the official ASLP code's b = β/2).
        aslp_lr: ASLP's α step size η (docs/methods.md section 1.2, default 0.002).
        aslp_penalty: ASLP's penalty weight λ (default 2000).
        aslp_warmup: epochs before α starts to adapt (default 5).
        aslp_objective: ``calibration`` (ASLP_MC, the official code) or ``conservative``.
        aslp_val_rule: how ASLP's validation accuracy ``A_val`` is measured: ``binarised``
            (densecal's default: at the training resolution, ground truth ``y >= 0.5``) or
            ``strict`` (the official code: each map upsampled to its image's original size,
            written as 8-bit levels with round-half-even, predicted 1 at level >= 128, and a
            pixel counts as correct only when its ground truth is exactly 0 or 1 and matches;
            soft ground-truth pixels are always wrong).
        recipe: ``densecal`` or ``official`` (the options were set by ``--recipe official``,
            :data:`OFFICIAL_ASLP_RECIPE`); recorded for the reader, it changes nothing itself.
        gamma: focal-loss γ (``focal``).
        beta_h: entropy-penalty weight β_H (``ecp``).
        margin: MbLS margin m on logit distances (``mbls``).
        mbls_lambda: MbLS penalty weight λ (``mbls``).
        svls_sigma: SVLS Gaussian σ (``svls``).
        vls_samples: CALSeg VLS posterior samples ``m`` per training image (``vls``; densecal's
            default 8, the paper gives none).
        vls_tau: VLS softmax temperature τ (default 2, densecal's choice).
        vls_mix: VLS weight ``a`` of the sampled distribution in ``(1 − a)·onehot + a·y_s``
            (default 0.3, densecal's choice).
        vls_latent: VLS latent size (3, as the official code).
        vls_stage1_epochs: VLS stage-1 (conditional VAE) epochs; ``None`` means ``epochs`` and
            is resolved to that number when a run starts (so ``--resume`` with more epochs
            extends stage 2 only).
        vls_stage1: an existing VLS stage-1 checkpoint to reuse instead of training stage 1.
        vls_stage1_lr: Adam learning rate of VLS stage 1, constant (default 1e-4 as the official
            CALSeg code; stage 1 does not share ``lr`` or its decay with stage 2).
        vls_variant: ``paper`` (the latent joins the U-Net's features at the heads, as the paper
            and the official code) or ``bottleneck`` (densecal's non-paper variant: an
            encoder-decoder without skip connections with the latent at the bottleneck, so
            every segmentation passes through it; see :mod:`densecal.methods.vls.nets`).
        vls_kl_warmup: stage-1 epochs over which the KL weight rises linearly from ``1/W`` to 1
            (KL annealing; 0 = weight 1 throughout, as the paper).
        vls_kl_weight: stage-1 KL weight ``beta > 0`` (1 as the paper). ``1 / (S * S)`` for
            ``S``-pixel images weighs the per-image KL against a CE *summed* over pixels, the
            ELBO of a per-pixel likelihood (non-paper; it gives the latent a reason to live).
        vls_folds: cross-fitting folds (non-paper option): with ``F >= 2`` the soft labels of
            each of ``F`` contiguous blocks of the training set come from a conditional VAE
            trained on the other blocks, so no soft label is written by a network that saw
            its image; 1 (default) trains one network on everything, as the paper.
        accelerator: Lightning accelerator (``auto`` uses a GPU when present).
        devices: Lightning devices per node: ``auto``, a count ``N >= 1``, ``-1`` (all) or a
            comma-separated list of device ids (``0,2``). ``batch_size`` is per device: one
            optimiser step sees ``batch_size x devices x num_nodes`` images.
        num_nodes: machines taking part in distributed training (``>= 1``).
        strategy: Lightning strategy (``auto``, ``ddp``, ``ddp_spawn``, ...; any name of
            ``lightning.pytorch.strategies.StrategyRegistry``).
    """

    method: str = "bce"
    num_classes: int = 1
    ignore_index: int | None = None
    data: str = ""
    val_data: str | None = None
    val_fraction: float = 0.2
    model: str = "unet-small"
    epochs: int = 30
    batch_size: int = 16
    image_size: int = 96
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_decay_every: int = 10
    lr_decay_rule: str = "step"
    seed: int = 0
    augment: bool = True
    normalize: str = "none"
    num_workers: int = 0
    deterministic: bool = False
    eps: float = 0.1
    alpha: float = 0.1
    technique: str = "hard_inversion"
    beta: float | None = None
    beta_convention: str = "paper"
    aslp_lr: float = 0.002
    aslp_penalty: float = 2000.0
    aslp_warmup: int = 5
    aslp_objective: str = "calibration"
    aslp_val_rule: str = "binarised"
    recipe: str = "densecal"
    gamma: float = 3.0
    beta_h: float = 0.1
    margin: float = 10.0
    mbls_lambda: float = 0.1
    svls_sigma: float = 1.0
    vls_samples: int = 8
    vls_tau: float = 2.0
    vls_mix: float = 0.3
    vls_latent: int = 3
    vls_stage1_epochs: int | None = None
    vls_stage1: str | None = None
    vls_stage1_lr: float = 1e-4
    vls_variant: str = "paper"
    vls_kl_warmup: int = 0
    vls_folds: int = 1
    vls_kl_weight: float = 1.0
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (with the schema tag)."""
        return {"schema": CONFIG_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def unknown_keys(cls, data: dict[str, Any]) -> list[str]:
        """The keys of ``data`` (a saved configuration) that are not options, sorted."""
        return sorted(set(data) - {f.name for f in dataclasses.fields(cls)} - {"schema"})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config from a dict, refusing unknown keys.

        Raises:
            DensecalInputError: unknown keys or a wrong schema tag (named in the message).
        """
        data = dict(data)
        schema = data.pop("schema", CONFIG_SCHEMA)
        if schema != CONFIG_SCHEMA:
            raise input_error(source, f"schema {schema!r} is not {CONFIG_SCHEMA!r}")
        unknown = cls.unknown_keys(data)
        if unknown:
            raise input_error(source, f"unknown keys {', '.join(unknown)}")
        return cls(**data)


#: The official ASLP training recipe (Liu et al., ICCV 2023; github.com/Carlisle-Liu/ASLP,
#: ``main_ASLP.py`` argument defaults, ``utils.adjust_lr``, ``data.py`` transforms), as
#: ``TrainConfig`` values; ``densecal train --recipe official`` starts from these and options
#: typed on the command line override them. Not reproducible here: the network (a ResNet-50
#: with ImageNet weights in the official code; choose ``--model``) and the data (DUTS-TR).
OFFICIAL_ASLP_RECIPE: dict[str, Any] = {
    "method": "aslp",
    "epochs": 30,  # --epoch 30
    "lr": 2.5e-5,  # --lr_gen, Adam with torch's default betas
    "batch_size": 10,  # --batchsize
    "image_size": 384,  # --trainsize / --testsize
    "lr_decay": 0.95,  # --decay_rate
    "lr_decay_every": 10,  # --decay_epoch
    "lr_decay_rule": "compound",  # adjust_lr after every epoch: lr *= 0.95 ** (epoch // 10)
    "beta": 2.0,  # --beta (the code's b: targets (1 - 2b) y + b, i.e. -1 and 2)
    "beta_convention": "code",  # paper beta = 2 b = 4; alpha clipped to 1 / (2 b) - 0.01
    "technique": "hard_inversion",
    "aslp_lr": 0.002,  # --eta
    "aslp_penalty": 2000.0,  # --lbd
    "aslp_warmup": 5,  # alpha moves from epoch 6 on ("if epoch > 5", epochs counted from 1)
    "aslp_objective": "calibration",  # train_ASLP_MC
    "aslp_val_rule": "strict",  # acc_val: 8-bit maps at the original size, ECE.py's accuracy
    "augment": True,  # random flip, border crop (30 px), rotation (p 0.2, +-15 degrees)
    "normalize": "imagenet",  # transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    "recipe": "official",
}


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The learning-rate factor of 0-based ``epoch`` under ``config``'s decay rule.

    Example:
        >>> c = TrainConfig(lr_decay=0.95, lr_decay_rule="compound")
        >>> round(lr_factor(c, 10), 4), round(lr_factor(c, 19), 4), round(lr_factor(c, 29), 4)
        (0.95, 0.5987, 0.2146)
    """
    decay, every = config.lr_decay, config.lr_decay_every
    if config.lr_decay_rule == "compound":
        return float(decay ** sum(j // every for j in range(1, epoch + 1)))
    return float(decay ** (epoch // every))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as pretty JSON, atomically."""
    atomic_write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")


def load_config(path: str | Path) -> TrainConfig:
    """Read a ``config.json`` written by :func:`save_config`.

    Raises:
        DensecalInputError: the file is missing, is not JSON, or has unknown keys.
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise input_error(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise input_error(path, "expected a JSON object")
    return TrainConfig.from_dict(data, source=str(path))


def family_options(data: Any, family: str, options_class: type) -> dict[str, Any]:
    """A method family's option table (``TrainConfig.extra[family]``) checked against the
    fields of its options dataclass: ``None`` is an empty table.

    Args:
        data: the table, usually ``config.extra.get(family)``.
        family: its name in messages (``car``, ``ud``, ``classifier``).
        options_class: the dataclass whose fields are the known keys.

    Returns:
        A copy of the table, ready for ``options_class(**table)``.

    Raises:
        DensecalInputError: not a table, or unknown keys (listed with the known ones).
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise input_error(f"{family} options", f"expected KEY: VALUE pairs, got {data!r}")
    known = {f.name for f in dataclasses.fields(options_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise input_error(f"{family} options", f"unknown keys {', '.join(unknown)} "
                                               f"(known: {', '.join(sorted(known))})")
    return dict(data)


def parse_devices(devices: str | int) -> str | int | list[int]:
    """``TrainConfig.devices`` as Lightning's ``Trainer(devices=...)`` takes it.

    Args:
        devices: ``"auto"``, a count (``"2"`` or ``2``, ``>= 1``), ``"-1"`` (every device) or a
            comma-separated list of distinct device ids ``>= 0`` (``"0,2"``).

    Returns:
        ``"auto"``, an int count (``-1`` included) or a list of ids.

    Raises:
        DensecalInputError: anything else (named ``--devices``).

    Example:
        >>> parse_devices("2"), parse_devices("auto"), parse_devices("0,3")
        (2, 'auto', [0, 3])
    """
    problem = (f"expected auto, a device count >= 1, -1 (all) or a list of device ids such as "
               f"0,1; got {devices!r}")
    if isinstance(devices, bool):
        raise input_error("--devices", problem)
    text = str(devices).strip()
    if text == "auto":
        return text
    try:
        if "," in text:
            ids = [int(part) for part in text.split(",") if part.strip()]
            if ids and min(ids) >= 0 and len(set(ids)) == len(ids):
                return ids
        else:
            count = int(text)
            if count >= 1 or count == -1:
                return count
    except ValueError:
        pass
    raise input_error("--devices", problem)


def check_distributed(config: TrainConfig) -> None:
    """Check the hardware options of ``config`` (``devices``, ``num_nodes``, ``strategy``,
    ``accelerator``) before Lightning sees them.

    Raises:
        DensecalInputError: a bad ``devices`` value, ``num_nodes`` not a positive integer, or an
            ``accelerator`` / ``strategy`` name Lightning does not know (the message lists the
            known names).
    """
    parse_devices(config.devices)
    check_int("--num-nodes", config.num_nodes, low=1)
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    for option, value, known in (
            ("--accelerator", config.accelerator,
             {"gpu", *AcceleratorRegistry.available_accelerators()}),
            ("--strategy", config.strategy, StrategyRegistry.available_strategies())):
        names = sorted({"auto", *known})
        if not isinstance(value, str) or value not in names:
            raise input_error(option, f"unknown value {value!r}; choose one of "
                                      f"{', '.join(names)}")


#: Upper bounds of the size options: beyond them a typo would ask for more memory or time than
#: any machine has (``--batch-size 2000000000``), so they are refused before anything starts.
RUN_LIMITS = {"epochs": 1_000_000, "batch_size": 65_536, "image_size": 16_384,
              "lr_decay_every": 1_000_000, "num_workers": 1_024}


def check_run_options(config: TrainConfig, *, decay: bool = False) -> None:
    """Check the options every training method shares, in the order users see them.

    ``epochs``, ``batch_size`` and ``image_size`` (and ``lr_decay_every`` with ``decay``) are
    positive integers below :data:`RUN_LIMITS`, ``image_size`` a multiple of 8, ``num_workers``
    an integer in ``[0, 1024]``, ``lr`` a finite number > 0.

    Raises:
        DensecalInputError: the first bad option, named as its command-line flag.
    """
    names = ("epochs", "batch_size", "image_size", *(("lr_decay_every",) if decay else ()))
    for name in names:
        flag, value = f"--{name.replace('_', '-')}", getattr(config, name)
        if is_int(value) and value < 1:
            raise input_error(flag, "must be a positive integer")
        check_int(flag, value, low=1, high=RUN_LIMITS[name])
    if config.image_size % 8:
        raise input_error("--image-size", f"must be a multiple of 8, got {config.image_size}")
    check_int("--num-workers", config.num_workers, low=0, high=RUN_LIMITS["num_workers"])
    check_number("--lr", config.lr, 0.0, low_open=True)
    if decay:
        check_number("--lr-decay", config.lr_decay, 0.0, 1.0, low_open=True)
    for flag, enum_cls, value in (("--lr-decay-rule", LrDecayRule, config.lr_decay_rule),
                                  ("--normalize", Normalization, config.normalize),
                                  ("--aslp-val-rule", ValidationRule, config.aslp_val_rule),
                                  ("--recipe", Recipe, config.recipe)):
        parse_choice(enum_cls, value, flag)


class LrDecayRule(StrEnum):
    """How ``lr_decay`` applies (:func:`lr_factor`)."""

    STEP = "step"
    COMPOUND = "compound"


class Normalization(StrEnum):
    """What the network sees of an image in [0, 1] (``TrainConfig.normalize``)."""

    NONE = "none"
    IMAGENET = "imagenet"


class ValidationRule(StrEnum):
    """How ASLP's validation accuracy is measured (``TrainConfig.aslp_val_rule``)."""

    BINARISED = "binarised"
    STRICT = "strict"


class VLSVariant(StrEnum):
    """Where VLS stage 1 feeds its latent (``TrainConfig.vls_variant``)."""

    PAPER = "paper"
    BOTTLENECK = "bottleneck"


class Recipe(StrEnum):
    """Where a run's options came from (``TrainConfig.recipe``)."""

    DENSECAL = "densecal"
    OFFICIAL = "official"
