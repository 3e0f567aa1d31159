"""Over-MAP on the fine-grained demo: does accuracy rise with overlap, does it add to max-softmax?

Run: ``OMP_NUM_THREADS=1 python benchmarks/overmap.py [--work DIR] [--seed 0] [--quick --out DIR]``.
Prints ONE JSON object on stdout and writes it atomically to ``benchmarks/results/overmap.json``
(with ``--quick``: tiny sizes, 1 epoch, written only to ``OUT/overmap.json``). Expected time of
the full run (4,000 training scenes, 15 classifier epochs): 31 minutes measured on a 2-core CPU
with ``OMP_NUM_THREADS=1`` under a load average of about 5 (classifier training dominates).

Everything goes through the public CLI (METHODS.md section 6, issue 8):

1. data: ``densecal data finegrained --out WORK/data`` (shirt / T-shirt / pullover / coat on
   textures, 4,000 / 200 / 600 scenes of 48 px; 10 % of the TRAINING images misleading: wrong
   label, tiny garment or no garment, listed in ``train/manifest.csv``; val and test clean);
2. classifier: ``densecal train --method classifier --model resnet-tiny`` on ``train`` with
   ``val`` for validation;
3. segmenter (the object masks, independent of the classifier): ``densecal train --method bce
   --model unet-small`` on the same training images and their garment masks (no class labels);
   ``--gt-masks`` uses the ground-truth masks instead;
4. ``densecal overmap --segmenter SEG`` on ``test`` (accuracy per overlap bin, AUROC of
   misclassification detection and AURC for Over-MAP = Grad-CAM attention mass inside the mask,
   max-softmax (MSP) and their product) and on ``train`` (audit: images ranked by overlap under
   their LABEL; precision at k = number of injected misleading images).

Evidence of the two claims, both computed from the test split's ``per_image.csv``:

- ``accuracy_rises_with_overlap``: Spearman correlation of bin accuracy with bin lower edge over
  the bins holding >= ``--min-bin-count`` images; true when it is positive and the last such bin
  is more accurate than the first;
- ``overmap_adds_to_msp``: combined AUROC > MSP AUROC and combined AURC < MSP AURC, with a paired
  bootstrap over test images (95 % intervals of both differences and the fraction of resamples
  in which both hold).

Resumable: the data folder is reused when its ``setup.json`` matches, and a run folder with a
checkpoint is continued with ``densecal train --resume`` (a finished run returns at once).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from densecal.atomic import atomic_write_text
from densecal.cli.main import main as densecal_cli
from densecal.errors import input_error
from densecal.overmap.evaluation import aurc, combine_confidence, misclassification_auroc

RESULT = Path(__file__).resolve().parent / "results" / "overmap.json"
SCORE = "attention_mass"

FULL = {"n_train": 4000, "n_val": 200, "n_test": 600, "size": 48, "misleading": 0.1,
        "epochs": 15, "seg_epochs": 3, "batch_size": 32, "bootstrap": 1000}
QUICK = {"n_train": 40, "n_val": 8, "n_test": 40, "size": 32, "misleading": 0.1,
         "epochs": 1, "seg_epochs": 1, "batch_size": 8, "bootstrap": 50}


def run_cli(args: list[str]) -> None:
    """Run ``densecal ARGS`` in this process, its console output sent to stderr."""
    print("$ densecal " + " ".join(args), file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):
        densecal_cli(args)


def make_data(root: Path, sizes: dict[str, Any], seed: int) -> Path:
    """Write (or reuse) the fine-grained dataset under ``root``; returns ``root``.

    ``sizes`` holds ``n_train``, ``n_val``, ``n_test``, ``size``, ``misleading`` and optionally
    ``classes`` and ``n_seg`` (the options of ``densecal data finegrained``)."""
    optional = [key for key in ("classes", "n_seg") if key in sizes]
    stamp = {key: sizes[key] for key in ("n_train", "n_val", "n_test", "size", "misleading",
                                         *optional)}
    stamp["seed"] = seed
    setup = root / "setup.json"
    splits = ("train", "val", "test", *(["seg"] if sizes.get("n_seg") else []))
    if setup.is_file() and all((root / s / "manifest.csv").is_file() for s in splits):
        if json.loads(setup.read_text()) != stamp:
            raise input_error(root, "holds a dataset of another setup; choose another --work")
        return root
    run_cli(["data", "finegrained", "--out", str(root), "--seed", str(seed),
             "--size", str(sizes["size"]), "--n-train", str(sizes["n_train"]),
             "--n-val", str(sizes["n_val"]), "--n-test", str(sizes["n_test"]),
             "--misleading", str(sizes["misleading"]),
             *[arg for key in optional for arg in (f"--{key.replace('_', '-')}",
                                                    str(sizes[key]))]])
    atomic_write_text(setup, json.dumps(stamp))
    return root


def train(run: Path, args: list[str]) -> Path:
    """``densecal train ARGS --out RUN``, continued with ``--resume`` when RUN has a checkpoint."""
    ckpt = run / "checkpoints" / "last.ckpt"
    run_cli(["train", *args, "--out", str(run), *(["--resume"] if ckpt.is_file() else [])])
    return ckpt


def read_per_image(path: Path) -> dict[str, np.ndarray]:
    """``correct``, ``msp`` and the Over-MAP score of each image from ``per_image.csv``."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"correct": np.array([int(r["correct"]) for r in rows], bool),
            "msp": np.array([float(r["msp"]) for r in rows]),
            "overmap": np.array([float(r[SCORE]) for r in rows])}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def rise_evidence(bins: list[list[Any]], min_count: int) -> dict[str, Any]:
    """Spearman of bin accuracy vs bin lower edge over bins with ``>= min_count`` images.

    Args:
        bins: ``[[lower edge, count, accuracy or None], ...]`` (``metrics.json``).
        min_count: smallest bin used.

    Returns:
        ``{"rises", "spearman_rho", "spearman_p", "bins_used", "first_bin", "last_bin", ...}``;
        ``rises`` is false when fewer than two bins qualify.
    """
    used = [b for b in bins if b[1] >= min_count]
    evidence: dict[str, Any] = {"min_bin_count": min_count, "bins_used": len(used),
                                "spearman_rho": None, "spearman_p": None,
                                "first_bin": used[0] if used else None,
                                "last_bin": used[-1] if used else None}
    if len(used) < 2:
        return {"rises": False, **evidence, "note": "fewer than two bins qualify"}
    rho, p = spearmanr([b[0] for b in used], [b[2] for b in used])
    evidence["spearman_rho"], evidence["spearman_p"] = _finite(rho), _finite(p)
    rises = bool(np.isfinite(rho) and rho > 0 and used[-1][2] > used[0][2])
    return {"rises": rises, **evidence}


