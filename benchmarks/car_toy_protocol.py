"""CAR's 1-D toy under the authors' protocol: log-likelihood curves and collapse, CAR vs no L_cal.

Run: ``OMP_NUM_THREADS=1 python benchmarks/car_toy_protocol.py [--seeds 8] [--pis 0.5 0.6 0.9]
[--steps 5000] [--extra-seeds 5] [--quick --out DIR]``. Prints ONE JSON object and, unless
``--quick``, writes ``results/car_toy_protocol.json``, ``.md`` and ``.png`` (the curves).

Protocol (github.com/gdikov/calibrated-adversarial-learning, ``part_2.ipynb``;
``densecal.methods.car.toy.AUTHORS_PROTOCOL``): F (4x64 ReLU MLP) fitted for 1,500 steps of
1,000 points and frozen; G and D 4x64 leaky-ReLU (0.01) MLPs, 1-d latent, Adam 1e-4 with default
betas, batch 100, 5,000 iterations; CAR's generator loss is the adversarial term on 10 samples
per ``x`` plus ``1/2 mean((G_bar - F)^2)``, the ablation's the adversarial term on 1 sample;
D's fake is one fresh sample per ``x``; sigma 0.03. Every 250 iterations: the mean
log-likelihood, under the true mixture, of one G sample for each of 2,000 fresh ``x``
(``toy_log_likelihood``, with the authors' 1e-11 inside the log). Differences from the authors:
evaluation every 250 instead of 10 iterations, pi in ``--pis`` at sigma 0.03 only (their grid
also has sigma 0.01 and 0.02), seeds 0..N-1 of torch's generator.

Reported per pi and variant (``car``, ``no_cal``): ``collapsed`` (seeds whose samples at
``x < 0.4`` give either branch under a tenth of its probability: under 5 % of draws at pi =
0.5, under 1 % for the lower branch at pi = 0.9; an absolute 5 % / 95 % rule would call a
sampler slightly off pi = 0.9 collapsed), the median and
IQR over seeds of the log-likelihood at iterations 1,000, 2,000 and 5,000, and
``ll_median_passes_zero_at``, the first evaluated iteration at which the median over seeds is
above 0 (None if never). ``densecal_variant``: the same for densecal 0.1's variant
(``DENSECAL_PROTOCOL``: leaky ReLU 0.2, betas (0.5, 0.99), 10 samples in both losses and as D's
fakes, sigma 0.02), a labelled extra with ``--extra-seeds`` seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from car_ambiguity import ROOT, emit, machine_info

from densecal.methods.car.toy import AUTHORS_PROTOCOL, DENSECAL_PROTOCOL, train_toy

VARIANTS: dict[str, bool] = {"car": True, "no_cal": False}
COLLAPSE = 0.1
"""A seed is collapsed when its minority-branch share is below this fraction of
``min(pi, 1 - pi)``."""
MARKS = (1000, 2000, 5000)


def collapsed(fraction: float, pi: float) -> bool:
    """Whether an upper-branch share ``fraction`` leaves either branch under :data:`COLLAPSE`
    of its probability (``pi`` upper, ``1 - pi`` lower).

    Example:
        >>> collapsed(0.97, 0.9), collapsed(0.995, 0.9), collapsed(0.05, 0.9), collapsed(0.97, 0.5)
        (False, True, True, True)
    """
    return fraction < COLLAPSE * pi or 1.0 - fraction < COLLAPSE * (1.0 - pi)


def summarise(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Collapse count and log-likelihood statistics over the seeds of one (pi, variant)."""
    iterations = [it for it, _ in runs[0]["ll_curve"]]
    curves = np.array([[ll for _, ll in run["ll_curve"]] for run in runs])  # (seeds, evals)
    median = np.median(curves, axis=0)
    q1, q3 = np.quantile(curves, 0.25, axis=0), np.quantile(curves, 0.75, axis=0)
    passes = next((it for it, m in zip(iterations, median, strict=True) if m > 0), None)
    fractions = [run["upper_fraction"] for run in runs]
    marks = {}
    for mark in (*[m for m in MARKS if m < steps], steps):
        k = iterations.index(mark) if mark in iterations else len(iterations) - 1
        marks[str(iterations[k])] = {"median": float(median[k]), "iqr": [float(q1[k]),
                                                                          float(q3[k])]}
    return {
        "seeds": len(runs),
        "collapsed": sum(collapsed(f, runs[0]["pi"]) for f in fractions),
        "upper_fraction_per_seed": fractions,
        "ll_median_passes_zero_at": passes,
        "ll": marks,
        "curve": {"iteration": iterations, "median": median.tolist(), "q1": q1.tolist(),
                  "q3": q3.tolist()},
    }


