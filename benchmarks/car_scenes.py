"""CAR on garment scenes, tested as its authors did: (a) G follows an exact F, (b) F is calibrated.

Run: ``OMP_NUM_THREADS=1 python benchmarks/car_scenes.py [--out DIR] [--n-test 1000]
[--samples 32] [--epochs 40] [--calibration-epochs 30] [--quick]``. Prints ONE JSON object and,
unless ``--quick``, writes ``results/car_scenes.json`` and ``results/car_scenes.md``.

Data: ``densecal data ambiguous`` (48 px scenes of one to three garments of the five flippable
classes; base masks, so training redraws the whole-class flips at every load, as CARSSS's
``ClassFlip``); ``--n-train`` / ``--n-val`` / ``--n-test`` scenes.

(a) *G follows F*: CAR (``densecal train --method car``) with the exact calibration as its F
(``car.oracle``: ``(1 - p) onehot(c) + p onehot(twin)`` on the base maps), so the whole budget
goes to G; the ablation sets ``car.cal_weight=0``. Both use the residual G, densecal's small
discriminator (``car.discriminator=small``, the default) and the discriminator schedule of
``benchmarks/car_ambiguity.py`` (``SCHEDULE``). ``--samples``
samples per test image, pooled over every pixel of the class in the test set as the CARSSS
evaluation pools: per class, the *argmax share* (samples labelling the pixel with the twin,
over all (sample, pixel) pairs of the class) and the *soft share* (the samples' mean twin
probability there; a sampler that has not sharpened shows a soft share near p with an argmax
share far from it), ``g_minus_f = |argmax share - p|`` (F's share is p exactly) with a 95 %
bootstrap interval over test images, ``sharp_share`` (pairs whose largest class
probability exceeds 0.98), and the argmax ``class_share`` and ``background_share`` of the same
pairs (with the twin share they show a sampler that erases the object instead of choosing a
mode).
(b) *F is calibrated*: F trained with pixel CE on the redrawn flips (``densecal train
--method ce``); per class its pooled twin probability over the class's test pixels,
``f_minus_p`` with a bootstrap interval, split into F's mass on the class or its twin there
(``f_pair_mass``) and the twin's share of that mass (``f_conditional_share``,
``f_conditional_minus_p``: the flip calibration alone).
GED (squared, mode terms weighted by probability), HM-IoU and diversity of CAR's and the
ablation's argmax samples on the same test scenes (mean over images).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from car_ambiguity import ROOT, SCHEDULE, _cli, _train, emit, machine_info, quota_tiling

from densecal.atomic import atomic_write_text
from densecal.data.pairs import find_pairs
from densecal.data.readers import read_image, read_label
from densecal.data.synthetic.ambiguity import AmbiguitySpec, enumerate_modes
from densecal.data.transforms import image_to_tensor
from densecal.methods.car.sampling import load_car, sample_car
from densecal.metrics.functional.stochastic import (
    generalized_energy_distance,
    hungarian_matched_iou,
    sample_diversity,
)

VARIANTS: dict[str, list[str]] = {"car": [], "no_cal": ["--set", "car.cal_weight=0"]}
SHARP = 0.98


def pooled_ci(numerators: np.ndarray, denominators: np.ndarray, target: float,
              resamples: int = 2000, seed: int = 0) -> tuple[float, list[float]]:
    """``|sum num / sum den - target|`` and its 95 % percentile interval over images resampled
    with replacement (rows of ``numerators`` / ``denominators`` are images).

    Example:
        >>> pooled_ci(np.array([1.0, 1.0]), np.array([2.0, 2.0]), 0.5)[0]
        0.0
    """
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(numerators), (resamples, len(numerators)))
    ratios = numerators[picks].sum(1) / np.maximum(denominators[picks].sum(1), 1e-300)
    errors = np.abs(ratios - target)
    point = abs(float(numerators.sum() / denominators.sum()) - target)
    return point, [float(v) for v in np.percentile(errors, [2.5, 97.5])]


def score_samples(probs: torch.Tensor, base: np.ndarray, spec: AmbiguitySpec
                  ) -> dict[str, Any]:
    """Pooling sums and set metrics of one image's ``(n, K, H, W)`` sample probabilities."""
    labels = probs.argmax(1)  # (n, H, W)
    base_t = torch.from_numpy(base.astype(np.int64))
    sums: dict[int, tuple[float, ...]] = {}
    for cls, (twin, _) in spec.flips.items():
        where = base_t == cls
        if not bool(where.any()):
            continue
        pairs = float(where.sum()) * probs.shape[0]
        argmax_twin = float((labels[:, where] == twin).sum())
        soft_twin = float(probs[:, twin][:, where].sum())
        sharp = float((probs.max(1).values[:, where] > SHARP).sum())
        argmax_class = float((labels[:, where] == cls).sum())
        argmax_background = float((labels[:, where] == 0).sum())
        sums[cls] = (argmax_twin, soft_twin, sharp, pairs, argmax_class, argmax_background)
    modes = enumerate_modes(base, spec)
    y = torch.from_numpy(np.stack([m for m, _ in modes]).astype(np.int64))
    weights = torch.tensor([p for _, p in modes], dtype=torch.float64)
    return {"sums": sums, "ged": float(generalized_energy_distance(labels, y, weights)),
            "hm_iou": float(hungarian_matched_iou(
                labels, y[torch.from_numpy(quota_tiling(weights.numpy(), len(labels)))])),
            "diversity": float(sample_diversity(labels))}


