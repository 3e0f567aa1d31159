"""Train a binary or multi-class dense classifier from folder data into a run folder, resumably.

Multi-class runs (``config.num_classes >= 2``) read the masks as label maps
(``FolderDataset(labels=True)``), each value checked against the classes and ``ignore_index``.

Run folder layout::

    RUN/config.json             resolved configuration (densecal.train-config/1)
    RUN/checkpoints/last.ckpt   weights, optimiser, epoch and ASLP's α state (Lightning format)
    RUN/logs/version_K/metrics.csv  per-epoch log (one version per start or resume)
    RUN/alpha.csv               ASLP only: image name -> α at the end of training
    RUN/vls/stage1/last.ckpt    VLS only: the conditional VAE (stage 1), log in vls/stage1/logs
    RUN/vls/soft_labels/        VLS only: STEM.npy soft labels (K, S, S) and manifest.json

Distributed training (``devices``, ``num_nodes``, ``strategy``; Lightning DDP): ``batch_size`` is
per process. The segmentation objectives shard the data themselves (:class:`EpochSampler`, the
permutation of ``torch.utils.data.DistributedSampler`` seeded by ``seed + epoch``; validation
shards are not padded), so one optimiser step over ``W`` processes with ``batch_size`` ``b`` sees
the same images as one process with ``batch_size`` ``W b``. Only global rank 0 writes files.
The method families with their own modules (``car``, ``classifier``, ``ud-*``) train through
:func:`fit_family_run`, with the same sharding, seeding and checkpoints.

Reproducibility: every random draw depends on the run seed and its place in the run, never on
how many epochs this process has run, so a run resumed from ``last.ckpt`` continues exactly as
the uninterrupted run (on deterministic kernels): the epoch's order is seeded by
``(seed, epoch)``, a training item's augmentation by ``(seed, epoch, image)``
(:class:`SeededItems`, whatever ``num_workers``), ASLP's coins by ``(seed, epoch, image)`` and
torch's global RNG is reseeded before each step from ``(seed, epoch, batch, rank)``
(:class:`~densecal.methods.binary.SegmentationModule`,
:class:`~densecal.methods.seeding.StepSeeded`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, Dataset, Sampler

from densecal._checks import check_int
from densecal.data import FolderDataset, find_pairs, split_indices
from densecal.errors import input_error
from densecal.methods import vls
from densecal.methods.binary import SegmentationModule
from densecal.methods.config import (
    TrainConfig,
    check_distributed,
    load_config,
    parse_devices,
    save_config,
)
from densecal.methods.objectives import (
    FAMILY_TRAINERS,
    build_objective,
    is_multiclass,
    method_names,
)
from densecal.methods.seeding import SEED_DATA, derive_seed
from densecal.models import create_model

__all__ = [
    "EpochCheckpoint",
    "EpochData",
    "EpochSampler",
    "SeededItems",
    "fit_family_run",
    "is_primary_process",
    "last_checkpoint",
    "resume_or_refuse",
    "run_started",
    "train",
]


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
    for name in ("epochs", "batch_size", "image_size", "lr_decay_every"):
        if getattr(config, name) < 1:
            raise input_error(f"--{name.replace('_', '-')}", "must be a positive integer")
    if config.image_size % 8:
        raise input_error("--image-size", f"must be a multiple of 8, got {config.image_size}")
    # Lightning's seed_everything replaces other seeds by a random one, with a warning only
    check_int("--seed", config.seed, low=0, high=2**32 - 1,
              problem="must be an integer in [0, 2**32 - 1]")
    check_distributed(config)
    # validates num_classes / ignore_index, binary-only methods and the method's options
    build_objective(config, 1)
    create_model(config.model)  # validates the model name
    if config.method == "vls" and config.vls_stage1:
        vls.load_stage1(config.vls_stage1, config.num_classes)  # exists, is one, K matches


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> Path:
    """Train ``config.method`` on ``config.data`` and return the final checkpoint path.

    ``vls`` runs three stages (:mod:`densecal.methods.vls`): the conditional VAE (skipped with
    ``config.vls_stage1``), the cached soft labels, then the segmentation network; ``resume``
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
    family = _family_trainer(_resumed_method(run_dir) if resume else config.method)
    if family is not None:  # methods with their own networks and loop (car, ...)
        return family(config, run_dir, resume=resume, progress=progress)
    ckpt = last_checkpoint(run_dir)
    config = resume_or_refuse(config, run_dir, resume, started=run_started(run_dir))
    _check(config)
    if config.method == "vls" and config.vls_stage1_epochs is None:
        config = dataclasses.replace(config, vls_stage1_epochs=config.epochs)
    train_set, val_set = _datasets(config)
    with _run_folder(config, run_dir, vls.stage1_checkpoint(run_dir)):
        stage2_set: Dataset = train_set
        if config.method == "vls":
            stage2_set = _vls_soft_label_set(config, run_dir, train_set, progress=progress)
        return _fit(config, run_dir, stage2_set, val_set, resume=ckpt.is_file(),
                    progress=progress)


