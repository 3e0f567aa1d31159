"""Throughput of ``densecal evaluate --pred --gt`` on PNG maps, and where the time goes.

Writes N pairs of 384x384 8-bit PNGs (smooth blob prediction maps and soft masks) to a temporary
folder, then measures in one run:

* ``decode``: reading every pair through the evaluation DataLoader (PNG decode, value/255),
* ``calibration`` and ``segmentation``: the time :class:`densecal.evaluation.Evaluator` spends in
  the pixel calibration metrics and in the pysodmetrics SOD measures,
* ``total``: the whole ``evaluate`` pipeline (decoding in DataLoader workers overlaps the metrics),

and prints one JSON object with seconds, images per second, nanoseconds per pixel and the
split; without ``--quick`` it is also written atomically to
``benchmarks/results/evaluate_throughput.json``.

The prediction PNGs are 8-bit, so ``densecal evaluate`` keeps them as uint8 levels and scores
them on the exact 256 x 2 histogram path (the ground truth is binarised at 0.5, the ``hard``
target's rule); the SOD measures (pysodmetrics) get the float maps ``v / 255``.

Usage::

    python benchmarks/evaluate_throughput.py [--n-pairs 1000] [--size 384] [--num-workers 1]
                                             [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from densecal.atomic import atomic_write_text
from densecal.evaluation import EvaluationOptions, Evaluator, iter_prediction_pairs

RESULT = Path(__file__).resolve().parent / "results" / "evaluate_throughput.json"


def write_pairs(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """N pairs of PNG prediction maps and soft masks of one blob each."""
    rng = np.random.default_rng(seed)
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        cy, cx, r = [*rng.uniform(0.3, 0.7, 2).tolist(), rng.uniform(0.1, 0.3)]
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r
        pred = 1 / (1 + np.exp(rng.uniform(10, 80) * (dist + rng.normal(0, 0.03, dist.shape))))
        mask = 1 / (1 + np.exp(300 * dist))
        Image.fromarray(np.round(pred * 255).astype(np.uint8)).save(pred_dir / f"{i:05d}.png")
        Image.fromarray(np.round(mask * 255).astype(np.uint8)).save(gt_dir / f"{i:05d}.png")
    return pred_dir, gt_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=1000)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="print only, write no result")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir, gt_dir = write_pairs(Path(tmp), args.n_pairs, args.size)

        start = time.perf_counter()
        for _ in iter_prediction_pairs(pred_dir, gt_dir, num_workers=0):
            pass
        decode = time.perf_counter() - start

        evaluator = Evaluator(EvaluationOptions(), name="bench")
        start = time.perf_counter()
        for name, pred, gt in iter_prediction_pairs(pred_dir, gt_dir, args.num_workers):
            evaluator.add(name, pred, gt)
        evaluator.evaluation()
        total = time.perf_counter() - start
    n = args.n_pairs
    pixels = n * args.size * args.size
    sec = {"decode_only_in_process": decode, **evaluator.seconds, "total_pipeline": total}
    result = {
        "n_pairs": n, "size": args.size, "num_workers": args.num_workers,
        "predictions": "8-bit PNG, scored as uint8 levels",
        "seconds": {k: round(v, 3) for k, v in sec.items()},
        "images_per_second": {"total_pipeline": round(n / total, 2),
                              "decode_only": round(n / decode, 2),
                              "calibration_only": round(n / sec["calibration"], 2),
                              "segmentation_only": round(n / sec["segmentation"], 2)},
        "ns_per_pixel": {k: round(v / pixels * 1e9, 3) for k, v in sec.items()},
        "share_of_total": {k: round(sec[k] / total, 3)
                           for k in ("calibration", "segmentation")},
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_average_1min_at_start": round(load, 2)},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if not args.quick:
        atomic_write_text(RESULT, text + "\n")


if __name__ == "__main__":
    main()
