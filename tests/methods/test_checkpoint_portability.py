"""Checkpoints hold plain data: no densecal class or function is pickled into them, so moving a
module (as 0.2 did) never breaks loading a run folder written by an earlier release."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path


class _Recorder(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch checkpoint, recording every global it refers to."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.globals: set[str] = set()

    def find_class(self, module: str, name: str) -> object:
        self.globals.add(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: object) -> None:  # tensor storages: not needed here
        return None


def pickled_globals(checkpoint: Path) -> set[str]:
    with zipfile.ZipFile(checkpoint) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    recorder = _Recorder(data)
    try:
        recorder.load()
    except Exception:  # rebuilding tensors from a None storage fails after the globals are seen
        pass
    return recorder.globals


def test_recorder_sees_densecal_globals(tmp_path: Path) -> None:
    """The check can fail: a checkpoint that pickles a densecal object names its module."""
    import torch

    from densecal.methods.config import TrainConfig

    path = tmp_path / "bad.ckpt"
    torch.save({"config": TrainConfig()}, path)
    assert "densecal.methods.config.TrainConfig" in pickled_globals(path)


def test_training_checkpoint_pickles_no_densecal_object(tiny_checkpoint: Path) -> None:
    found = pickled_globals(tiny_checkpoint)
    assert found, "the recorder saw no global at all"
    assert sorted(g for g in found if g.startswith("densecal")) == []
