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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests when no CUDA device is present.

    ``DENSECAL_TEST_GPU_AS=cpu`` runs them anyway with the CPU standing in for the GPU (see
    ``tests/test_gpu.py``); torch is imported only when a gpu test was collected.
    """
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    stand_in = os.environ.get("DENSECAL_TEST_GPU_AS", "")
    if stand_in not in ("", "cpu"):
        raise pytest.UsageError(f"DENSECAL_TEST_GPU_AS: only 'cpu' is supported, got {stand_in!r}")
    if stand_in == "cpu":
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)
