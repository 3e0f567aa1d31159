"""A hostile checkpoint never runs code: every verb that reads a ``.ckpt`` refuses it with one
line naming the file, exit code 2, and the payload's side effect never happens.

The payload is a pickled object whose ``__reduce__`` calls ``open(MARKER, "w")`` (harmless, and
observable: the marker file appears if the pickle is executed). Each verb runs in a child
process, so a load that executed it would really create the marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densecal.methods.config import TrainConfig


class _Payload:
    """Unpickling this object calls ``open(marker, "w")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def _hostile(path: Path, marker: Path, method: str = "bce", num_classes: int = 1) -> Path:
    """A file shaped like a densecal checkpoint, with the payload hidden in its state."""
    config = TrainConfig(method=method, num_classes=num_classes, image_size=32).to_dict()
    torch.save({"epoch": 0, "state_dict": {}, "payload": _Payload(marker),
                "hyper_parameters": {"config": config, "num_train_images": 1}}, path)
    return path


def _run(args: list[str], cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "densecal", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


@pytest.fixture(scope="module")
def images(tiny_demo: dict[str, Path]) -> Path:
    return tiny_demo["test"]


def _cases(tmp: Path, images: Path, marker: Path) -> dict[str, tuple[list[str], Path]]:
    ckpt = _hostile(tmp / "model.ckpt", marker)
    car = _hostile(tmp / "car.ckpt", marker, method="car", num_classes=3)
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    _hostile(run / "checkpoints" / "last.ckpt", marker)
    (run / "config.json").write_text(json.dumps(
        {"schema": "densecal.train-config/1",
         **TrainConfig(method="bce", data=str(images), image_size=32).to_dict()}))
    return {
        "predict": (["predict", "--checkpoint", str(ckpt), "--data", str(images), "--out",
                     str(tmp / "maps")], ckpt),
        "evaluate": (["evaluate", "--checkpoint", str(ckpt), "--data", str(images), "--out",
                      str(tmp / "eval")], ckpt),
        "calibrate": (["calibrate", "--checkpoint", str(ckpt), "--data", str(images)], ckpt),
        "sample": (["sample", "--checkpoint", str(car), "--data", str(images), "--out",
                    str(tmp / "samples")], car),
        "train --resume": (["train", "--out", str(run), "--epochs", "2", "--resume"],
                           run / "checkpoints" / "last.ckpt"),
    }


@pytest.mark.parametrize("verb", ["predict", "evaluate", "calibrate", "sample", "train --resume"])
def test_hostile_checkpoint_is_refused(verb: str, images: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    argv, culprit = _cases(tmp_path, images, marker)[verb]
    code, err = _run(argv, tmp_path)
    assert not marker.exists(), f"{verb} executed the checkpoint's payload"
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(culprit) in lines[0] and "refused" in lines[0], lines[0]


def test_payload_does_run_under_plain_pickle(tmp_path: Path) -> None:
    """The check can fail: the same file loaded without the allow-list runs the payload."""
    marker = tmp_path / "PWNED"
    path = _hostile(tmp_path / "model.ckpt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_hostile_lidc_pickle_is_refused(tmp_path: Path) -> None:
    """The LIDC loader builds NumPy arrays and plain containers only."""
    import pickle

    import numpy as np

    from densecal.data.convert.lidc import load_lidc_pickle
    from densecal.errors import DensecalInputError

    marker = tmp_path / "PWNED"
    good = {"p1_s0": {"image": np.zeros((4, 4), np.float32),
                      "masks": [np.zeros((4, 4), np.uint8)] * 4, "series_uid": "1.2"}}
    (tmp_path / "good.pickle").write_bytes(pickle.dumps(good))
    assert load_lidc_pickle(tmp_path / "good.pickle")[0][0] == "p1_s0"
    (tmp_path / "bad.pickle").write_bytes(pickle.dumps({**good, "x": _Payload(marker)}))
    with pytest.raises(DensecalInputError, match=r"bad\.pickle: .*refused: it names io\.open"):
        load_lidc_pickle(tmp_path / "bad.pickle")
    assert not marker.exists()