@contextlib.contextmanager
def _run_folder(config: TrainConfig, run_dir: Path, *progress_files: Path) -> Iterator[None]:
    """Create ``run_dir`` and save ``config.json`` (rank 0); if the body fails, a folder this
    call created is removed unless ``last.ckpt`` or one of ``progress_files`` exists (a new run
    that failed before its first checkpoint leaves nothing behind)."""
    created = not run_dir.exists()
    primary = is_primary_process()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if primary:
            save_config(config, run_dir / "config.json")
        yield
    except BaseException:
        kept = (last_checkpoint(run_dir), *progress_files)
        if primary and created and not any(path.exists() for path in kept):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def is_primary_process() -> bool:
    """Whether this process is global rank 0 of its launch (true when not distributed).

    For the files written before Lightning has set up the ranks (``config.json``). Reads the
    launchers' environment: ``RANK`` (torchrun), ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``, else
    ``LOCAL_RANK`` and ``NODE_RANK`` (Lightning's own launcher starts ranks ``1..N-1`` of a node
    with ``LOCAL_RANK`` set and other nodes carry ``NODE_RANK >= 1``).
    """
    env = os.environ
    for name in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if env.get(name, "").strip().isdigit():
            return int(env[name]) == 0
    return all(int(env.get(name, "0") or 0) == 0 for name in ("LOCAL_RANK", "NODE_RANK"))


def _family_trainer(method: str) -> Callable[..., Path] | None:
    """The training entry of a method family, or None for the segmentation objectives."""
    target = FAMILY_TRAINERS.get(method)
    if target is None:
        return None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _resumed_method(run_dir: Path) -> str:
    """The method of the run saved in ``run_dir`` ('' when there is none)."""
    path = run_dir / "config.json"
    return load_config(path).method if path.is_file() else ""


def resume_or_refuse(config: TrainConfig, run_dir: Path, resume: bool, *,
                     started: bool | None = None) -> TrainConfig:
    """The configuration a run trains with, after the resume rules every method shares.

    With ``resume`` the run folder's saved ``config.json`` is used, except ``epochs`` (taken
    from ``config``, so a finished run can be extended); without it ``config`` is used as it is.

    Args:
        config: the requested configuration.
        run_dir: the run folder.
        resume: continue the run in ``run_dir``.
        started: whether ``run_dir`` holds a run (default: ``checkpoints/last.ckpt`` exists).

    Raises:
        DensecalInputError: ``resume`` without a run, or a run in ``run_dir`` without ``resume``.
    """
    if started is None:
        started = last_checkpoint(run_dir).is_file()
    if resume:
        if not started:
            raise input_error(run_dir, "nothing to resume: no checkpoints/last.ckpt")
        return TrainConfig.from_dict({**load_config(run_dir / "config.json").to_dict(),
                                      "epochs": config.epochs})
    if started or last_checkpoint(run_dir).exists():
        raise input_error(run_dir, "already holds a training run; pass --resume to continue it "
                          "or choose another --out")
    return config