def adds_evidence(test: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, Any]:
    """Combined (OM * MSP) vs MSP: point estimates and a paired bootstrap over images.

    Returns:
        ``{"adds", "auroc_gain", "aurc_reduction", "bootstrap": {...}}``; gains are combined
        minus MSP for AUROC and MSP minus combined for AURC (positive = Over-MAP helps).
    """
    correct, msp = test["correct"], test["msp"]
    combined = combine_confidence(test["overmap"], msp)

    def gains(idx: np.ndarray) -> tuple[float, float]:
        c = correct[idx]
        return (misclassification_auroc(combined[idx], c) - misclassification_auroc(msp[idx], c),
                aurc(msp[idx], c) - aurc(combined[idx], c))

    auroc_gain, aurc_reduction = gains(np.arange(correct.size))
    rng = np.random.default_rng(seed)
    draws = np.array([gains(rng.integers(0, correct.size, correct.size))
                      for _ in range(n_boot)])
    draws = draws[np.isfinite(draws).all(1)]
    both = float(((draws[:, 0] > 0) & (draws[:, 1] > 0)).mean()) if len(draws) else None
    ci = {name: [float(q) for q in np.quantile(draws[:, j], [0.025, 0.975])]
          if len(draws) else None for j, name in enumerate(("auroc_gain", "aurc_reduction"))}
    return {"adds": bool(auroc_gain > 0 and aurc_reduction > 0),
            "auroc_gain": _finite(auroc_gain), "aurc_reduction": _finite(aurc_reduction),
            "bootstrap": {"resamples": len(draws), "ci95": ci,
                          "fraction_both_improve": both}}


