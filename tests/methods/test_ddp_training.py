"""Distributed ASLP training (Lightning DDP, 2 CPU processes over gloo) equals one process.

Why the two runs can be compared: ``densecal train`` shards the data with
:class:`~densecal.methods.train.EpochSampler`, whose epoch order is ``torch.randperm(n)`` seeded
by ``seed + epoch`` (``DistributedSampler``'s), dealt round-robin to the ranks. With ``W`` ranks
of per-process batch ``b``, step ``t`` of every rank together covers entries
``[t W b, (t + 1) W b)`` of that order: exactly the images of step ``t`` of one process with
batch ``W b``. Everything random is keyed by image, not by position in a stream: ASLP's coins
by ``(seed, epoch, image)`` (augmentation too, but it is off here so that the check does not
also depend on resampling kernels). The model (MONAI UNet, instance norm, no dropout) treats
images independently, the loss is a mean over pixels and images, and DDP averages the two
half-batch gradients: so the two runs compute the same quantities, summed in a different order.
Each rank's α updates are all-gathered and applied on every rank, each image once per epoch.

Tolerance: float32 summation order differs (gradient all-reduce, metric state sums, a batch of
2 against 4 in the convolutions), so values agree to rounding, amplified by 3 epochs of Adam:
relative 1e-4 for the logged metrics and 1e-5 absolute on α (α spreads over [0, 0.49] here with
step size 2; a wrong coin or a missed/doubled update moves it by ~1e-2). The ``updates`` column
(how many times each image's α was updated) must match exactly.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from _train_runs import LAUNCHER_VARS, finish, run_cli, start, stop
from torch.utils.data import Dataset, DistributedSampler

from densecal.data.synthetic.demo import DemoConfig, write_demo_dataset
from densecal.methods.config import TrainConfig
from densecal.methods.engine import EpochSampler, SeededItems, is_primary_process

EPOCHS = 3
WARMUP = 1
def epoch_rows(run_dir: Path, version: int = 0) -> dict[int, dict[str, float]]:
    """metrics.csv as {epoch: {name: value}} (train and validation rows merged)."""
    rows: dict[int, dict[str, float]] = {}
    with (run_dir / "logs" / f"version_{version}" / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            rows.setdefault(int(row["epoch"]), {}).update(
                {k: float(v) for k, v in row.items() if v and k != "epoch"})
    return rows


def alpha_table(run_dir: Path) -> dict[str, tuple[float, int]]:
    with (run_dir / "alpha.csv").open() as f:
        return {r["name"]: (float(r["alpha"]), int(r["updates"])) for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp-data")
    write_demo_dataset(root, DemoConfig(size=32, n_train=16, n_val=7, n_test=1, n_ood=1))
    return root


def test_epoch_sampler_deals_distributed_sampler_order() -> None:
    """Oracle: torch's DistributedSampler (same seed, epoch, padding and dealing)."""
    for n, world in ((16, 2), (13, 2), (7, 3), (1, 2)):
        for epoch in (0, 4):
            for rank in range(world):
                ours = EpochSampler(n, seed=5, num_replicas=world, rank=rank)
                ours.set_epoch(epoch)
                ref = DistributedSampler(range(n), num_replicas=world, rank=rank, seed=5)
                ref.set_epoch(epoch)
                assert list(ours) == [(epoch, i) for i in ref] and len(ours) == len(ref)


def test_steps_of_two_ranks_cover_one_process_steps() -> None:
    """Step t of 2 ranks with batch 2 = step t of one process with batch 4, as sets."""
    one = [i for _, i in EpochSampler(16, seed=0)]
    shards = [[i for _, i in EpochSampler(16, seed=0, num_replicas=2, rank=r)] for r in (0, 1)]
    for t in range(4):
        assert sorted(shards[0][2 * t:2 * t + 2] + shards[1][2 * t:2 * t + 2]) == \
            sorted(one[4 * t:4 * t + 4])
    assert sorted(one) == list(range(16)) and one != list(range(16))


def test_validation_shards_partition_without_padding() -> None:
    shards = [list(EpochSampler(8, seed=0, num_replicas=3, rank=r, shuffle=False, pad=False))
              for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 2]
    assert sorted(i for s in shards for _, i in s) == list(range(8))