def run_started(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run that ``train(..., resume=True)`` can continue."""
    run_dir = Path(run_dir)
    return last_checkpoint(run_dir).is_file() or _vls_started(run_dir)


def _vls_started(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a ``vls`` run past its first stage-1 checkpoint."""
    return (run_dir / "config.json").is_file() and (
        vls.stage1_checkpoint(run_dir).is_file()
        or (vls.soft_label_dir(run_dir) / "manifest.json").is_file())


def _vls_soft_label_set(config: TrainConfig, run_dir: Path, train_set: FolderDataset, *,
                        progress: bool) -> vls.SoftLabelDataset:
    """VLS stage 1 and soft labels: train (or reuse) the conditional VAE, cache the soft labels, and
    return the training set that carries them."""
    assert config.vls_stage1_epochs is not None
    stage1 = Path(config.vls_stage1) if config.vls_stage1 else vls.stage1_checkpoint(run_dir)
    if not config.vls_stage1 and not vls.stage1_finished(stage1, config.vls_stage1_epochs):
        L.seed_everything(config.seed, workers=True, verbose=False)
        _run_trainer(vls.VLSStage1Module(config.to_dict()), config,
                     EpochData(config, train_set, None), stage1.parent, stage1.parent,
                     max_epochs=config.vls_stage1_epochs,
                     resume_from=stage1 if stage1.is_file() else None, progress=progress,
                     single_process=True)
    cvae = vls.load_stage1(stage1, config.num_classes)
    plain = copy.copy(train_set)
    plain.augment = False
    device = "cuda" if config.accelerator in ("auto", "gpu", "cuda") and \
        torch.cuda.is_available() else "cpu"
    soft_dir = vls.write_soft_labels(cvae, plain, config, stage1, vls.soft_label_dir(run_dir),
                                     device=device)
    return vls.SoftLabelDataset(plain, soft_dir, augment=config.augment)


def _fit(config: TrainConfig, run_dir: Path, train_set: Dataset, val_set: FolderDataset,
         *, resume: bool, progress: bool) -> Path:
    ckpt = last_checkpoint(run_dir)
    L.seed_everything(config.seed, workers=True, verbose=False)
    names = list(getattr(train_set, "names", []))
    module = SegmentationModule(config.to_dict(), len(names), names)
    trainer = _run_trainer(module, config, EpochData(config, train_set, val_set),
                           ckpt.parent, run_dir, max_epochs=config.epochs,
                           resume_from=ckpt if resume else None, progress=progress,
                           single_process=config.method == "vls")
    # every rank holds the same table (gathered updates); after ddp_spawn this process holds
    # rank 0's weights and buffers
    if module.perturbation is not None and trainer.is_global_zero:
        module.perturbation.write_table(run_dir / "alpha.csv", names)
    return ckpt


def fit_family_run(config: TrainConfig, run_dir: Path, make_module: Callable[[], L.LightningModule],
                   train_set: Dataset, val_set: Dataset | None, *, resume: bool, progress: bool,
                   drop_single: bool = False, find_unused_parameters: bool = False) -> Path:
    """Train a method family's module into ``run_dir`` as :func:`train` trains the segmentation
    objectives, and return ``RUN/checkpoints/last.ckpt``.

    Global rank 0 writes ``RUN/config.json``; torch's global RNG is seeded with ``config.seed``
    before ``make_module()`` builds the module (its initial weights); the data are sharded and
    seeded by :class:`EpochData`; ``last.ckpt`` is written after every epoch
    (:class:`EpochCheckpoint`). For a resume-exact run the module reseeds the global RNG before
    each step (:class:`~densecal.methods.seeding.StepSeeded`). A new run that fails before its
    first checkpoint leaves no run folder behind.

    Args:
        config: the checked run configuration (with ``resume`` already the saved one,
            :func:`resume_or_refuse`).
        run_dir: the run folder (created).
        make_module: builds the LightningModule (called once, after seeding).
        train_set: training dataset, items drawn with torch's global RNG (:class:`SeededItems`).
        val_set: validation dataset or ``None``.
        resume: continue from ``RUN/checkpoints/last.ckpt``.
        progress: show Lightning's progress bar.
        drop_single: drop a shard's last training batch when it holds one image (BatchNorm
            layers cannot train on it).
        find_unused_parameters: under DDP, let backward passes leave parameters without a
            gradient (manual optimisation of several networks, as CAR's).

    Raises:
        DensecalInputError: bad ``devices`` / ``num_nodes`` / ``strategy`` / ``accelerator``,
            or what ``make_module`` raises.
    """
    check_distributed(config)
    run_dir = Path(run_dir)
    ckpt = last_checkpoint(run_dir)
    with _run_folder(config, run_dir):
        L.seed_everything(config.seed, workers=True, verbose=False)
        module = make_module()
        _run_trainer(module, config, EpochData(config, train_set, val_set,
                                               drop_single=drop_single),
                     ckpt.parent, run_dir, max_epochs=config.epochs,
                     resume_from=ckpt if resume else None, progress=progress,
                     find_unused_parameters=find_unused_parameters)
    return ckpt


class EpochSampler(Sampler[tuple[int, int]]):
    """One process's share of a training epoch, yielding ``(epoch, index)`` pairs.

    The order is that of :class:`torch.utils.data.DistributedSampler`: ``torch.randperm(n)``
    seeded with ``seed + epoch`` (``range(n)`` without ``shuffle``), padded by repeating its
    head to a multiple of ``num_replicas`` (``pad``), then every ``num_replicas``-th entry from
    ``rank``. So consecutive blocks of ``num_replicas x b`` entries of the epoch's order are the
    images of one step, whatever the number of processes (batch ``b`` per process). Without
    ``pad`` the shards may differ in length by one (validation: no image counted twice).

    The epoch travels with each index so that :class:`SeededItems` can seed the item's
    augmentation from it, also in (persistent) DataLoader workers.

    Args:
        size: dataset length ``n``, ``>= 0``.
        seed: the run seed.
        num_replicas: number of processes ``W >= 1``.
        rank: this process, ``0 <= rank < W``.
        shuffle: permute each epoch (training) or keep ``0..n-1`` (validation).
        pad: repeat the first indices so that all shards have ``ceil(n / W)`` entries.

    Example:
        >>> [i for _, i in EpochSampler(5, seed=0, num_replicas=2, rank=1, shuffle=False)]
        [1, 3, 0]
    """

    def __init__(self, size: int, *, seed: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, pad: bool = True) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.size, self.seed, self.shuffle, self.pad = size, seed, shuffle, pad
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields (Lightning calls it)."""
        self.epoch = epoch

    def _order(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        if self.pad and order:
            padding = -(-len(order) // self.num_replicas) * self.num_replicas - len(order)
            order += (order * -(-padding // len(order)))[:padding]  # padding < num_replicas
        return order[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self._order()])

    def __len__(self) -> int:
        if self.pad:
            return -(-self.size // self.num_replicas)
        return len(range(self.rank, self.size, self.num_replicas))


class SeededItems(Dataset):
    """``dataset`` indexed by ``(epoch, index)``: item ``index`` drawn with torch's RNG seeded
    from ``(seed, epoch, index)`` (:func:`~densecal.methods.seeding.derive_seed`).

    A training item's random augmentation then depends on nothing but its epoch and image: not
    on the batch, the process, the DataLoader worker or whether the run was resumed. The RNG
    state around the call is restored (``torch.random.fork_rng``), so loading data never moves
    the training step's random stream.

    Args:
        dataset: a map-style dataset whose items use torch's global RNG for randomness.
        seed: the run seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, SEED_DATA, epoch, index))
            return self.dataset[index]


