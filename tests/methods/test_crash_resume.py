"""A training run killed mid-epoch and resumed ends exactly where the uninterrupted run ends.

``densecal train --method aslp --deterministic`` runs in a child process that is SIGKILLed as
soon as its first ``checkpoints/last.ckpt`` appears (end of epoch 0: the kill lands in epoch 1,
the file's epoch is checked), then ``densecal train --resume`` finishes it. The uninterrupted
run with the same seed trains meanwhile. Everything that could differ after a restart is
exercised: augmentation (on), ASLP's coins (α large enough from epoch 1 on), the α table and
its validation accuracy, Adam's state, a learning-rate decay every epoch, and DataLoader
workers (the killed and resumed run load with one worker, the reference in the main process:
an item's augmentation depends only on (seed, epoch, image)). On one CPU process with
deterministic kernels the results are bit-identical: weights, optimiser state, α table and the
logged metrics are compared for equality. (``densecal evaluate`` is not run: it is a function of
the weights, which are compared exactly.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _train_runs import (
    assert_same_training_state,
    killed_and_reference_runs,
    metrics_rows,
    run_cli,
)

from densecal.data.synthetic.demo import DemoConfig, write_demo_dataset

EPOCHS = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume-data")
    write_demo_dataset(root, DemoConfig(size=32, n_train=16, n_val=6, n_test=1, n_ood=1))
    return root


def test_killed_and_resumed_run_equals_uninterrupted_run(demo: Path, tmp_path: Path) -> None:
    common = ["train", "--method", "aslp", "--data", str(demo / "train"), "--val-data",
              str(demo / "val"), "--epochs", str(EPOCHS), "--image-size", "32",
              "--batch-size", "4", "--aslp-warmup", "1", "--aslp-lr", "2", "--lr", "0.05",
              "--lr-decay", "0.5", "--lr-decay-every", "1", "--accelerator", "cpu",
              "--devices", "1", "--deterministic", "--seed", "4"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    ckpt = cut / "checkpoints" / "last.ckpt"
    interrupted = killed_and_reference_runs(common, full, cut, ("--num-workers", "1"))
    assert interrupted["epoch"] < EPOCHS - 1 and not (cut / "alpha.csv").exists()

    run_cli(["train", "--resume", "--out", str(cut), "--epochs", str(EPOCHS)])

    assert (cut / "alpha.csv").read_bytes() == (full / "alpha.csv").read_bytes()
    a = torch.load(full / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert (a["epoch"], a["global_step"]) == (EPOCHS - 1, EPOCHS * 4)
    assert_same_training_state(a, b)
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.05 * 0.5 ** EPOCHS)

    # the resumed log (version_1) repeats the uninterrupted log's rows from the resumed epoch
    ref = metrics_rows(full / "logs" / "version_0" / "metrics.csv")
    resumed = metrics_rows(cut / "logs" / "version_1" / "metrics.csv")
    first = interrupted["epoch"] + 1
    assert {k[0] for k in resumed} == {str(e) for e in range(first, EPOCHS)}
    assert resumed == {k: v for k, v in ref.items() if int(k[0]) >= first}
    (before_last,) = [r for k, r in ref.items() if k[0] == str(EPOCHS - 2) and k[2] == "val"]
    assert float(before_last["alpha_mean"]) > 0.05  # the last epoch's coins had real odds
