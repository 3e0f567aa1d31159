"""Throughput of ``densecal evaluate --pred --gt`` on PNG maps, against what users do today.

Writes N pairs of 384x384 8-bit PNGs (smooth blob prediction maps and soft masks) to a temporary
folder, then times in one run (in process, start-up excluded):

* ``densecal``: :func:`densecal.evaluation.evaluate_prediction_folder` with 0, 1 and 2 worker
  processes, with every measure (``--measures all``) and calibration only;
* ``baseline``: a plain loop in one process, what a user of pysodmetrics writes today: read each
  pair with PIL, step pysodmetrics' MAE, S-measure, E-measure, FmeasureV2 (F at 256
  thresholds, adaptive F) and weighted F on ``q = v / 255`` and ``gt >= 0.5``, and a NumPy
  10-bin pooled ECE of the top-label confidence (bins ``(lo, hi]``, counts in int64, sums in
  float64),

and prints one JSON object with seconds and images per second per configuration, the speed-up
of each over the baseline, and the largest difference between densecal's numbers and the
baseline's (the E-measure differs by design: densecal averages over H·W pixels, pysodmetrics
over H·W − 1, a factor 1 − 6.8e-6 at 384²). Without ``--quick`` the JSON is also written to
``benchmarks/results/evaluate_throughput.json``. Run it alone: the load average is recorded.

Usage::

    python benchmarks/evaluate_throughput.py [--n-pairs 1000] [--size 384] [--quick]
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
from py_sod_metrics import MAE, Emeasure, FmeasureHandler, FmeasureV2, Smeasure, WeightedFmeasure

from densecal.atomic import atomic_write_text
from densecal.evaluation import EvaluationOptions
from densecal.evaluation.folders import evaluate_prediction_folder

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


def baseline(pred_dir: Path, gt_dir: Path, n_bins: int = 10) -> dict[str, float]:
    """The loop a pysodmetrics user writes: every measure in one process, one pair at a time."""
    fm_handler = FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)
    fm = FmeasureV2({"fm": fm_handler})
    em, sm, wfm, mae = Emeasure(), Smeasure(alpha=0.5), WeightedFmeasure(), MAE()
    count = np.zeros(n_bins, np.int64)
    conf_sum = np.zeros(n_bins)
    correct = np.zeros(n_bins, np.int64)
    for path in sorted(pred_dir.glob("*.png")):
        q = np.asarray(Image.open(path), np.float64) / 255.0
        g = np.asarray(Image.open(gt_dir / path.name), np.float64) / 255.0 >= 0.5
        for metric in (fm, em, wfm):
            metric.step(q, g, normalize=False)
        mae.step(q, g, normalize=False)
        sm.step(q, g, normalize=False)
        conf = np.maximum(q, 1.0 - q).ravel()
        hit = ((q >= 0.5) == g).ravel()
        bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
        count += np.bincount(bins, minlength=n_bins)
        conf_sum += np.bincount(bins, conf, minlength=n_bins)
        correct += np.bincount(bins, hit, minlength=n_bins).astype(np.int64)
    f = fm.get_results()["fm"]
    e = em.get_results()["em"]
    seen = count > 0
    ece = float(np.sum(np.abs(conf_sum[seen] - correct[seen])) / count.sum())
    return {"ece": ece, "mae": float(mae.get_results()["mae"]),
            "max_f": float(f["dynamic"].max()), "mean_f": float(f["dynamic"].mean()),
            "adaptive_f": float(f["adaptive"]), "max_e": float(e["curve"].max()),
            "mean_e": float(e["curve"].mean()), "s_measure": float(sm.get_results()["sm"]),
            "weighted_f": float(wfm.get_results()["wfm"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pairs", type=int, default=1000)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--quick", action="store_true", help="print only, write no result")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    runs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir, gt_dir = write_pairs(Path(tmp), args.n_pairs, args.size)
        start = time.perf_counter()
        reference = baseline(pred_dir, gt_dir)
        runs["baseline (one process)"] = {"seconds": time.perf_counter() - start}
        results = {}
        for measures in ("all", "calibration"):
            for workers in (0, 1, 2):
                options = EvaluationOptions(measures=measures)
                start = time.perf_counter()
                ev = evaluate_prediction_folder(pred_dir, gt_dir, options,
                                                num_workers=workers)["test"]
                key = f"densecal {measures}, {workers} workers"
                runs[key] = {"seconds": time.perf_counter() - start}
                results[key] = ev.result
    n = args.n_pairs
    base = runs["baseline (one process)"]["seconds"]
    for run in runs.values():
        run["images_per_second"] = round(n / run["seconds"], 2)
        run["speedup_over_baseline"] = round(base / run["seconds"], 2)
        run["seconds"] = round(run["seconds"], 3)
    full = results["densecal all, 0 workers"]
    ours = {"ece": full["calibration"]["ece"], **full["segmentation"]}
    diffs = {k: abs(ours[k] - v) for k, v in reference.items()}
    same_across_workers = all(json.dumps(r, sort_keys=True) == json.dumps(results[
        f"densecal {k.split(',')[0].split()[1]}, 0 workers"], sort_keys=True)
        for k, r in results.items())
    result = {
        "n_pairs": n, "size": args.size,
        "predictions": "8-bit PNG, scored as uint8 levels; soft masks binarised at 0.5",
        "runs": runs,
        "largest_difference_to_baseline": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        "numbers_identical_across_worker_counts": same_across_workers,
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
