"""ASLP's official pipeline against densecal (issue 18): ``--protocol official`` and the recipe.

Run: ``python benchmarks/aslp_official.py [--seed 0] [--n-maps 69] [--write]``. Prints ONE JSON
object (``--write`` also saves it to ``results/aslp_official.json``):

* ``protocol``: ``n_maps`` prediction maps of assorted sizes, among them one constant map, one
  map whose range is 2e-6 and maps whose values span only part of [0, 1]; 8-bit ground truth
  with soft boundary pixels. The official pipeline is run as its code describes
  (github.com/Carlisle-Liu/ASLP): ``test()``'s normalisation ``255 (p - min) / (max - min +
  1e-8)`` in NumPy 1.x's types, written as 8-bit PNGs (round half to even, as OpenCV), then
  ``ECE.py``'s ``ECE_EW`` (re-expressed in :func:`script_ece_oe`). densecal reads the float maps
  saved as ``.npy``: ``densecal evaluate --protocol official --measures calibration``. Largest
  differences in ECE, OE and accuracy (goal <= 2e-6: the script sums in float32), and the same
  with the constant map scored as densecal 0.1 did (quantised, not zeroed) for scale.
* ``lr_factor``: the learning-rate factor of epochs 1-30 under ``--recipe official`` (the
  ``compound`` rule) beside the official loop (train an epoch, then ``lr *= 0.95 ** (epoch //
  10)``), and under the ``step`` rule.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

RESULT = Path(__file__).resolve().parent / "results" / "aslp_official.json"


def official_levels(p: np.ndarray) -> np.ndarray:
    """``test()``'s 8-bit map: the normalisation in NumPy 1.x's types (float32 array, the
    float32 range plus the Python float 1e-8 promoted to float64 and cast back for the
    division), then OpenCV's float-to-uint8 conversion (round half to even, saturate)."""
    p = p.astype(np.float32)
    denominator = np.float32(np.float64(p.max() - p.min()) + 1e-8)
    res = np.float32(255) * (p - p.min()) / denominator
    return np.clip(np.rint(res), 0, 255).astype(np.uint8)


def script_ece_oe(pred_u8: list[np.ndarray], gt_u8: list[np.ndarray], n_bins: int = 10
                  ) -> tuple[float, float, float]:
    """ASLP's ``ECE.py`` ``ECE_EW`` on 8-bit maps, re-expressed from its description: float32
    maps k/255, confidence max(p, 1 - p), prediction 255 where level >= 128, correct when it
    equals the raw 8-bit GT, float32 linspace edges, bins conf > lo and conf <= hi, float32
    per-bin sums, bin means divided by (count + 1e-6). Returns (ECE, OE, accuracy)."""
    edges = torch.linspace(0, 1, steps=n_bins + 1)
    conf_sum, acc_sum, count = (torch.zeros(n_bins) for _ in range(3))
    for p8, g8 in zip(pred_u8, gt_u8, strict=True):
        p = torch.from_numpy(p8.reshape(-1)).float() / 255.0
        binary = torch.where(torch.from_numpy(p8.reshape(-1)) > 127, 255, 0)
        gt = torch.from_numpy(g8.reshape(-1)).long()
        conf = torch.maximum(p, 1.0 - p)
        for j, (lo, hi) in enumerate(itertools.pairwise(edges)):
            in_bin = conf.gt(lo) & conf.le(hi)
            conf_sum[j] += conf[in_bin].sum()
            acc_sum[j] += (binary[in_bin] == gt[in_bin]).sum()
            count[j] += in_bin.sum()
    total = count.sum()
    ece = oe = 0.0
    for j in range(n_bins):
        a, c = acc_sum[j] / (count[j] + 1e-6), conf_sum[j] / (count[j] + 1e-6)
        ece += float(torch.abs(c - a) * count[j] / total)
        if c > a:
            oe += float(torch.abs(c - a) * c * count[j] / total)
    return ece, oe, float(acc_sum.sum() / total)


