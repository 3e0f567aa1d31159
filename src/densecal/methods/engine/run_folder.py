"""The run folder of a training run: where it lives, who writes it, when it may be resumed.

Layout every method shares::

    RUN/config.json             the resolved configuration (densecal.train-config/1)
    RUN/checkpoints/last.ckpt   the latest complete epoch (Lightning format)
    RUN/logs/version_K/metrics.csv  per-epoch log (one version per start or resume)

Methods add their own files (ASLP's ``alpha.csv``, VLS's ``vls/``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from densecal.errors import input_error
from densecal.methods.config import TrainConfig, load_config, save_config
from densecal.methods.engine.checkpoints import read_checkpoint

__all__ = ["is_primary_process", "last_checkpoint", "resume_or_refuse", "run_folder"]


def last_checkpoint(run_dir: str | Path) -> Path:
    """Path of the run's latest checkpoint (``RUN/checkpoints/last.ckpt``)."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


@contextlib.contextmanager
def run_folder(config: TrainConfig, run_dir: Path, *progress_files: Path) -> Iterator[None]:
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


def resume_or_refuse(config: TrainConfig, run_dir: Path, resume: bool, *,
                     started: bool | None = None) -> TrainConfig:
    """The configuration a run trains with, after the resume rules every method shares.

    With ``resume`` the run folder's saved ``config.json`` is used, except ``epochs`` (taken
    from ``config``, so a finished run can be extended), and ``last.ckpt`` is read in full first:
    a truncated, foreign or hostile checkpoint is refused before anything in the run folder
    changes. A new run's ``data`` and ``val_data`` are stored as absolute paths, so the run
    resumes on the same data from any working directory (a ``config.json`` of an earlier
    release with relative paths is read as it is).

    Args:
        config: the requested configuration.
        run_dir: the run folder.
        resume: continue the run in ``run_dir``.
        started: whether ``run_dir`` holds a run (default: ``checkpoints/last.ckpt`` exists).

    Raises:
        DensecalInputError: ``resume`` without a run or with an unreadable checkpoint, or a run
            in ``run_dir`` without ``resume``.
    """
    if started is None:
        started = last_checkpoint(run_dir).is_file()
    if resume:
        if not started:
            raise input_error(run_dir, "nothing to resume: no checkpoints/last.ckpt")
        saved = load_config(run_dir / "config.json")
        checkpoint = last_checkpoint(run_dir)
        if checkpoint.is_file():
            _, hparams = read_checkpoint(checkpoint)
            method = hparams.get("config", {}).get("method") \
                if isinstance(hparams.get("config"), dict) else None
            if method != saved.method:
                raise input_error(checkpoint, f"is not a checkpoint of this run (method "
                                              f"{saved.method} in config.json)")
        return TrainConfig.from_dict({**saved.to_dict(), "epochs": config.epochs})
    if started or last_checkpoint(run_dir).exists():
        raise input_error(run_dir, "already holds a training run; pass --resume to continue it "
                          "or choose another --out")
    return dataclasses.replace(config, data=_absolute(config.data),
                               val_data=_absolute(config.val_data))


def _absolute(path: str | None) -> str | None:
    """``path`` made absolute (symbolic links kept); empty or ``None`` as it is."""
    return os.path.abspath(path) if path else path
