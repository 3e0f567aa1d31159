"""Largest difference of densecal's pixel calibration against two references, in one run.

* the independent float64 numpy reference of the test suite
  (``tests/metrics/test_calibration_functional.py::reference``: loops over pixels with explicit
  edge comparisons, a full sort for ACE), for every option combination;
* torchmetrics' ``BinaryCalibrationError`` (``norm="l1"`` -> ECE, ``norm="max"`` -> MCE) in
  positive-class mode, on float64 and float32 maps.

Usage::

    python benchmarks/calibration_agreement.py [--n-maps 8] [--size 48] [--seed 0]

Prints one JSON object: ``{"numpy_reference": {mode: {metric: max_abs_diff}}, "torchmetrics":
{...}, "overall_max": ...}``. ACE on float maps differs from the exact sort within the documented
fine-histogram bound; on 8-bit maps every key, ACE included, agrees to rounding.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.classification import BinaryCalibrationError

from densecal.metrics.functional import pixel_calibration

ROOT = Path(__file__).resolve().parents[1]


def _load_reference() -> Any:
    path = ROOT / "tests" / "metrics" / "test_calibration_functional.py"
    spec = importlib.util.spec_from_file_location("_calibration_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference


def realistic_maps(n: int, size: int, seed: int, *, soft: bool) -> tuple[np.ndarray, np.ndarray]:
    """Smooth blob probability maps of varied sharpness and (hard or soft) blob masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    preds, target = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r
        sharp = rng.uniform(10, 80)
        noise = rng.normal(0, 0.05, dist.shape)
        preds.append(1 / (1 + np.exp(sharp * (dist + noise))))
        mask = 1 / (1 + np.exp(200 * (dist + rng.normal(0, 0.02)))) if soft else dist < 0
        target.append(mask.astype(np.float64))
    return np.stack(preds), np.stack(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-maps", type=int, default=8)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reference = _load_reference()

    against_numpy: dict[str, dict[str, float]] = {}
    for confidence, target_type, aggregate in itertools.product(
            ("top-label", "positive"), ("hard", "soft", "strict"), ("pooled", "per-image")):
        preds, target = realistic_maps(args.n_maps, args.size, args.seed,
                                       soft=target_type != "hard")
        opts = {"confidence": confidence, "target_type": target_type, "aggregate": aggregate}
        ours = pixel_calibration(torch.from_numpy(preds), torch.from_numpy(target), **opts)
        want = reference(preds, target, **opts)
        against_numpy[f"{confidence}/{target_type}/{aggregate}"] = {
            k: abs(float(ours[k]) - float(want[k])) for k in want}

    against_torchmetrics: dict[str, dict[str, float]] = {}
    for dtype in (torch.float64, torch.float32):
        preds, target = realistic_maps(args.n_maps, args.size, args.seed + 1, soft=False)
        p, y = torch.from_numpy(preds).to(dtype), torch.from_numpy(target).long()
        ours = pixel_calibration(p, y, confidence="positive")
        diffs = {}
        for key, norm in (("ece", "l1"), ("mce", "max")):
            metric = BinaryCalibrationError(n_bins=10, norm=norm)
            metric.update(p.flatten(), y.flatten())
            diffs[key] = abs(float(ours[key]) - float(metric.compute()))
        against_torchmetrics[str(dtype).replace("torch.", "")] = diffs

    # 8-bit maps (values k/255, as read from PNG): the equal-mass ACE is exact as well
    eight_bit: dict[str, float] = {}
    preds, target = realistic_maps(args.n_maps, args.size, args.seed + 2, soft=False)
    preds = np.round(preds * 255) / 255
    for confidence in ("top-label", "positive"):
        ours = pixel_calibration(torch.from_numpy(preds), torch.from_numpy(target),
                                 confidence=confidence)
        want = reference(preds, target, confidence=confidence)
        eight_bit[confidence] = max(abs(float(ours[k]) - float(want[k])) for k in want)

    def worst(table: dict[str, dict[str, float]], keep: Any) -> float:
        return max(v for d in table.values() for k, v in d.items() if keep(k))

    overall = max(max(d.values()) for d in [*against_numpy.values(),
                                             *against_torchmetrics.values()])
    print(json.dumps({
        "maps": {"n": args.n_maps, "size": args.size, "seed": args.seed},
        "numpy_reference": against_numpy,
        "numpy_reference_max_except_ace": worst(against_numpy, lambda k: k != "ace"),
        "numpy_reference_max_ace_float_maps": worst(against_numpy, lambda k: k == "ace"),
        "numpy_reference_max_8bit_maps_all_keys": eight_bit,
        "torchmetrics": against_torchmetrics,
        "overall_max": overall,
        "machine": {"torch": torch.__version__, "python": platform.python_version()},
    }, indent=2))


if __name__ == "__main__":
    main()
