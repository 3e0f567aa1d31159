"""CAR vs its no-L_cal ablation on garment scenes with injected label ambiguity (issue 6).

Run: ``python benchmarks/car_ambiguity.py [--quick] [--out DIR] [--seeds 1] [--epochs 24]
[--calibration-epochs 30] [--size 48] [--variants car,no_cal]``. Prints ONE JSON object on
stdout and, unless ``--quick``, writes it atomically to ``benchmarks/results/car_ambiguity.json``.
``--variants car`` / ``--variants no_cal`` train one variant only and print no table, so the two
can run as parallel processes on the same ``--out``; a final call without it reuses both.

``results/car_ambiguity.json`` predates issue 19: it was made with densecal 0.1's data, whose
training masks were flipped once when written (today's ``densecal data ambiguous
--frozen-flips``); the default data now redraw the flips at every load.

Data (``densecal data ambiguous``, seed 0): scenes of one to three garments of the five flippable
classes (T-shirt/top, Trouser, Coat, Sneaker, Bag) on textures, ``size x size`` pixels, 1500
train / 100 val / 100 test. In train and val masks each of the five classes is relabelled as a
whole to a twin class with p = 8/17, 7/17, 6/17, 5/17, 4/17 (Kassapis et al., ICCV 2021, 4.2,
in miniature; METHODS.md 4); test masks keep the base labels and every test image is scored
against all ``2^k`` modes of its ``k`` flippable classes present, with their probabilities
(``densecal.data.synthetic.ambiguity.enumerate_modes``).

Models: the calibration net F (unet-small, ``densecal train --method ce --num-classes 16`` on
the flipped masks, ``--calibration-epochs``) is trained once per seed and frozen
(``--set car.calibration_checkpoint=F``) in both variants, so they differ in the generator's
loss only: CAR (``densecal train --method car``, ``lambda_cal = 5``, ``lambda_adv = 10``,
M = 5 samples per step) and the ablation ``--set car.cal_weight=0`` ("no_cal"), both with the
same seed, data, epochs and U-Net G, and both with :data:`SCHEDULE`: the residual G
(``car.residual=true``) and D at lr 1e-4, trained 125 of every 250 steps (CARSSS: 1e-5 and 50,
for runs a hundred times longer).
``densecal sample --n 16 --labels`` draws 16 samples per test image (latent seed = training
seed).

Measured per test image, then averaged over test images (d = 1 - IoU, mean IoU over the
foreground classes present in either map: ``densecal.metrics.stochastic``):

- ``ged``: D^2_GED of the 16 samples against all modes, mode terms weighted by probability;
- ``hm_iou``: Hungarian-matched IoU of the 16 samples against 16 mode slots. Since the number
  of modes M (2^k, 1..32) rarely divides N = 16, the slots are allotted to modes in proportion to
  their probabilities by the largest-remainder rule (``floor(16 p_j)`` each, the rest to the
  largest remainders, ties to the earlier mode): the tiled set is the 16-point quota
  approximation of the mode distribution, exact tiling when the M modes are equally likely and
  M divides 16. ``hm_iou_cyclic`` is the plain cyclic tiling ``modes[j % M]`` (probabilities
  ignored, ``hungarian_matched_iou``'s own rule) for reference;
- ``diversity``: E[d(S, S')] over the 16 x 16 sample pairs;
- ``flip_frequency``: per flippable class, how often the samples choose the twin when they
  choose between the class and its twin: over the class's pixels and the 16 samples, the
  twin readings over the class-or-twin readings (``flip_frequencies(conditional=True)``),
  averaged over the test images that contain the class; ``flip_frequency_error`` is
  ``|flip_frequency - p|`` (target <= 0.05 each); ``flip_frequency_ci95`` is the 95 %
  bootstrap interval of ``flip_frequency`` over the test images (2,000 resamples): with 100
  test scenes it is about +-0.05 wide, as wide as the target. Readings of another class or
  background are segmentation errors, not a flip choice, and are left out; they are counted in
  ``flip_frequency_unconditional`` (the share of all the class's pixel readings that are the
  twin, ``_error_unconditional`` its error), which also falls when F misses garment pixels.
  ``flip_frequency_error_per_image`` averages the per-image unconditional errors: with 16
  whole-class Bernoulli draws per image it has a noise floor of about
  ``0.8 sqrt(p (1 - p) / 16)`` = 0.08-0.10 even for a perfect sampler, so it is reported, not
  judged. ``f_flip_probability`` is F's twin share on the class's pixels (twin probability
  over class-or-twin probability, summed over the pixels): the marginal that L_cal makes the
  samples follow, so ``f_flip_error`` is the floor CAR's error can reach with this F.

With ``--seeds S > 1`` each model is trained with seeds 0..S-1; the top-level numbers are means
over seeds and ``per_seed`` holds each seed's. Work files (data, runs, samples) go to ``--out``
(default ``runs/bench/car_ambiguity``); finished pieces are reused, so a killed run continues
(training resumes from ``last.ckpt``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from densecal.atomic import atomic_write_text
from densecal.cli.main import main as densecal
from densecal.data.synthetic.ambiguity import AmbiguitySpec, enumerate_modes
from densecal.metrics.functional.stochastic import (
    flip_frequencies,
    generalized_energy_distance,
    hungarian_matched_iou,
    sample_diversity,
)

ROOT = Path(__file__).resolve().parent
VARIANTS: dict[str, list[str]] = {"car": [], "no_cal": ["--set", "car.cal_weight=0"]}
SCHEDULE: list[str] = ["--set", "car.residual=true", "--set", "car.lr_d=1e-4",
                       "--set", "car.d_active=125"]
"""Options shared by both variants: the residual ``G`` (starts at the frozen ``F``; the plain
``G`` collapses to all-background samples there) and a discriminator schedule scaled to a
~1,500-step CPU run (lr 1e-4, active 125 of every 250 steps, instead of CARSSS's 1e-5 and 50,
tuned for 10^5 steps)."""
N_SAMPLES = 16


def machine_info() -> dict[str, Any]:
    """Torch/python versions, threads, CPU count and the 1-minute load average at start."""
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "device": "cpu", "threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    return info


def emit(result: dict[str, Any], name: str, quick: bool, out: Path) -> None:
    """Print ``result`` as JSON; write it to ``results/NAME.json`` (full) or ``OUT/NAME.json``."""
    text = json.dumps(result, indent=2) + "\n"
    print(text, end="")
    atomic_write_text((out if quick else ROOT / "results") / f"{name}.json", text)


def quota_tiling(probabilities: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` mode slots allotted by the largest-remainder rule.

    Mode ``j`` gets ``floor(n p_j)`` slots; the remaining slots go to the largest remainders
    ``n p_j - floor(n p_j)`` (stable: ties to the earlier mode).

    Args:
        probabilities: ``(M,)`` non-negative, summing to 1.
        n: number of slots.

    Returns:
        ``(n,)`` int64 mode indices, sorted.

    Example:
        >>> quota_tiling(np.array([0.5, 0.3, 0.2]), 4).tolist()
        [0, 0, 1, 2]
    """
    quota = np.asarray(probabilities, dtype=np.float64) * n
    counts = np.floor(quota).astype(np.int64)
    rest = n - int(counts.sum())
    counts[np.argsort(-(quota - counts), kind="stable")[:rest]] += 1
    return np.repeat(np.arange(len(counts)), counts)


