"""``densecal train``: train any registered method into a run folder, resumably.

The method comes from the one registry (:data:`densecal.methods.registry.METHODS`): a
segmentation objective trains through
:func:`~densecal.methods.segmentation.training.train_segmentation`, a method family (``car``,
``classifier``, ``ud-*``) through its own registered trainer. On ``resume`` the method saved in
the run folder decides.
"""

from __future__ import annotations

from pathlib import Path

# importing the modules that define the method families registers their names
import densecal.methods.car.module
import densecal.methods.classify
import densecal.methods.ud  # noqa: F401
from densecal._checks import check_out_apart
from densecal._deprecated import moved_names
from densecal.methods.config import TrainConfig, load_config
from densecal.methods.engine.run_folder import last_checkpoint
from densecal.methods.registry import METHODS
from densecal.methods.segmentation.training import segmentation_run_started, train_segmentation

__all__ = ["run_started", "train"]

__getattr__ = moved_names(__name__, {
    **dict.fromkeys(("EpochCheckpoint", "EpochData", "EpochSampler", "SeededItems",
                     "fit_family_run", "is_primary_process", "last_checkpoint",
                     "resume_or_refuse"), "densecal.methods.engine"),
})


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> Path:
    """Train ``config.method`` on ``config.data`` and return the final checkpoint path.

    Args:
        config: the run configuration. With ``resume=True`` the run folder's saved
            ``config.json`` is used instead, except for ``epochs`` (so a finished run can be
            extended).
        run_dir: output folder (created).
        resume: continue the run in ``run_dir``.
        progress: show Lightning's progress bar.

    Returns:
        Path to ``RUN/checkpoints/last.ckpt``.

    Raises:
        DensecalInputError: an unknown method, bad data or options; ``run_dir`` already holds a
            run and ``resume`` is false; ``resume`` without a run.
    """
    run_dir = check_out_apart(run_dir, {"--data": config.data, "--val-data": config.val_data})
    name = _resumed_method(run_dir) if resume else config.method
    trainer = METHODS.create(name).trainer if name in METHODS.names() else None
    if trainer is not None:  # methods with their own networks and loop (car, ...)
        return trainer(config, run_dir, resume=resume, progress=progress)
    return train_segmentation(config, run_dir, resume=resume, progress=progress)


def _resumed_method(run_dir: Path) -> str:
    """The method of the run saved in ``run_dir`` ('' when there is none)."""
    path = run_dir / "config.json"
    return load_config(path).method if path.is_file() else ""


def run_started(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run that ``train(..., resume=True)`` can continue."""
    run_dir = Path(run_dir)
    return last_checkpoint(run_dir).is_file() or segmentation_run_started(run_dir)
