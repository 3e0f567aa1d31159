"""CAR's 1-D toy regression: samples with L_cal cover both branches, the ablation collapses.

Run: ``python benchmarks/car_toy.py [--quick] [--out DIR] [--seeds 5] [--steps 5000]
[--pis 0.6 0.8] [--schedule paper|fast]``. Prints ONE JSON object on stdout and, unless
``--quick``, writes it atomically to ``benchmarks/results/car_toy.json`` with the figure
``results/car_toy.png`` (``--quick`` writes both under ``--out`` only). About one minute per
training on one idle CPU core with ``OMP_NUM_THREADS=1``; the full run is
``2 x len(pis) x seeds`` trainings.

Data and model (Kassapis et al., ICCV 2021, 4.1; METHODS.md 4; ``densecal.methods.car.toy``):
``x ~ U(0, 1)``, upper branch with probability ``pi``; ``y = +-0.5`` for ``x < 0.4``, converging
lines ``+-(1 - 1.25 x)`` up to 0.8, 0 after, noise sigma 0.02. F, G, D are 4x64 MLPs, trained
as the paper's toy code does (F fitted first for 1500 steps and frozen; then 5000 steps of D and
G, batch 100, Adam 1e-4, 1-d latent); ``train_toy(with_cal=True)`` is CAR (generator loss
``BCE + 1/2 mean((G_bar - F)^2)`` over 10 samples per ``x``), ``with_cal=False`` the cGAN-only
ablation ("no_cal"), same seed, samples and steps.

``--schedule fast`` trains D and G ten times faster (Adam 1e-3, a 2-d latent, ``L_cal`` weight
10; densecal's first toy settings) and writes ``car_toy_fast.json`` / ``car_toy_fast.png``: a
stress test of the GAN's stability, where the paper schedule is the faithful one.

Measured: ``upper_fraction``, the share of G's samples above 0 over the grid points ``x < 0.4``
(200 samples at each of 101 grid points), for every ``pi`` in ``--pis``, per seed, and its
absolute error to ``pi``. CAR should give about ``pi``; a collapsed ablation gives 0 or 1.
Per ``pi`` and variant: the mean over seeds, ``collapsed`` (seeds whose fraction is below 0.05
or above 0.95: one branch only), and ``car_closer`` (seeds on which CAR's error is smaller than
the ablation's, same seed).
Figure: one row per ``pi``, columns CAR / no_cal: training data, F's mean, the exact mean
``(2 pi - 1) |branch(x)|`` and G's samples (seed 0).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from car_ambiguity import ROOT, emit, machine_info

from densecal.atomic import atomic_path
from densecal.methods.car.toy import sample_toy, toy_mean, train_toy

VARIANTS: dict[str, bool] = {"car": True, "no_cal": False}
SCHEDULES: dict[str, dict[str, Any]] = {
    "paper": {},  # train_toy's defaults: the paper's toy code
    "fast": {"lr": 1e-3, "latent_dim": 2, "cal_weight": 10.0},
}
COLLAPSE = 0.05
"""A run whose upper fraction is below this or above ``1 - COLLAPSE`` covers one branch only."""


def plot(runs: dict[float, dict[str, dict[str, Any]]], path: Path, seed: int = 0) -> None:
    """Save the figure: rows = pi, columns = CAR / no_cal (data, F, exact mean, G samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pis = sorted(runs)
    fig, axes = plt.subplots(len(pis), 2, figsize=(9, 3.2 * len(pis)), squeeze=False,
                             sharex=True, sharey=True)
    for row, pi in zip(axes, pis, strict=True):
        x, y = sample_toy(600, pi=pi, generator=torch.Generator().manual_seed(seed + 1))
        for ax, (variant, out) in zip(row, runs[pi].items(), strict=True):
            grid, samples = out["x"], out["samples"]
            ax.scatter(x[:, 0], y[:, 0], s=3, c="0.6", label="data")
            ax.scatter(np.broadcast_to(grid, samples.shape)[::4].ravel(),
                       samples[::4].ravel(), s=2, c="tab:orange", alpha=0.3, label="G samples")
            ax.plot(grid, out["f"], c="tab:blue", lw=2, label="F (mean)")
            ax.plot(grid, toy_mean(torch.from_numpy(grid), pi).numpy(), "k--", lw=1,
                    label="exact mean")
            ax.set_title(f"{variant}, pi = {pi}: upper fraction {out['upper_fraction']:.2f}")
            ax.set_xlabel("x")
        row[0].set_ylabel("y")
    axes[0, 0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the toy benchmark (see the module docstring) and return the JSON object it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="30 steps, small grid (for tests); writes only under --out")
    parser.add_argument("--out", type=Path, default=None, help="output folder for --quick")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="paper")
    parser.add_argument("--pis", type=float, nargs="+", default=[0.6, 0.8])
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out")
    options: dict[str, Any] = ({"steps": 30, "f_steps": 30, "grid_size": 20,
                                "grid_samples": 20} if args.quick else {"steps": args.steps})
    options.update(SCHEDULES[args.schedule])
    name = "car_toy" if args.schedule == "paper" else f"car_toy_{args.schedule}"
    info = machine_info()
    start = time.perf_counter()
    figure_runs: dict[float, dict[str, dict[str, Any]]] = {}
    result: dict[str, Any] = {"benchmark": "car_toy", **{v: {} for v in VARIANTS}}
    for pi in args.pis:
        figure_runs[pi] = {}
        errors: dict[str, list[float]] = {}
        for variant, with_cal in VARIANTS.items():
            fractions = []
            for seed in range(args.seeds):
                out = train_toy(with_cal, seed=seed, pi=pi, **options)
                fractions.append(out["upper_fraction"])
                if seed == 0:
                    figure_runs[pi][variant] = out
            errors[variant] = [abs(f - pi) for f in fractions]
            result[variant][str(pi)] = {
                "pi": pi, "upper_fraction": float(np.mean(fractions)),
                "abs_error": float(np.mean(errors[variant])),
                "collapsed": sum(1 for f in fractions if f < COLLAPSE or f > 1 - COLLAPSE),
                "per_seed": fractions}
        result.setdefault("car_closer", {})[str(pi)] = sum(
            1 for a, b in zip(errors["car"], errors["no_cal"], strict=True) if a < b)
    folder = args.out if args.quick else ROOT / "results"
    plot(figure_runs, folder / f"{name}.png")
    result["setup"] = {"quick": args.quick, "seeds": args.seeds, "pis": args.pis,
                       "sigma": 0.02, "figure": f"{name}.png", "schedule": args.schedule,
                       **options,
                       "upper_fraction": "share of samples > 0 over grid points x < 0.4"}
    result["machine"] = {**info, "seconds": round(time.perf_counter() - start, 1)}
    emit(result, name, args.quick, folder)
    return result


if __name__ == "__main__":
    main()
