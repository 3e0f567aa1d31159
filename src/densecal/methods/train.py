"""Train a binary or multi-class dense classifier from folder data into a run folder, resumably.

Multi-class runs (``config.num_classes >= 2``) read the masks as label maps
(``FolderDataset(labels=True)``), each value checked against the classes and ``ignore_index``.

Run folder layout::

    RUN/config.json             resolved configuration (densecal.train-config/1)
    RUN/checkpoints/last.ckpt   weights, optimiser, epoch and ASLP's α state (Lightning format)
    RUN/logs/version_K/metrics.csv  per-epoch log (one version per start or resume)
    RUN/alpha.csv               ASLP only: image name -> α at the end of training
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from densecal.data import FolderDataset, find_pairs, split_indices
from densecal.errors import input_error
from densecal.methods.binary import SegmentationModule
from densecal.methods.config import TrainConfig, load_config, save_config
from densecal.methods.objectives import build_objective, is_multiclass, method_names
from densecal.models import create_model

__all__ = ["last_checkpoint", "train"]


def last_checkpoint(run_dir: str | Path) -> Path:
    """Path of the run's latest checkpoint (``RUN/checkpoints/last.ckpt``)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def _datasets(config: TrainConfig) -> tuple[FolderDataset, FolderDataset]:
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
        common.update(labels=True, num_classes=config.num_classes,
                      ignore_index=config.ignore_index)
    return (FolderDataset(config.data, augment=config.augment, pairs=train_pairs, **common),
            FolderDataset(config.val_data or config.data, pairs=val_pairs, **common))


def _check(config: TrainConfig) -> None:
    if config.method not in method_names():
        raise input_error("--method", f"unknown method {config.method!r}; choose one of "
                          f"{', '.join(method_names())}")
    for name in ("epochs", "batch_size", "image_size"):
        if getattr(config, name) < 1:
            raise input_error(f"--{name.replace('_', '-')}", "must be a positive integer")
    if config.image_size % 8:
        raise input_error("--image-size", f"must be a multiple of 8, got {config.image_size}")
    # validates num_classes / ignore_index, binary-only methods and the method's options
    build_objective(config, 1)
    create_model(config.model)  # validates the model name


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> Path:
    """Train ``config.method`` on ``config.data`` and return the final checkpoint path.

    Args:
        config: the run configuration. With ``resume=True`` the run folder's saved
            ``config.json`` is used instead, except for ``epochs`` (so a finished run can be
            extended).
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
    ckpt = last_checkpoint(run_dir)
    if resume:
        if not ckpt.is_file():
            raise input_error(run_dir, "nothing to resume: no checkpoints/last.ckpt")
        config = TrainConfig.from_dict({**load_config(run_dir / "config.json").to_dict(),
                                        "epochs": config.epochs})
    elif ckpt.exists():
        raise input_error(run_dir, "already holds a training run; pass --resume to continue it "
                          "or choose another --out")
    _check(config)
    train_set, val_set = _datasets(config)
    created = not run_dir.exists()
    try:
        return _fit(config, run_dir, train_set, val_set, resume=resume, progress=progress)
    except BaseException:
        # a new run that failed before its first checkpoint leaves nothing behind
        if created and not ckpt.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _fit(config: TrainConfig, run_dir: Path, train_set: FolderDataset, val_set: FolderDataset,
         *, resume: bool, progress: bool) -> Path:
    ckpt = last_checkpoint(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.json")

    L.seed_everything(config.seed, workers=True, verbose=False)
    loader_args = {"batch_size": config.batch_size, "num_workers": config.num_workers,
                   "persistent_workers": config.num_workers > 0}
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True, **loader_args)
    val_loader = torch.utils.data.DataLoader(val_set, shuffle=False, **loader_args)
    module = SegmentationModule(config.to_dict(), len(train_set), train_set.names)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0)
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
            deterministic=config.deterministic, callbacks=[checkpoint],
            logger=CSVLogger(run_dir, name="logs"), enable_progress_bar=progress,
            enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
            default_root_dir=run_dir,
        )
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(ckpt) if resume else None)
    if module.perturbation is not None:
        module.perturbation.write_table(run_dir / "alpha.csv", train_set.names)
    return ckpt


class _quiet_lightning:
    """Silence Lightning's informational banners (GPU available, ...) and known-benign warnings."""

    def __enter__(self) -> None:
        self._levels = {}
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.WARNING)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