def evaluate_generator(ckpt: Path, test: Path, spec: AmbiguitySpec, n: int, seed: int
                       ) -> dict[str, Any]:
    """Experiment (a) for one trained generator (oracle F): per class shares and intervals."""
    module = load_car(ckpt).eval()
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for pair in find_pairs(test):
        image = image_to_tensor(read_image(pair.image))
        base = read_label(pair.mask)
        _, probs = sample_car(module, image, n, generator=generator,
                              base=torch.from_numpy(base.astype(np.int64)))
        rows.append(score_samples(probs, base, spec))
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in rows]))
                           for k in ("ged", "hm_iou", "diversity")}
    out["per_class"] = {}
    for cls, (_, p) in spec.flips.items():
        present = np.array([r["sums"][cls] for r in rows if cls in r["sums"]])
        if not len(present):
            continue
        error, ci = pooled_ci(present[:, 0], present[:, 3], p)
        out["per_class"][str(cls)] = {
            "images": len(present), "p": p, "g_minus_f": error, "g_minus_f_ci95": ci,
            "argmax_share": float(present[:, 0].sum() / present[:, 3].sum()),
            "soft_share": float(present[:, 1].sum() / present[:, 3].sum()),
            "sharp_share": float(present[:, 2].sum() / present[:, 3].sum()),
            "class_share": float(present[:, 4].sum() / present[:, 3].sum()),
            "background_share": float(present[:, 5].sum() / present[:, 3].sum())}
    out["test_images"] = len(rows)
    return out