def audit_details(audit_csv: Path, k: int, n_train: int, n_misleading: int) -> dict[str, Any]:
    """How many of each misleading kind the audit's ``k`` lowest-overlap images contain."""
    with audit_csv.open(newline="", encoding="utf-8") as f:
        top = list(csv.DictReader(f))[:k]
    found: dict[str, int] = {}
    for row in top:
        if row["misleading"]:
            found[row["misleading"]] = found.get(row["misleading"], 0) + 1
    return {"chance_precision": n_misleading / n_train, "found_by_reason": found}


def count_reasons(manifest: Path) -> dict[str, int]:
    """``{reason: count}`` of the misleading images in a ``manifest.csv``."""
    with manifest.open(newline="", encoding="utf-8") as f:
        reasons = [r["reason"] for r in csv.DictReader(f) if r["reason"]]
    return {r: reasons.count(r) for r in sorted(set(reasons))}


def mask_quality(predicted: list[np.ndarray], truth: list[np.ndarray], kinds: list[str]
                 ) -> dict[str, dict[str, float | int]]:
    """Segmenter IoU and empty-mask rate by kind of image.

    Args:
        predicted: ``(H, W)`` bool masks from the segmenter.
        truth: ``(H, W)`` bool ground-truth masks.
        kinds: kind of each image.

    Returns:
        ``{kind: {"n", "iou", "empty_rate", "area"}}``: mean IoU (two empty masks: 1), share of
        predicted masks with no pixel, mean predicted area as a fraction of the image.
    """
    rows: dict[str, list[tuple[float, bool, float]]] = {}
    for p, t, kind in zip(predicted, truth, kinds, strict=True):
        union = (p | t).sum()
        iou = float((p & t).sum() / union) if union else 1.0
        rows.setdefault(kind, []).append((iou, not p.any(), float(p.mean())))
    return {kind: {"n": len(r), "iou": float(np.mean([x[0] for x in r])),
                   "empty_rate": float(np.mean([x[1] for x in r])),
                   "area": float(np.mean([x[2] for x in r]))}
            for kind, r in sorted(rows.items())}


