"""The method families (``classifier``, ``car``) resume a killed run exactly.

As ``test_crash_resume.py`` does for ASLP: ``densecal train`` runs in a child process that is
SIGKILLed as soon as its first ``checkpoints/last.ckpt`` appears, ``densecal train --resume``
finishes it, and the uninterrupted run with the same seed trains meanwhile in this process. The
killed run loads with one DataLoader worker, the reference in the main process. What would
differ after a restart without keyed seeds: the epoch's order, the augmentation (on), CAR's
latent ``z`` of every training and validation step and its discriminator schedule (``D`` trains
every other iteration), Adam's state and a learning-rate decay every epoch (classifier). On one
CPU process with deterministic kernels the final weights, buffers, optimiser states and the
logged metrics of the resumed epochs are equal, not close.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_runs import (
    assert_same_training_state,
    killed_and_reference_runs,
    metrics_rows,
    run_cli,
)
from PIL import Image

from densecal.data.synthetic.finegrained import FineGrainedConfig, write_finegrained_dataset
from densecal.data.synthetic.multilabel import write_multilabel_scenes
from densecal.methods.classify import ClassifierModule
from densecal.methods.config import TrainConfig
from densecal.methods.engine import EpochData
from densecal.methods.engine.seeding import SEED_EVAL, SEED_STEP, derive_seed
from densecal.methods.ud import train_ud

EPOCHS = 3
SIZE = 16


def _classifier_args(root: Path) -> list[str]:
    data = write_finegrained_dataset(root, FineGrainedConfig(size=SIZE, n_train=8, n_val=4,
                                                             n_test=0))
    return ["--method", "classifier", "--model", "resnet-tiny", "--data", str(data["train"]),
            "--val-data", str(data["val"]), "--batch-size", "2", "--lr", "0.01",
            "--lr-decay", "0.5", "--lr-decay-every", "1"]


def _car_args(root: Path) -> list[str]:
    """Three-class scenes with an ambiguous square (class 1 or 2) and an ignored pixel."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[2:8, 2:8] = 1
        label[9:14, 9:14] = 2 if i % 2 else 1
        label[0, 0] = 255
        image = (np.minimum(label, 3) * 70 + rng.integers(0, 20, (SIZE, SIZE))).astype(np.uint8)
        Image.fromarray(np.repeat(image[:, :, None], 3, 2)).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "masks" / f"s{i}.png")
    settings = ["gen_channels=[4,8,8,8]", "disc_channels=[4,8]", "samples=2", "latent_dim=3",
                "d_active=1", "d_period=2"]
    return ["--method", "car", "--num-classes", "3", "--ignore-index", "255", "--data",
            str(root), "--val-fraction", "0.25", "--batch-size", "2",
            *[x for s in settings for x in ("--set", f"car.{s}")]]


