"""The official ASLP recipe (issue 18): the compound learning-rate rule, the strict validation
accuracy, ``densecal train --recipe official`` and ImageNet normalisation.

References written here from the official code's description (github.com/Carlisle-Liu/ASLP):
``utils.adjust_lr`` multiplies the learning rate by ``0.95 ** (epoch // 10)`` after every
epoch ``1..30``; ``acc_val`` upsamples each validation map to the image's size, writes
``255 * sigmoid`` as an 8-bit PNG (OpenCV: round half to even), and ``Compute_ECE_Valid``
counts a pixel correct when the binarised level (255 at >= 128, else 0) equals the raw 8-bit
ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from densecal.data.folder import FolderDataset, collate_items
from densecal.data.transforms import normalize_images
from densecal.methods.config import OFFICIAL_ASLP_RECIPE, TrainConfig, lr_factor
from densecal.methods.engine.optim import adam_schedule
from densecal.methods.segmentation.module import SegmentationModule


def official_lr_per_epoch(epochs: int = 30, rate: float = 0.95, every: int = 10) -> list[float]:
    """The learning rate (relative to the initial one) each 1-based epoch runs at under the
    official loop: train the epoch, then ``lr *= rate ** (epoch // every)``."""
    lr, used = 1.0, []
    for epoch in range(1, epochs + 1):
        used.append(lr)
        lr *= rate ** (epoch // every)
    return used


def test_compound_rule_is_the_official_adjust_lr() -> None:
    config = TrainConfig(lr_decay=0.95, lr_decay_every=10, lr_decay_rule="compound")
    ours = [lr_factor(config, e) for e in range(30)]  # 0-based epochs
    assert ours == pytest.approx(official_lr_per_epoch(), rel=1e-13)
    # the figures: epochs 11, 12, 20 and 30 (1-based)
    assert [round(ours[e - 1], 4) for e in (10, 11, 12, 20, 21, 30)] == [
        1.0, 0.95, 0.9025, 0.5987, 0.5404, 0.2146]


def test_step_rule_is_unchanged() -> None:
    config = TrainConfig(lr_decay=0.95, lr_decay_every=10)
    assert [lr_factor(config, e) for e in (0, 9, 10, 19, 20, 29)] == [
        1.0, 1.0, 0.95, 0.95, 0.95**2, 0.95**2]


@pytest.mark.parametrize("rule", ["step", "compound"])
def test_adam_schedule_runs_each_epoch_at_lr_factor(rule: str) -> None:
    config = TrainConfig(lr=2.5e-5, lr_decay=0.95, lr_decay_every=10, lr_decay_rule=rule)
    layer = torch.nn.Linear(2, 1)
    scheduled = adam_schedule(layer.parameters(), config)
    optimizer, scheduler = scheduled["optimizer"], scheduled["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(30):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()  # Lightning steps an "epoch" scheduler after each epoch
    assert seen == pytest.approx([2.5e-5 * lr_factor(config, e) for e in range(30)], rel=1e-12)


def _soft_split(root: Path, seed: int = 0) -> Path:
    """Six validation pairs of different original sizes with soft mask edges (a linear ramp
    6 px wide across each disc's boundary, as matting-style ground truth has)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (h, w) in enumerate([(40, 48), (56, 40), (48, 48), (36, 52), (64, 44), (44, 60)]):
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        cy, cx, r = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w, 0.3 * min(h, w)
        mask = np.clip((r - np.hypot(yy - cy, xx - cx)) / 6.0 + 0.5, 0.0, 1.0)
        mask_u8 = np.round(mask * 255).astype(np.uint8)
        image = np.clip(mask[..., None] * 180 + rng.normal(40, 20, (h, w, 3)), 0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask_u8).save(root / "masks" / f"s{i}.png")
    return root


def _logits_of(batch: dict, size: int) -> torch.Tensor:
    """A fixed 'network': logits from the resized soft mask with a smooth error field."""
    mask = batch["mask"]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size),
                            indexing="ij")
    return 6.0 * (mask - 0.5) + 1.5 * torch.sin(3 * xx + 2 * yy)[None, None]


def official_strict_accuracy(logits: torch.Tensor, masks_u8: list[np.ndarray]) -> float:
    """The official ``acc_val`` + ``Compute_ECE_Valid`` accuracy over all pixels."""
    correct = total = 0
    for logit, gt in zip(logits, masks_u8, strict=True):
        full = F.interpolate(logit[None], size=gt.shape, mode="bilinear", align_corners=False)
        level = np.rint(255 * torch.sigmoid(full)[0, 0].numpy()).clip(0, 255).astype(np.uint8)
        binary = np.where(level > 127, 255, 0)
        correct += int((binary == gt).sum())
        total += gt.size
    return correct / total


def test_strict_validation_accuracy_on_soft_masks(tmp_path: Path) -> None:
    """A_val under both rules on a soft-GT split: the strict rule equals the official pipeline
    and is far below the binarised rule (soft pixels always count as wrong)."""
    root = _soft_split(tmp_path / "val")
    size = 32
    dataset = FolderDataset(root, image_size=size, keep_original=True)
    batch = collate_items([dataset[i] for i in range(len(dataset))])
    logits = _logits_of(batch, size)
    masks_u8 = [np.asarray(Image.open(root / "masks" / f"{n}.png")) for n in batch["name"]]
    expected = official_strict_accuracy(logits, masks_u8)

    accuracies = {}
    for rule in ("binarised", "strict"):
        config = TrainConfig(method="aslp", image_size=size, aslp_val_rule=rule)
        module = SegmentationModule(config.to_dict(), num_train_images=4)
        module.forward = lambda image, logits=logits: logits  # type: ignore[method-assign]
        module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
        module.validation_step(batch, 0)
        seen: list[float] = []
        module.perturbation.set_validation_accuracy = seen.append  # type: ignore[union-attr]
        module._trainer = type("T", (), {"sanity_checking": False})()
        module.on_validation_epoch_end()
        accuracies[rule] = seen[0]
    assert accuracies["strict"] == pytest.approx(expected, abs=1e-12)
    soft = sum(int(((m > 0) & (m < 255)).sum()) for m in masks_u8)
    assert soft / sum(m.size for m in masks_u8) > 0.1  # a soft split indeed
    # the numbers quoted in docs/methods.md section 1.2
    assert (round(accuracies["binarised"], 3), round(accuracies["strict"], 3)) == (0.962, 0.794)


def test_keep_original_only_adds_the_full_size_mask(tmp_path: Path) -> None:
    root = _soft_split(tmp_path / "val")
    plain = FolderDataset(root, image_size=16)[1]
    kept = FolderDataset(root, image_size=16, keep_original=True)[1]
    assert set(kept) - set(plain) == {"original"}
    assert torch.equal(kept["mask"], plain["mask"]) and kept["original"].shape == (56, 40)
    gt = np.asarray(Image.open(root / "masks" / "s1.png"), dtype=np.float32) / 255.0
    assert torch.equal(kept["original"], torch.from_numpy(gt))


def test_imagenet_normalisation_happens_in_forward() -> None:
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = SegmentationModule(TrainConfig(image_size=16).to_dict(), 1)
    normed = SegmentationModule(TrainConfig(image_size=16, normalize="imagenet").to_dict(), 1)
    normed.net.load_state_dict(plain.net.state_dict())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(normed(image), plain((image - mean) / std), atol=1e-6)
    assert torch.equal(normalize_images(image, "none"), image)


def test_recipe_official_sets_every_value_and_typed_options_win(tmp_path: Path) -> None:
    from _train_runs import run_cli

    data = _soft_split(tmp_path / "data")
    out = tmp_path / "run"
    run_cli(["train", "--recipe", "official", "--data", str(data), "--val-fraction", "0.34",
             "--epochs", "1", "--image-size", "16", "--batch-size", "2", "--out", str(out)])
    saved = json.loads((out / "config.json").read_text())
    typed = {"epochs": 1, "image_size": 16, "batch_size": 2}
    for name, value in OFFICIAL_ASLP_RECIPE.items():
        assert saved[name] == typed.get(name, value), name
    assert saved["lr"] == 2.5e-5 and saved["lr_decay_rule"] == "compound"
    assert (out / "alpha.csv").is_file()


def test_unknown_rule_names_the_option(tmp_path: Path) -> None:
    from densecal.errors import DensecalInputError
    from densecal.methods.config import check_run_options

    for field, flag in (("lr_decay_rule", "--lr-decay-rule"), ("aslp_val_rule", "--aslp-val-rule"),
                        ("normalize", "--normalize"), ("recipe", "--recipe")):
        with pytest.raises(DensecalInputError, match=flag):
            check_run_options(TrainConfig(**{field: "bogus"}), decay=True)