def make_maps(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (float32 prediction, uint8 ground truth) pairs: sigmoid maps of a blurred field,
    every 7th stretched over a part of [0, 1] only; map 0 constant, map 1 of range 2e-6."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        h, w = int(rng.integers(24, 64)), int(rng.integers(24, 64))
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, 0.3 * min(h, w)
        dist = r - np.hypot(yy - cy, xx - cx)
        gt = np.clip(dist / 3.0 + 0.5, 0.0, 1.0)  # soft boundary ramp
        logit = dist / rng.uniform(1.0, 6.0) + rng.normal(0.0, 1.0, (h, w))
        pred = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        if i == 0:
            pred = np.full((h, w), np.float32(rng.uniform(0.2, 0.8)))
        elif i == 1:
            pred = (np.float32(0.31) + np.float32(2e-6) * pred).astype(np.float32)
        elif i % 7 == 0:
            pred = (np.float32(0.2) + np.float32(0.4) * pred).astype(np.float32)
        pairs.append((pred, np.round(gt * 255).astype(np.uint8)))
    return pairs


def densecal_official(pairs: list[tuple[np.ndarray, np.ndarray]], work: Path) -> dict[str, Any]:
    """``densecal evaluate --protocol official`` on the float maps saved as ``.npy``."""
    pred_dir, gt_dir = work / "pred", work / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for i, (pred, gt) in enumerate(pairs):
        np.save(pred_dir / f"m{i:03d}.npy", pred)
        Image.fromarray(gt).save(gt_dir / f"m{i:03d}.png")
    out = work / "out"
    subprocess.run([sys.executable, "-m", "densecal", "evaluate", "--pred", str(pred_dir),
                    "--gt", str(gt_dir), "--protocol", "official", "--measures", "calibration",
                    "--out", str(out)], check=True, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text())["calibration"]


def lr_table() -> dict[str, list[float]]:
    from densecal.methods.config import OFFICIAL_ASLP_RECIPE, TrainConfig, lr_factor

    official, lr = [], 1.0
    for epoch in range(1, 31):
        official.append(lr)
        lr *= 0.95 ** (epoch // 10)
    recipe = TrainConfig(**{k: v for k, v in OFFICIAL_ASLP_RECIPE.items()})
    step = TrainConfig(lr_decay=0.95, lr_decay_every=10, lr_decay_rule="step")
    return {"epoch": list(range(1, 31)),
            "official_adjust_lr": [round(x, 6) for x in official],
            "densecal_recipe_official": [round(lr_factor(recipe, e), 6) for e in range(30)],
            "densecal_step_rule": [round(lr_factor(step, e), 6) for e in range(30)],
            "largest_difference": max(abs(lr_factor(recipe, e) - official[e]) for e in range(30))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-maps", type=int, default=69)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    pairs = make_maps(args.n_maps, args.seed)
    levels = [official_levels(p) for p, _ in pairs]
    gts = [g for _, g in pairs]
    ece, oe, acc = script_ece_oe(levels, gts)
    with tempfile.TemporaryDirectory() as tmp:
        ours = densecal_official(pairs, Path(tmp))
    # densecal 0.1 kept a constant map's value (quantised) instead of zeroing it
    old = [np.full_like(levels[0], int(np.rint(255 * pairs[0][0].flat[0]))), *levels[1:]]
    old_ece, old_oe, old_acc = script_ece_oe(old, gts)
    result = {
        "benchmark": "aslp_official",
        "protocol": {
            "n_maps": args.n_maps, "seed": args.seed,
            "official": {"ece": ece, "oe": oe, "accuracy": acc},
            "densecal": {k: ours[k] for k in ("ece", "oe", "accuracy")},
            "largest_difference": max(abs(ece - ours["ece"]), abs(oe - ours["oe"]),
                                      abs(acc - ours["accuracy"])),
            "goal": 2e-6,
            "constant_map_quantised_not_zeroed": {"ece": old_ece, "oe": old_oe,
                                                  "accuracy": old_acc},
            "tiny_range_map_top_level": int(levels[1].max()),
        },
        "lr_factor": lr_table(),
    }
    if args.write:
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