def mask_iou(segmenter: Path, split: Path) -> float:
    """Mean IoU of the segmenter's masks with the ground-truth masks over a split's images."""
    from densecal.apps.overmap import masks_from_segmenter
    from densecal.data.readers import read_image
    from densecal.overmap import masks_from_folder

    paths = sorted((split / "images").glob("*.png"))
    pred = masks_from_segmenter(segmenter, [read_image(p) for p in paths])
    truth = masks_from_folder(split / "masks", [p.stem for p in paths])
    return float(mask_quality(pred, truth, ["all"] * len(paths))["all"]["iou"])


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "device": "cpu", "threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and 1 epoch (a smoke test); writes only under --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of overmap.json (default benchmarks/results; required "
                             "with --quick) and of the work folder")
    parser.add_argument("--work", type=Path, default=None,
                        help="data, runs and overmap outputs (default OUT/work, else "
                             "benchmarks/runs/overmap); reused when rerun")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--epochs", type=int, default=None, help="classifier epochs")
    parser.add_argument("--gt-masks", action="store_true",
                        help="ground-truth masks instead of a trained segmenter")
    parser.add_argument("--min-bin-count", type=int, default=None,
                        help="smallest overlap bin in the Spearman test (default 10; quick 1)")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out")
    sizes = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        sizes["epochs"] = args.epochs
    min_count = args.min_bin_count or (1 if args.quick else 10)
    work = args.work or (args.out / "work" if args.out is not None
                         else Path(__file__).resolve().parent / "runs" / "overmap")
    machine = machine_info()
    start = time.perf_counter()

    data = make_data(work / "data", sizes, args.seed)
    common = ["--data", str(data / "train"), "--val-data", str(data / "val"),
              "--image-size", str(sizes["size"]), "--batch-size", str(sizes["batch_size"]),
              "--seed", str(args.seed)]
    classifier = train(work / "classifier", ["--method", "classifier", "--model", "resnet-tiny",
                                             "--epochs", str(sizes["epochs"]), *common])
    if args.gt_masks:
        mask_args, segmenter = [], None
    else:
        segmenter = train(work / "segmenter", ["--method", "bce", "--model", "unet-small",
                                               "--epochs", str(sizes["seg_epochs"]), *common])
        mask_args = ["--segmenter", str(segmenter)]
    outputs = {}
    for split in ("test", "train"):
        outputs[split] = work / f"overmap_{split}"
        run_cli(["overmap", "--classifier", str(classifier), "--data", str(data / split),
                 "--out", str(outputs[split]), "--score", SCORE, *mask_args])
    test_metrics = json.loads((outputs["test"] / "metrics.json").read_text())
    train_metrics = json.loads((outputs["train"] / "metrics.json").read_text())

    reasons = count_reasons(data / "train" / "manifest.csv")
    n_misleading = sum(reasons.values())
    audit = train_metrics["audit_precision_at_k"]
    if audit is None or audit["k"] != n_misleading:
        raise RuntimeError(f"audit {audit} does not cover the {n_misleading} misleading images")
    audit.update(audit_details(outputs["train"] / "audit.csv", audit["k"],
                               train_metrics["n_images"], n_misleading))
    per_image = read_per_image(outputs["test"] / "per_image.csv")
    rise = rise_evidence(test_metrics["accuracy_by_overlap_bin"], min_count)
    adds = adds_evidence(per_image, sizes["bootstrap"], args.seed)
    setup = {
        "data": {"dataset": "densecal data finegrained", "seed": args.seed,
                 "classes": (data / "train" / "classes.txt").read_text().split("\n")[:-1],
                 **{k: sizes[k] for k in ("n_train", "n_val", "n_test", "size")},
                 "misleading_train_images": reasons},
        "classifier": {"model": "resnet-tiny", "epochs": sizes["epochs"],
                       "image_size": sizes["size"], "batch_size": sizes["batch_size"]},
        "masks": ("ground truth (DATA/SPLIT/masks)" if segmenter is None else
                  f"densecal train --method bce --model unet-small, {sizes['seg_epochs']} "
                  f"epochs on the training images' garment masks, threshold 0.5"),
        "overmap_score": f"{SCORE} (sum(H*M)/sum(H), H = Grad-CAM of the predicted class)",
        "combined": "overmap * msp",
        "audit": "train split ranked by attention mass under the LABEL's Grad-CAM, lowest first",
        "quick": args.quick,
    }
    if segmenter is not None:
        setup["segmenter_test_mask_iou"] = mask_iou(segmenter, data / "test")
    machine["wall_seconds"] = round(time.perf_counter() - start, 1)
    result = {
        "benchmark": "overmap",
        "setup": setup,
        "machine": machine,
        "test_accuracy": test_metrics["accuracy"],
        "accuracy_by_overlap_bin": test_metrics["accuracy_by_overlap_bin"],
        "auroc": test_metrics["auroc"],
        "aurc": test_metrics["aurc"],
        "audit_precision_at_k": audit,
        "accuracy_rises_with_overlap": rise.pop("rises"),
        "accuracy_rises_with_overlap_evidence": rise,
        "overmap_adds_to_msp": adds.pop("adds"),
        "overmap_adds_to_msp_evidence": adds,
    }
    text = json.dumps(result, indent=2)
    target = RESULT if args.out is None else args.out / "overmap.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
