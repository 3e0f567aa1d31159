"""Shared fixtures: a tiny demo dataset and a tiny trained checkpoint (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo scenes with a handful of 32x32 images per split, as folders."""
    from densecal.data import DemoConfig, write_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return write_demo_dataset(root, DemoConfig(size=32, n_train=12, n_val=6, n_test=6, n_ood=4,
                                               seed=3))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_demo: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ASLP run trained for 2 epochs (warm-up 1) on the tiny demo scenes."""
    from densecal.methods import TrainConfig, train

    run = tmp_path_factory.mktemp("run") / "aslp"
    config = TrainConfig(method="aslp", data=str(tiny_demo["train"]),
                         val_data=str(tiny_demo["val"]), epochs=2, image_size=32, batch_size=4,
                         aslp_warmup=1, seed=0)
    return train(config, run, progress=False)