@torch.no_grad()
def evaluate_calibration_net(ckpt: Path, test: Path, spec: AmbiguitySpec) -> dict[str, Any]:
    """Experiment (b): F's pooled twin probability over each class's test pixels.

    ``f_share`` is F's twin probability per pixel of the class (the strict test: a calibrated F
    gives ``p`` there). It is the product of two things, reported apart: ``f_pair_mass``, F's
    probability of the class or its twin there (below 1 when F confuses the garment with another
    class or with the background), and ``f_conditional_share``, twin over class-or-twin
    probability (the flip calibration alone; ``f_conditional_minus_p`` with its interval).
    """
    from densecal.methods.segmentation.inference import load_module

    module = load_module(ckpt).eval()
    sums: dict[int, list[tuple[float, float, float]]] = {c: [] for c in spec.flips}
    for pair in find_pairs(test):
        probs = torch.softmax(module(image_to_tensor(read_image(pair.image))[None]), 1)[0]
        base = torch.from_numpy(read_label(pair.mask).astype(np.int64))
        for cls, (twin, _) in spec.flips.items():
            where = base == cls
            if bool(where.any()):
                sums[cls].append((float(probs[twin][where].sum()), float(where.sum()),
                                  float((probs[cls] + probs[twin])[where].sum())))
    out = {}
    for cls, (_, p) in spec.flips.items():
        if not sums[cls]:
            continue
        rows = np.array(sums[cls])
        error, ci = pooled_ci(rows[:, 0], rows[:, 1], p)
        cond_error, cond_ci = pooled_ci(rows[:, 0], rows[:, 2], p)
        out[str(cls)] = {"images": len(rows), "p": p,
                         "f_share": float(rows[:, 0].sum() / rows[:, 1].sum()),
                         "f_minus_p": error, "f_minus_p_ci95": ci,
                         "f_pair_mass": float(rows[:, 2].sum() / rows[:, 1].sum()),
                         "f_conditional_share": float(rows[:, 0].sum() / rows[:, 2].sum()),
                         "f_conditional_minus_p": cond_error,
                         "f_conditional_minus_p_ci95": cond_ci}
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["(b) F trained with pixel CE on redrawn flips, pooled over each class's test "
             "pixels: its twin probability (F share), its probability of the class or the twin "
             "(pair mass) and twin over class-or-twin (conditional).", "",
             "| class | p | F share | abs(F - p) (95 % CI) | pair mass | conditional share | "
             "abs(conditional - p) (95 % CI) |", "|---|---|---|---|---|---|---|"]
    for cls, f in result["calibration_net"].items():
        lines.append(
            f"| {cls} | {f['p']:.3f} | {f['f_share']:.3f} | {f['f_minus_p']:.3f} "
            f"({f['f_minus_p_ci95'][0]:.3f}, {f['f_minus_p_ci95'][1]:.3f}) | "
            f"{f['f_pair_mass']:.3f} | {f['f_conditional_share']:.3f} | "
            f"{f['f_conditional_minus_p']:.3f} ({f['f_conditional_minus_p_ci95'][0]:.3f}, "
            f"{f['f_conditional_minus_p_ci95'][1]:.3f}) |")
    lines += ["", "(a) G on the exact F (F's share is p), 32 samples per scene pooled over each "
                  "class's test pixels.", "",
              "| class | p | CAR argmax / soft share | CAR abs(G - F) (95 % CI) | CAR sharp | "
              "no-L_cal argmax / soft | no-L_cal abs(G - F) (95 % CI) |",
              "|---|---|---|---|---|---|---|"]
    shares = ["", "Argmax labels of the class's pixels over all samples (class / twin / "
                  "background):", "", "| class | CAR | no-L_cal |", "|---|---|---|"]
    for cls, f in result["calibration_net"].items():
        cells = [cls, f"{f['p']:.3f}"]
        for variant in ("car", "no_cal"):
            g = result[variant]["per_class"].get(cls)
            if g is None:
                cells += ["", ""] + ([""] if variant == "car" else [])
                continue
            cells.append(f"{g['argmax_share']:.3f} / {g['soft_share']:.3f}")
            cells.append(f"{g['g_minus_f']:.3f} ({g['g_minus_f_ci95'][0]:.3f}, "
                         f"{g['g_minus_f_ci95'][1]:.3f})")
            if variant == "car":
                cells.append(f"{g['sharp_share']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
        shares.append(f"| {cls} | " + " | ".join(
            "{class_share:.3f} / {argmax_share:.3f} / {background_share:.3f}".format(
                **result[v]["per_class"][cls]) if cls in result[v]["per_class"] else ""
            for v in ("car", "no_cal")) + " |")
    lines += shares
    lines += ["", "| variant | GED | HM-IoU | diversity |", "|---|---|---|---|"]
    for variant in VARIANTS:
        r = result[variant]
        lines.append(f"| {variant} | {r['ged']:.3f} | {r['hm_iou']:.3f} | {r['diversity']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder (default runs/bench/car_scenes)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40, help="CAR (generator) epochs")
    parser.add_argument("--calibration-epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.quick:
        if args.out is None:
            parser.error("--quick needs --out")
        args.epochs = args.calibration_epochs = 1
        args.n_train, args.n_val, args.n_test, args.samples, args.size = 8, 2, 4, 4, 32
        args.batch_size = 4
    work = args.out or ROOT.parent / "runs" / "bench" / "car_scenes"
    info, start = machine_info(), time.perf_counter()
    data = work / "data"
    if not (data / "ambiguity.json").is_file():
        _cli("data", "ambiguous", "--out", data, "--seed", 0, "--size", args.size,
             "--n-train", args.n_train, "--n-val", args.n_val, "--n-test", args.n_test)
    spec = AmbiguitySpec.from_dict(json.loads((data / "ambiguity.json").read_text()))
    common = ["--num-classes", 16, "--data", data / "train", "--val-data", data / "val",
              "--batch-size", args.batch_size, "--image-size", args.size, "--seed", args.seed]
    f_ckpt = _train(work / "calibration", "--method", "ce", "--model", "unet-small",
                    "--epochs", args.calibration_epochs, *common)
    result: dict[str, Any] = {"benchmark": "car_scenes",
                              "calibration_net": evaluate_calibration_net(f_ckpt, data / "test",
                                                                          spec)}
    for variant, extra in VARIANTS.items():
        ckpt = _train(work / variant, "--method", "car", "--epochs", args.epochs,
                      "--no-augment", "--set", "car.oracle=true", *SCHEDULE, *extra, *common)
        result[variant] = evaluate_generator(ckpt, data / "test", spec, args.samples, args.seed)
    result["setup"] = {k: v for k, v in vars(args).items() if k != "out"}
    result["setup"].update(shared_options=" ".join(SCHEDULE), sharp_threshold=SHARP,
                           oracle="car.oracle=true: F = (1 - p) onehot(c) + p onehot(twin)")
    result["machine"] = {**info, "seconds": round(time.perf_counter() - start, 1)}
    folder = work if args.quick else ROOT / "results"
    atomic_write_text(
        folder / "car_scenes.md",
        "# CAR on garment scenes: G against an exact F, F against p\n\nCommand: "
        f"`OMP_NUM_THREADS=1 python benchmarks/car_scenes.py` (wall time of this invocation "
        f"{result['machine']['seconds']} s: runs finished by an earlier one are reused; "
        f"{result['car']['test_images']} test scenes, "
        f"{args.samples} samples each).\n\n" + table(result))
    emit(result, "car_scenes", args.quick, folder)
    return result


if __name__ == "__main__":
    main()