def score_image(samples: np.ndarray, f_probs: np.ndarray, base: np.ndarray,
                spec: AmbiguitySpec) -> dict[str, Any]:
    """All metrics of one test image.

    Args:
        samples: ``(N, H, W)`` uint8 sampled label maps.
        f_probs: ``(K, H, W)`` F's probabilities.
        base: ``(H, W)`` base (unflipped) label map.
        spec: the ambiguity spec.

    Returns:
        ``{"ged", "hm_iou", "hm_iou_cyclic", "diversity", "flip_frequency": {class: twin
        share among the class and twin readings}, "flip_frequency_unconditional": {class: twin
        share of all readings}, "f_flip_probability": {class: F's twin share}}`` (classes
        present only).
    """
    modes = enumerate_modes(base, spec)
    labels = np.stack([m for m, _ in modes])
    weights = np.array([p for _, p in modes])
    s = torch.from_numpy(samples.astype(np.int64))
    y = torch.from_numpy(labels.astype(np.int64))
    conditional = flip_frequencies(s, base.astype(np.int64), spec.flips, conditional=True)
    unconditional = flip_frequencies(s, base.astype(np.int64), spec.flips)
    f_share = {}
    for c in unconditional:
        pixels = base == c
        twin = float(f_probs[spec.flips[c][0]][pixels].sum())
        both = twin + float(f_probs[c][pixels].sum())
        if both > 0:
            f_share[c] = twin / both
    return {
        "ged": float(generalized_energy_distance(s, y, weights)),
        "hm_iou": float(hungarian_matched_iou(s, y[quota_tiling(weights, len(s))])),
        "hm_iou_cyclic": float(hungarian_matched_iou(s, y)),
        "diversity": float(sample_diversity(s)),
        "flip_frequency": conditional,
        "flip_frequency_unconditional": unconditional,
        "f_flip_probability": f_share,
    }