class EpochData(L.LightningDataModule):
    """Training (and validation) loaders sharded over the trainer's processes by
    :class:`EpochSampler` over :class:`SeededItems`, built once Lightning knows the ranks (also
    under ``ddp_spawn``). Used with ``Trainer(use_distributed_sampler=False)``.

    Items may be anything the default collate stacks (the dicts of
    :class:`~densecal.data.FolderDataset`, the tuples of
    :class:`~densecal.data.classification.ClassificationDataset`).

    Args:
        config: ``batch_size``, ``num_workers`` and ``seed`` are used.
        train_set: training dataset (shuffled, shards padded to equal length).
        val_set: validation dataset or ``None`` (in order, shards not padded).
        drop_single: drop the last training batch of a shard when it holds one image (for
            BatchNorm layers; shards have equal lengths, so all ranks drop together).
    """

    def __init__(self, config: TrainConfig, train_set: Dataset, val_set: Dataset | None, *,
                 drop_single: bool = False) -> None:
        super().__init__()
        self.config, self.train_set, self.val_set = config, train_set, val_set
        self.drop_single = drop_single

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        sampler = EpochSampler(len(dataset), seed=self.config.seed,  # type: ignore[arg-type]
                               num_replicas=world, rank=rank, shuffle=train, pad=train)
        if train and trainer is not None:
            # Lightning makes the first iterator before it calls set_epoch (and DataLoader
            # workers draw their first indices then): start at the epoch Lightning will set,
            # the number of epochs processed (also right after a resume)
            sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        batch = self.config.batch_size
        return DataLoader(SeededItems(dataset, self.config.seed), batch_size=batch,
                          sampler=sampler, num_workers=self.config.num_workers,
                          persistent_workers=self.config.num_workers > 0,
                          drop_last=train and self.drop_single and len(sampler) % batch == 1)

    def train_dataloader(self) -> DataLoader:
        """The training loader of this rank."""
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation loader of this rank (an empty list without a validation set)."""
        return [] if self.val_set is None else self._loader(self.val_set, train=False)


class EpochCheckpoint(Callback):
    """Write ``last.ckpt`` atomically at the end of every training epoch (after validation).

    Lightning's ``ModelCheckpoint(save_top_k=0, save_last=True)`` writes ``last.ckpt`` only when
    another checkpoint was saved in the same step, i.e. once at the end of training (Lightning
    2.6), so a killed run could not resume. Here every epoch ends with a complete checkpoint
    (weights, optimiser, schedulers, module buffers such as ASLP's alpha table, loop state)
    written to a temporary file and renamed over the previous one: a kill at any moment leaves
    the last finished epoch's checkpoint intact.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning 2 runs the epoch's validation before this hook."""
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)  # collective; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def _run_trainer(module: L.LightningModule, config: TrainConfig, data: EpochData,
                 ckpt_dir: Path, log_root: Path, *, max_epochs: int, resume_from: Path | None,
                 progress: bool, single_process: bool = False,
                 find_unused_parameters: bool = False) -> L.Trainer:
    """Fit ``module`` on ``data`` (resuming from ``resume_from`` if given) with checkpoints
    ``ckpt_dir/last.ckpt`` and a CSV log in ``log_root/logs/version_K``; return the trainer.

    ``single_process`` refuses a configuration that would start several processes;
    ``find_unused_parameters`` turns on DDP's flag of that name under any DDP strategy
    (Lightning's ``ddp`` / ``ddp_spawn`` leave it off).
    """
    checkpoint = EpochCheckpoint(ckpt_dir / "last.ckpt")
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=max_epochs, accelerator=config.accelerator,
            devices=parse_devices(config.devices), num_nodes=config.num_nodes,
            strategy=config.strategy, deterministic=config.deterministic,
            callbacks=[checkpoint], logger=CSVLogger(log_root, name="logs"),
            enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            log_every_n_steps=1, default_root_dir=log_root, use_distributed_sampler=False,
            enable_checkpointing=False,  # EpochCheckpoint writes the run's only checkpoint
        )
        if single_process and trainer.world_size > 1:
            raise input_error("--devices", f"method {config.method} trains in one process only; "
                                           f"got {trainer.world_size} (devices x num_nodes)")
        if find_unused_parameters and isinstance(trainer.strategy, DDPStrategy):
            # the strategy keeps its DistributedDataParallel keywords until it wraps the model
            trainer.strategy._ddp_kwargs["find_unused_parameters"] = True
        trainer.fit(module, datamodule=data,
                    ckpt_path=None if resume_from is None else str(resume_from))
    return trainer


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
        warnings.filterwarnings("ignore", message=".*dirpath has changed.*")  # moved run folder
        # EpochData always offers a validation loader; VLS stage 1 has no validation step
        warnings.filterwarnings("ignore", message=".*val_dataloader.*no `validation_step`.*")

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