class _Draws(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> float:
        return float(torch.rand(()))


def test_seeded_items_depend_on_epoch_and_image_only() -> None:
    items = SeededItems(_Draws(), seed=7)
    before = torch.random.get_rng_state()
    first = [items[(1, i)] for i in range(4)]
    assert torch.equal(torch.random.get_rng_state(), before)  # the global stream did not move
    torch.manual_seed(123)
    assert [items[(1, i)] for i in reversed(range(4))] == first[::-1]
    assert items[(2, 0)] != first[0] and SeededItems(_Draws(), seed=8)[(1, 0)] != first[0]
    assert len(set(first)) == 4


@pytest.mark.parametrize(("env", "primary"), [
    ({}, True),
    ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
    ({"LOCAL_RANK": "1"}, False),  # a rank Lightning's ddp launcher started
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # rank 0 of the second node
    ({"RANK": "0", "LOCAL_RANK": "0"}, True),
    ({"RANK": "3", "LOCAL_RANK": "0"}, False),  # torchrun: the global rank decides
    ({"SLURM_PROCID": "2"}, False),
])
def test_is_primary_process(env: dict[str, str], primary: bool,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_primary_process() is primary


def test_alpha_updated_once_per_epoch_despite_padding_repeats() -> None:
    """A padded repeat of an image later in the epoch does not update it again; a new epoch
    does (the module's per-epoch bookkeeping, without a trainer: one process, epoch 0)."""
    from densecal.methods.segmentation.module import SegmentationModule

    config = TrainConfig(method="aslp", aslp_warmup=0, aslp_lr=0.1, image_size=16)
    module = SegmentationModule(config.to_dict(), 4)
    assert module.perturbation is not None
    module.perturbation.set_validation_accuracy(0.5)
    logits = torch.full((2, 1, 8, 8), 2.0)  # y = 1: C - 2 BCE = logit = 2 > 0, alpha grows
    target = torch.ones_like(logits)
    module._update_alpha(torch.tensor([0, 1]), logits, target)
    after_first = module.perturbation.alpha.clone()
    assert after_first[0] > 0 and after_first[1] == after_first[0] and after_first[2] == 0
    module._update_alpha(torch.tensor([1, 2]), logits, target)  # 1 repeats: skipped
    alpha, updates = module.perturbation.alpha, module.perturbation.num_updates
    assert alpha[1] == after_first[1] and alpha[2] == after_first[0]
    assert updates.tolist() == [1, 1, 1, 0]
    module._seen_epoch = -1  # what a new epoch does
    module._update_alpha(torch.tensor([1]), logits[:1], target[:1])
    assert updates.tolist() == [1, 2, 1, 0] and alpha[1] > after_first[1]


def test_ddp_two_processes_match_one_process(demo: Path, tmp_path: Path) -> None:
    common = ["train", "--method", "aslp", "--data", str(demo / "train"), "--val-data",
              str(demo / "val"), "--epochs", str(EPOCHS), "--image-size", "32",
              "--aslp-warmup", str(WARMUP), "--aslp-lr", "2", "--lr", "0.05", "--no-augment",
              "--accelerator", "cpu", "--deterministic", "--seed", "2"]
    one, two = tmp_path / "one", tmp_path / "ddp"
    ddp = start([*common, "--batch-size", "2", "--devices", "2", "--strategy", "ddp",
                 "--out", str(two)])
    try:  # the one-process reference trains here while the ranks start up
        run_cli([*common, "--batch-size", "4", "--devices", "1", "--out", str(one)])
    except BaseException:
        stop(ddp)
        raise
    finish(ddp)

    # rank 0 alone wrote the run folder: one log version, the config with the hardware options
    assert sorted(p.name for p in (two / "logs").iterdir()) == ["version_0"]
    saved = TrainConfig.from_dict(json.loads((two / "config.json").read_text()))
    assert (saved.devices, saved.strategy, saved.num_nodes) == ("2", "ddp", 1)

    ref, ddp = epoch_rows(one), epoch_rows(two)
    assert sorted(ref) == sorted(ddp) == list(range(EPOCHS))
    # Summation order differs (two ranks' gradients are averaged), so values agree to float
    # rounding, grown over three epochs of ASLP's alpha dynamics (about 1e-7 relative after one
    # epoch, 3e-5 after three on this machine). The ECE is binned: a validation pixel that
    # rounding moves across a bin edge shifts it by up to 1 / N, so it gets 2 pixels' slack.
    val_pixels = 7 * 32 * 32
    for epoch in range(EPOCHS):
        for name in ("val_accuracy", "val_ece", "train_loss", "alpha_mean", "alpha_max"):
            slack = 2 / val_pixels if name == "val_ece" else 1e-7
            assert ddp[epoch][name] == pytest.approx(ref[epoch][name], rel=1e-4, abs=slack), \
                (epoch, name)

    ref_alpha, ddp_alpha = alpha_table(one), alpha_table(two)
    assert list(ref_alpha) == list(ddp_alpha) and len(ref_alpha) == 16
    for name, (a, k) in ref_alpha.items():
        assert k == EPOCHS - WARMUP  # every image once per epoch after the warm-up
        assert ddp_alpha[name][1] == k
        # the update's step 2 (--aslp-lr) turns the logit margins' rounding (~1e-5) into α
        assert ddp_alpha[name][0] == pytest.approx(a, abs=2e-4), name
    # the check has teeth: α moved far beyond the tolerance (several values strictly inside the
    # clip range) and was large enough after epoch 1 that epoch 2 expects 16 x alpha_mean > 1.3
    # heads, which change train_loss
    assert ref[1]["alpha_mean"] > 0.08
    assert len({round(a, 3) for a, _ in ref_alpha.values() if 0.0 < a < 0.48}) >= 3