def bootstrap_ci(values: list[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile interval of the mean of ``values`` over bootstrap resamples (seeded).

    Example:
        >>> bootstrap_ci([0.5, 0.5, 0.5])
        [0.5, 0.5]
    """
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(axis=1)
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


FREQUENCIES = ("flip_frequency", "flip_frequency_unconditional", "f_flip_probability")
ERRORS = {"flip_frequency": "flip_frequency_error",
          "flip_frequency_unconditional": "flip_frequency_error_unconditional",
          "f_flip_probability": "f_flip_error"}
"""Per-class frequencies averaged over the test images, and the names of their errors to p."""


def evaluate(sample_dir: Path, data_dir: Path, spec: AmbiguitySpec) -> dict[str, Any]:
    """Average :func:`score_image` over the test images; per-class values over the images
    containing the class (``None`` for a class in no test image)."""
    scores = []
    for mask in sorted((data_dir / "test" / "masks").glob("*.png")):
        folder = sample_dir / mask.stem
        scores.append(score_image(np.load(folder / "samples.npy"), np.load(folder / "f.npy"),
                                  np.asarray(Image.open(mask)), spec))
    out: dict[str, Any] = {key: float(np.mean([s[key] for s in scores]))
                           for key in ("ged", "hm_iou", "hm_iou_cyclic", "diversity")}
    per_class: dict[str, dict[str, Any]] = {key: {} for key in (
        "images_with_class", *FREQUENCIES, *(ERRORS[name] for name in FREQUENCIES),
        "flip_frequency_error_per_image", "flip_frequency_ci95")}
    for cls, (_, prob) in spec.flips.items():
        key = str(cls)
        present = [s for s in scores if cls in s["flip_frequency_unconditional"]]
        per_class["images_with_class"][key] = len(present)
        values = {name: [s[name][cls] for s in present if cls in s[name]]
                  for name in FREQUENCIES}
        for name, found in values.items():
            mean = float(np.mean(found)) if found else None
            per_class[name][key] = mean
            per_class[ERRORS[name]][key] = None if mean is None else abs(mean - prob)
        unconditional = values["flip_frequency_unconditional"]
        per_class["flip_frequency_error_per_image"][key] = (
            float(np.mean([abs(v - prob) for v in unconditional])) if unconditional else None)
        choices = values["flip_frequency"]
        per_class["flip_frequency_ci95"][key] = bootstrap_ci(choices) if choices else None
    out.update(per_class)
    for name in FREQUENCIES:
        errors = [v for v in per_class[ERRORS[name]].values() if v is not None]
        out[f"{ERRORS[name]}_mean"] = float(np.mean(errors)) if errors else None
    out["test_images"] = len(scores)
    return out


def _cli(*args: object) -> None:
    """Run a ``densecal`` command in-process; its messages go to stderr (stdout is the JSON)."""
    with contextlib.redirect_stdout(sys.stderr):
        densecal([str(a) for a in args])


def prepare_data(work: Path, args: argparse.Namespace) -> Path:
    """Write the ambiguity dataset once (reused when ``ambiguity.json`` is there)."""
    data = work / "data"
    if not (data / "ambiguity.json").is_file():
        _cli("data", "ambiguous", "--out", data, "--seed", 0, "--size", args.size,
             "--n-train", args.n_train, "--n-val", args.n_val, "--n-test", args.n_test)
    return data


def _train(run: Path, *args: object) -> Path:
    """``densecal train ARGS --out RUN``, continued with ``--resume`` when RUN has a checkpoint
    (a finished run returns at once); returns its ``last.ckpt``."""
    ckpt = run / "checkpoints" / "last.ckpt"
    _cli("train", *args, "--out", run, *(["--resume"] if ckpt.is_file() else []))
    return ckpt


def train_calibration_net(work: Path, data: Path, seed: int, args: argparse.Namespace) -> Path:
    """F: unet-small trained with pixel CE on the flipped training masks (shared by both
    variants, so the ablation differs in the generator's loss only)."""
    return _train(work / f"calibration_seed{seed}", "--method", "ce", "--model", "unet-small",
                  "--num-classes", 16, "--data", data / "train", "--val-data", data / "val",
                  "--epochs", args.calibration_epochs, "--batch-size", args.batch_size,
                  "--image-size", args.size, "--seed", seed)


def train_and_sample(work: Path, data: Path, variant: str, seed: int,
                     args: argparse.Namespace, calibration: Path) -> Path:
    """Train (or resume) one model on the frozen ``calibration`` net and draw its test samples
    (reused while the checkpoint is the one they were drawn from)."""
    run, samples = work / f"{variant}_seed{seed}", work / f"{variant}_seed{seed}_samples"
    ckpt = _train(run, "--method", "car", "--num-classes", 16, "--data", data / "train",
                  "--val-data", data / "val", "--epochs", args.epochs, "--batch-size",
                  args.batch_size, "--image-size", args.size, "--seed", seed, "--no-augment",
                  "--set", f"car.calibration_checkpoint={calibration}", *SCHEDULE,
                  *VARIANTS[variant])
    # samples are reused only if drawn from this very checkpoint (a resumed, extended run
    # rewrites last.ckpt, so its fingerprint changes and the samples are drawn again)
    stamp = samples.with_name(samples.name + ".checkpoint")
    fingerprint = f"{ckpt.stat().st_size} {ckpt.stat().st_mtime_ns}"
    if not (stamp.is_file() and stamp.read_text() == fingerprint):
        if samples.is_dir():
            shutil.rmtree(samples)
        _cli("sample", "--checkpoint", ckpt, "--data", data / "test", "--n", N_SAMPLES,
             "--labels", "--seed", seed, "--out", samples)
        stamp.write_text(fingerprint)
    return samples


def _mean_over_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every number over seeds (nested dicts recursed, lists element-wise; None if any
    seed has None)."""
    def mean(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {k: mean([v[k] for v in values]) for k in values[0]}
        if isinstance(values[0], list):
            return [mean(list(column)) for column in zip(*values, strict=True)]
        if any(v is None for v in values):
            return None
        if all(isinstance(v, int) for v in values) and len(set(values)) == 1:
            return values[0]  # counts (test images, images with a class) are seed-independent
        return float(np.mean(values))

    return {k: mean([p[k] for p in per_seed]) for k in per_seed[0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return the JSON object it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and 1 epoch (for tests); writes only under --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder (default runs/bench/car_ambiguity)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=24, help="CAR (generator) epochs")
    parser.add_argument("--calibration-epochs", type=int, default=30,
                        help="epochs of the calibration net F (CE)")
    parser.add_argument("--size", type=int, default=48, help="scene and training side (px)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="train only these (comma-separated) and print no table: for "
                             "running the variants as parallel processes")
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    if not set(args.variants) <= set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    if args.quick:
        if args.out is None:
            parser.error("--quick needs --out")
        args.epochs, args.n_train, args.n_val, args.n_test, args.batch_size = 1, 8, 2, 3, 4
        args.calibration_epochs, args.size = 1, 32
    work = args.out or ROOT.parent / "runs" / "bench" / "car_ambiguity"
    info = machine_info()
    start = time.perf_counter()
    data = prepare_data(work, args)
    spec = AmbiguitySpec.from_dict(json.loads((data / "ambiguity.json").read_text()))
    per_seed: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for seed in range(args.seeds):
        calibration = train_calibration_net(work, data, seed, args)
        for variant in VARIANTS:
            if variant in args.variants:
                samples = train_and_sample(work, data, variant, seed, args, calibration)
                per_seed[variant].append(evaluate(samples, data, spec))
    if set(args.variants) != set(VARIANTS):  # a partial run: the table needs every variant
        print(f"trained {', '.join(args.variants)}; run without --variants for the table",
              file=sys.stderr)
        return {}
    result: dict[str, Any] = {
        "benchmark": "car_ambiguity",
        **{v: {**_mean_over_seeds(per_seed[v]), "per_seed": per_seed[v]} for v in VARIANTS},
        "setup": {
            "quick": args.quick, "seeds": args.seeds, "epochs": args.epochs,
            "calibration_net": (f"unet-small, densecal train --method ce, "
                                f"{args.calibration_epochs} epochs on the flipped masks, "
                                f"frozen in both variants"),
            "batch_size": args.batch_size, "size": args.size, "image_size": args.size,
            "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
            "samples_per_image": N_SAMPLES, "model": "unet-small", "augment": False,
            "ablation": "no_cal = --set car.cal_weight=0",
            "shared_options": " ".join(SCHEDULE),
            "flips": {str(c): {"twin": t, "probability": p} for c, (t, p) in spec.flips.items()},
            "flip_target_max_error": 0.05,
            "iou": "mean over foreground classes present in either map (num_classes=None)",
            "hm_iou_tiling": "largest-remainder allotment of 16 slots by mode probability",
            "ged": "squared (D^2_GED), mode terms weighted by probability",
        },
        "machine": {**info, "seconds": round(time.perf_counter() - start, 1)},
    }
    emit(result, "car_ambiguity", args.quick, work)
    return result


if __name__ == "__main__":
    main()