def run_grid(protocol: dict[str, Any], pis: list[float], seeds: int, options: dict[str, Any]
             ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pi in pis:
        out[str(pi)] = {}
        for variant, with_cal in VARIANTS.items():
            runs = [train_toy(with_cal, seed=seed, pi=pi, **protocol, **options)
                    for seed in range(seeds)]  # fmt: skip
            out[str(pi)][variant] = summarise(runs, options["steps"])
            print(f"pi {pi} {variant}: collapsed {out[str(pi)][variant]['collapsed']}/{seeds}, "
                  f"median LL passes 0 at {out[str(pi)][variant]['ll_median_passes_zero_at']}",
                  flush=True, file=sys.stderr)
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| protocol | pi | variant | collapsed | LL median at 1,000 (IQR) | at 2,000 | "
             "at 5,000 | median passes 0 at |", "|---|---|---|---|---|---|---|---|"]
    for name in ("authors", "densecal_variant"):
        for pi, variants in result[name].items():
            for variant, row in variants.items():
                cells = []
                for mark in ("1000", "2000", "5000"):
                    m = row["ll"].get(mark)
                    cells.append("" if m is None else
                                 f"{m['median']:.2f} ({m['iqr'][0]:.2f}, {m['iqr'][1]:.2f})")
                lines.append(f"| {name} | {pi} | {variant} | {row['collapsed']}/{row['seeds']} "
                             f"| {' | '.join(cells)} | {row['ll_median_passes_zero_at']} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pis = list(result["authors"])
    fig, axes = plt.subplots(1, len(pis), figsize=(4.5 * len(pis), 3.8), squeeze=False,
                             sharey=True)
    for ax, pi in zip(axes[0], pis, strict=True):
        for variant, color in (("car", "tab:red"), ("no_cal", "tab:blue")):
            curve = result["authors"][pi][variant]["curve"]
            ax.fill_between(curve["iteration"], curve["q1"], curve["q3"], color=color,
                            alpha=0.25)
            ax.plot(curve["iteration"], curve["median"], color=color,
                    label=f"{variant} (median, IQR)")
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_title(f"pi = {pi}, sigma = 0.03")
        ax.set_xlabel("iteration")
        ax.set_ylim(bottom=-15)
    axes[0][0].set_ylabel("mean log-likelihood of G's samples")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--extra-seeds", type=int, default=5)
    parser.add_argument("--pis", type=float, nargs="+", default=[0.5, 0.6, 0.9])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="tiny run for tests (--out)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out")
    torch.set_num_threads(1)
    options: dict[str, Any] = {"steps": args.steps, "eval_every": 250, "grid_size": 101,
                               "grid_samples": 200}
    if args.quick:
        options.update(steps=40, eval_every=10, f_steps=20, grid_size=20, grid_samples=20,
                       eval_points=200)
    start = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "car_toy_protocol"}
    result["authors"] = run_grid(AUTHORS_PROTOCOL, args.pis, args.seeds, options)
    result["densecal_variant"] = run_grid(DENSECAL_PROTOCOL, args.pis, args.extra_seeds, options)
    result["setup"] = {"authors_protocol": {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in AUTHORS_PROTOCOL.items()},
                       "densecal_protocol": {k: list(v) if isinstance(v, tuple) else v
                                             for k, v in DENSECAL_PROTOCOL.items()},
                       "seeds": args.seeds, "extra_seeds": args.extra_seeds, "pis": args.pis,
                       **options}
    result["machine"] = {**machine_info(), "seconds": round(time.perf_counter() - start, 1)}
    folder = args.out if args.quick else ROOT / "results"
    folder.mkdir(parents=True, exist_ok=True)
    plot(result, folder / "car_toy_protocol.png")
    (folder / "car_toy_protocol.md").write_text(
        "# CAR toy under the authors' protocol\n\nCommand: `OMP_NUM_THREADS=1 python "
        "benchmarks/car_toy_protocol.py` "
        f"(wall time {result['machine']['seconds']} s).\n\n" + table(result))
    emit(result, "car_toy_protocol", args.quick, folder)
    return result


if __name__ == "__main__":
    main()
