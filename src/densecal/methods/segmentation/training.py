"""Train a segmentation objective into a run folder, resumably (``densecal train --method
bce|ls|slp|aslp|focal|ecp|mbls|svls|ce|vls``).

Multi-class runs (``config.num_classes >= 2``) read the masks as label maps
(``FolderDataset(labels=True)``), each value checked against the classes and ``ignore_index``.
The run folder (:mod:`densecal.methods.engine.run_folder`) gains ``RUN/alpha.csv`` (ASLP: image
name -> α at the end of training) and, for ``vls``, ``RUN/vls/stage1/last.ckpt`` (the
conditional VAE) and ``RUN/vls/soft_labels/`` (``STEM.npy`` soft labels and ``manifest.json``).

Distributed training (``devices``, ``num_nodes``, ``strategy``; Lightning DDP): ``batch_size`` is
per process; the data are sharded by :class:`~densecal.methods.engine.sampler.EpochSampler`, so
one optimiser step over ``W`` processes with ``batch_size`` ``b`` sees the same images as one
process with ``batch_size`` ``W b``. Only global rank 0 writes files.

Reproducibility: every random draw depends on the run seed and its place in the run, never on
how many epochs this process has run, so a run resumed from ``last.ckpt`` continues exactly as
the uninterrupted run (on deterministic kernels): the epoch's order is seeded by
``(seed, epoch)``, a training item's augmentation by ``(seed, epoch, image)``
(:class:`~densecal.methods.engine.sampler.SeededItems`), ASLP's coins by
``(seed, epoch, image)`` and torch's global RNG is reseeded before each step from
``(seed, epoch, batch, rank)`` (:class:`~densecal.methods.engine.seeding.StepSeeded`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import Dataset

from densecal._checks import check_int
from densecal.data.folder import FolderDataset, collate_items, split_indices
from densecal.data.pairs import find_pairs
from densecal.data.synthetic.ambiguity import flip_transform_for
from densecal.errors import input_error
from densecal.methods.config import TrainConfig, check_distributed, check_run_options
from densecal.methods.engine.data_module import EpochData
from densecal.methods.engine.fit import run_trainer
from densecal.methods.engine.run_folder import last_checkpoint, resume_or_refuse, run_folder
from densecal.methods.registry import METHODS
from densecal.methods.segmentation.module import SegmentationModule
from densecal.methods.segmentation.objectives import build_objective, is_multiclass
from densecal.methods.vls.stage1 import (
    load_stage1,
    soft_label_dir,
    soft_label_training_set,
    stage1_checkpoint,
)
from densecal.models.segmentation import MODELS

__all__ = ["check_config", "fit_segmentation", "folder_datasets", "segmentation_run_started",
           "train_segmentation"]


def folder_datasets(config: TrainConfig) -> tuple[FolderDataset, FolderDataset]:
    """The training and validation folder datasets of ``config``: ``val_data``, or a seeded
    ``val_fraction`` of ``data`` held out; label maps for multi-class runs (with the class
    flips redrawn per load when ``data`` is an ambiguity dataset written with base masks,
    :func:`~densecal.data.synthetic.ambiguity.flip_transform_for`).

    Raises:
        DensecalInputError: unreadable folders, a bad ``val_fraction``, too few images.
    """
    pairs = find_pairs(config.data)
    if config.val_data:
        train_pairs, val_pairs = pairs, find_pairs(config.val_data)
    else:
        if not 0.0 < config.val_fraction < 1.0:
            raise input_error("--val-fraction", f"must be in (0, 1), got {config.val_fraction}")
        train_idx, val_idx = split_indices(len(pairs), config.val_fraction, config.seed)
        if not train_idx or not val_idx:
            raise input_error(config.data, f"{len(pairs)} images are too few to hold out a "
                              f"validation fraction of {config.val_fraction}")
        train_pairs = [pairs[i] for i in train_idx]
        val_pairs = [pairs[i] for i in val_idx]
    common: dict[str, Any] = {"image_size": config.image_size}
    if is_multiclass(config):
        # an ambiguity dataset with base masks: its flips are redrawn at every load
        common.update(labels=True, num_classes=config.num_classes,
                      ignore_index=config.ignore_index,
                      label_transform=flip_transform_for(config.data))
    return (FolderDataset(config.data, augment=config.augment, pairs=train_pairs, **common),
            FolderDataset(config.val_data or config.data, pairs=val_pairs,
                          keep_original=config.aslp_val_rule == "strict", **common))


def check_config(config: TrainConfig) -> None:
    """Check a segmentation run's configuration before anything is written.

    Raises:
        DensecalInputError: the first bad option (named in the message).
    """
    METHODS.get(config.method)  # an unknown method name first
    check_run_options(config, decay=True)
    # Lightning's seed_everything replaces other seeds by a random one, with a warning only
    check_int("--seed", config.seed, low=0, high=2**32 - 1,
              problem="must be an integer in [0, 2**32 - 1]")
    check_distributed(config)
    # validates num_classes / ignore_index, binary-only methods and the method's options
    build_objective(config, 1)
    MODELS.get(config.model)  # validates the model name
    if config.aslp_val_rule == "strict" and is_multiclass(config):
        raise input_error("--aslp-val-rule", "strict is the binary ASLP rule; multi-class runs "
                                             "use binarised")
    if config.method == "vls" and config.vls_stage1 and config.vls_folds > 1:
        raise input_error("--vls-stage1", "reuses one stage-1 network; --vls-folds trains one "
                                          "per fold")
    if config.method == "vls" and config.vls_stage1:
        load_stage1(config.vls_stage1, config.num_classes)  # exists, is one, K matches


def train_segmentation(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
                       progress: bool = True) -> Path:
    """Train a segmentation objective (``config.method``) on ``config.data`` and return the
    final checkpoint path.

    ``vls`` runs three stages (:mod:`densecal.methods.vls.stage1`): the conditional VAE (skipped
    with ``config.vls_stage1``), the cached soft labels, then the segmentation network; ``resume``
    continues whichever stage was interrupted.

    Args:
        config: the run configuration. With ``resume=True`` the run folder's saved
            ``config.json`` is used instead, except for ``epochs`` (so a finished run can be
            extended; for ``vls`` this extends stage 2 only).
        run_dir: output folder (created).
        resume: continue from ``RUN/checkpoints/last.ckpt`` (``vls``: or from its stage 1 /
            soft labels).
        progress: show Lightning's progress bar.

    Returns:
        Path to ``RUN/checkpoints/last.ckpt``.

    Raises:
        DensecalInputError: bad data or options; ``run_dir`` already holds a run and ``resume``
            is false; ``resume`` without a checkpoint; ``vls`` with ``num_classes < 2`` or a
            missing ``vls_stage1`` file.
    """
    run_dir = Path(run_dir)
    ckpt = last_checkpoint(run_dir)
    config = resume_or_refuse(config, run_dir, resume, started=segmentation_run_started(run_dir))
    check_config(config)
    if config.method == "vls" and config.vls_stage1_epochs is None:
        config = dataclasses.replace(config, vls_stage1_epochs=config.epochs)
    train_set, val_set = folder_datasets(config)
    with run_folder(config, run_dir, stage1_checkpoint(run_dir)):
        stage2_set: Dataset = train_set
        if config.method == "vls":
            stage2_set = soft_label_training_set(config, run_dir, train_set, progress=progress)
        return fit_segmentation(config, run_dir, stage2_set, val_set, resume=ckpt.is_file(),
                    progress=progress)


def segmentation_run_started(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a segmentation run that can be resumed (``last.ckpt``, or a
    ``vls`` run past its first stage-1 checkpoint)."""
    run_dir = Path(run_dir)
    return last_checkpoint(run_dir).is_file() or _vls_started(run_dir)


