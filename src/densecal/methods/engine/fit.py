"""The fit loop: one Lightning ``Trainer`` per run, quiet, checkpointed every epoch, resumable.

Every method trains through :func:`run_trainer`; the methods with their own LightningModule
(``car``, ``classifier``, ``ud-*``) through :func:`fit_family_run`, which adds the run folder
and the seeding that make a resumed run continue exactly as the uninterrupted one.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import Dataset

from densecal.errors import input_error
from densecal.methods.config import TrainConfig, check_distributed, parse_devices
from densecal.methods.engine.checkpoints import SAFE_LOAD
from densecal.methods.engine.data_module import EpochData
from densecal.methods.engine.epoch_checkpoint import EpochCheckpoint, RunFolderCheckpointIO
from densecal.methods.engine.run_folder import last_checkpoint, run_folder

__all__ = ["fit_family_run", "quiet_lightning", "run_trainer"]


def fit_family_run(config: TrainConfig, run_dir: Path, make_module: Callable[[], L.LightningModule],
                   train_set: Dataset, val_set: Dataset | None, *, resume: bool, progress: bool,
                   drop_single: bool = False, find_unused_parameters: bool = False) -> Path:
    """Train a method family's module into ``run_dir`` as :func:`train` trains the segmentation
    objectives, and return ``RUN/checkpoints/last.ckpt``.

    Global rank 0 writes ``RUN/config.json``; torch's global RNG is seeded with ``config.seed``
    before ``make_module()`` builds the module (its initial weights); the data are sharded and
    seeded by :class:`EpochData`; ``last.ckpt`` is written after every epoch
    (:class:`EpochCheckpoint`). For a resume-exact run the module reseeds the global RNG before
    each step (:class:`~densecal.methods.engine.seeding.StepSeeded`). A new run that fails
    before its first checkpoint leaves no run folder behind.

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
    with run_folder(config, run_dir):
        L.seed_everything(config.seed, workers=True, verbose=False)
        module = make_module()
        run_trainer(module, config, EpochData(config, train_set, val_set,
                                               drop_single=drop_single),
                     ckpt.parent, run_dir, max_epochs=config.epochs,
                     resume_from=ckpt if resume else None, progress=progress,
                     find_unused_parameters=find_unused_parameters)
    return ckpt


def run_trainer(module: L.LightningModule, config: TrainConfig, data: EpochData,
                 ckpt_dir: Path, log_root: Path, *, max_epochs: int, resume_from: Path | None,
                 progress: bool, single_process: bool = False,
                 find_unused_parameters: bool = False) -> L.Trainer:
    """Fit ``module`` on ``data`` (resuming from ``resume_from`` if given) with checkpoints
    ``ckpt_dir/last.ckpt`` and a CSV log in ``log_root/logs/version_K``; return the trainer.

    ``single_process`` refuses a configuration that would start several processes;
    ``resume_from`` must already have been read with
    :func:`~densecal.methods.engine.checkpoints.read_checkpoint` (``resume_or_refuse`` and the
    VLS stage-1 check do), so a bad file is refused before the run folder changes; Lightning then
    loads it with ``weights_only`` too.
    ``find_unused_parameters`` turns on DDP's flag of that name under any DDP strategy
    (Lightning's ``ddp`` / ``ddp_spawn`` leave it off).
    """
    checkpoint = EpochCheckpoint(ckpt_dir / "last.ckpt")
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=max_epochs, accelerator=config.accelerator,
            devices=parse_devices(config.devices), num_nodes=config.num_nodes,
            strategy=config.strategy, deterministic=config.deterministic,
            callbacks=[checkpoint], logger=CSVLogger(log_root, name="logs"),
            enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            log_every_n_steps=1, default_root_dir=log_root, use_distributed_sampler=False,
            enable_checkpointing=False,  # EpochCheckpoint writes the run's only checkpoint
            plugins=[RunFolderCheckpointIO()],  # never through $TMPDIR
        )
        if single_process and trainer.world_size > 1:
            raise input_error("--devices", f"method {config.method} trains in one process only; "
                                           f"got {trainer.world_size} (devices x num_nodes)")
        if find_unused_parameters and isinstance(trainer.strategy, DDPStrategy):
            # the strategy keeps its DistributedDataParallel keywords until it wraps the model
            trainer.strategy._ddp_kwargs["find_unused_parameters"] = True
        trainer.fit(module, datamodule=data, weights_only=SAFE_LOAD,
                    ckpt_path=None if resume_from is None else str(resume_from))
    return trainer


class quiet_lightning:
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