FAMILIES = {"classifier": (_classifier_args, 4), "car": (_car_args, 3)}  # args, steps per epoch


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_killed_and_resumed_family_run_equals_uninterrupted_run(family: str,
                                                                 tmp_path: Path) -> None:
    make_args, steps = FAMILIES[family]
    args = ["train", *make_args(tmp_path / "data"), "--epochs", str(EPOCHS), "--image-size",
            str(SIZE), "--accelerator", "cpu", "--devices", "1", "--deterministic",
            "--seed", "5"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    interrupted = killed_and_reference_runs(args, full, cut, ("--num-workers", "1"))
    assert interrupted["epoch"] < EPOCHS - 1

    run_cli(["train", "--resume", "--out", str(cut), "--epochs", str(EPOCHS)])

    a = torch.load(full / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(cut / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert a["epoch"] == EPOCHS - 1
    assert_same_training_state(a, b)

    # the resumed log (version_1) repeats the uninterrupted log's rows from the resumed epoch
    ref = metrics_rows(full / "logs" / "version_0" / "metrics.csv")
    resumed = metrics_rows(cut / "logs" / "version_1" / "metrics.csv")
    first = interrupted["epoch"] + 1
    assert {k[0] for k in resumed} == {str(e) for e in range(first, EPOCHS)}
    assert resumed == {k: v for k, v in ref.items() if int(k[0]) >= first}
    if family == "car":
        assert int(a["state_dict"]["iteration"]) == EPOCHS * steps
        # D trained on some iterations of its window and G's samples were random
        train_rows = [r for k, r in ref.items() if k[2] == "train"]
        assert any(float(r["d_trained"]) > 0 for r in train_rows)
        assert all(float(r["loss_cal"]) > 0 for r in train_rows)
    else:
        assert a["global_step"] == EPOCHS * steps
        lr = a["optimizer_states"][0]["param_groups"][0]["lr"]
        assert lr == pytest.approx(0.01 * 0.5 ** EPOCHS)


def test_ud_teacher_resumed_after_one_epoch_equals_uninterrupted_run(tmp_path: Path) -> None:
    """In-process variant for ``ud-teacher`` (BatchNorm1d branch, 7 images in batches of 3: the
    last batch of one image is dropped every epoch): one epoch, then ``resume`` to three."""
    scenes = write_multilabel_scenes(tmp_path / "data", n_train=7, n_val=2, n_test=1, size=SIZE,
                                     seed=3)
    config = TrainConfig(method="ud-teacher", data=str(scenes["train"]),
                         val_data=str(scenes["val"]), epochs=EPOCHS, batch_size=3,
                         image_size=SIZE, accelerator="cpu", devices="1", deterministic=True,
                         seed=7, extra={"ud": {"backbone": "resnet-tiny", "hidden": 8}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_ud(config, tmp_path / "full", progress=False)
        train_ud(dataclasses.replace(config, epochs=1), tmp_path / "cut", progress=False)
        train_ud(config, tmp_path / "cut", resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    a, b = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=False) for run in ("full", "cut"))
    assert (a["epoch"], a["global_step"]) == (EPOCHS - 1, EPOCHS * 2)  # 7 // 3 steps an epoch
    assert_same_training_state(a, b)
    ref = metrics_rows(tmp_path / "full" / "logs" / "version_0" / "metrics.csv", "val_map")
    resumed = metrics_rows(tmp_path / "cut" / "logs" / "version_1" / "metrics.csv", "val_map")
    assert {(k[0], k[2]) for k in resumed} == {(str(e), kind) for e in range(1, EPOCHS)
                                               for kind in ("train", "val")}
    assert resumed == {k: v for k, v in ref.items() if int(k[0]) >= 1}


def test_step_seeded_reseeds_per_step_and_stream() -> None:
    module = ClassifierModule(TrainConfig(model="resnet-tiny", seed=9).to_dict(), ["a", "b"])
    module.on_train_batch_start(None, 3)  # no trainer: epoch 0, rank 0
    drawn = torch.rand(4)
    torch.manual_seed(derive_seed(9, SEED_STEP, 0, 3, 0))
    assert torch.equal(drawn, torch.rand(4))
    module.on_validation_batch_start(None, 3)
    evaluated = torch.rand(4)
    torch.manual_seed(derive_seed(9, SEED_EVAL, 0, 3, 0, 0))
    assert torch.equal(evaluated, torch.rand(4)) and not torch.equal(evaluated, drawn)


@pytest.mark.parametrize(("n", "batches"), [(7, [3, 3]), (8, [3, 3, 2]), (4, [3, 1])])
def test_epoch_data_drops_a_single_image_batch(n: int, batches: list[int]) -> None:
    items = [(torch.tensor(float(i)), torch.tensor(i)) for i in range(n)]  # tuple items
    data = EpochData(TrainConfig(batch_size=3, seed=1), items, items,  # type: ignore[arg-type]
                     drop_single=n != 4)
    got = [len(label) for _, label in data.train_dataloader()]
    assert got == batches
    seen = torch.cat([label for _, label in data.train_dataloader()])
    assert len(set(seen.tolist())) == len(seen)  # a permutation's prefix, no repeats
    assert [len(b[1]) for b in data.val_dataloader()] == [3] * (n // 3) + ([n % 3] if n % 3
                                                                           else [])