def _vls_started(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a ``vls`` run past its first stage-1 checkpoint."""
    stage1 = stage1_checkpoint(run_dir).parent
    return (run_dir / "config.json").is_file() and (
        any(stage1.glob("**/last.ckpt")) or any(soft_label_dir(run_dir).glob("manifest*.json")))


def fit_segmentation(config: TrainConfig, run_dir: Path, train_set: Dataset,
                     val_set: FolderDataset, *, resume: bool, progress: bool) -> Path:
    """Fit :class:`SegmentationModule` with ``config``'s objective; ASLP writes ``alpha.csv``."""
    ckpt = last_checkpoint(run_dir)
    L.seed_everything(config.seed, workers=True, verbose=False)
    names = list(getattr(train_set, "names", []))
    module = SegmentationModule(config.to_dict(), len(names), names)
    trainer = run_trainer(module, config, EpochData(config, train_set, val_set,
                                                    collate=collate_items),
                           ckpt.parent, run_dir, max_epochs=config.epochs,
                           resume_from=ckpt if resume else None, progress=progress,
                           single_process=config.method == "vls")
    # every rank holds the same table (gathered updates); after ddp_spawn this process holds
    # rank 0's weights and buffers
    if module.perturbation is not None and trainer.is_global_zero:
        module.perturbation.write_table(run_dir / "alpha.csv", names)
    return ckpt
