"""CALSeg's VLS against CE, LS, focal and SVLS, tuned alike, on two brain datasets.

Run: ``python benchmarks/vls_fair.py [--out DIR] [--jobs 2] [--epochs 40] [--seeds 3]
[--datasets partial,rater] [--quick]``. Every training is one single-thread ``densecal train``
process (``--jobs`` at a time); finished runs and evaluations are reused, so a killed run
continues. Prints ONE JSON object and, unless ``--quick``, writes ``results/vls_fair.json``,
``results/vls_fair.md`` and ``results/vls_fair_stage1.png``.

Datasets (``densecal data brain``, 64 px, seed 0):

- ``partial``: the MNI152 slices, masks = argmax of the partial-volume truth. The only
  ambiguity is partial volume at tissue boundaries, which SVLS's fixed kernel models: the
  control where SVLS is expected to win.
- ``rater``: ``--rater dark-gm``: masks are one simulated rater's labels per image (dark grey
  matter called background, the threshold drawn per rater), soft truth = the label
  distribution over raters. The ambiguity follows image intensity, not boundaries.

Protocol (the same for every method): ``unet-small``, ``--epochs`` epochs, batch 16, Adam
lr 2e-3, no augmentation. Settings are chosen on the validation split of seed 0 from the grid
``GRID`` (LS eps, focal gamma, SVLS sigma: 3 values each; VLS tau x a: 12), by validation ECE
among settings whose validation Dice is not below CE's (if none qualifies, the best Dice; the
JSON says which). VLS's stage 1 is the paper's network at the official lr 1e-4 for
``--stage1-epochs`` epochs, trained once per seed and shared by its grid points (soft labels are
cheap once stage 1 exists). The chosen settings then run with seeds 0..``--seeds``-1 and are
evaluated on the test split: Dice, ECE (all pixels, foreground, class-wise), soft-truth ECE and
NLL, mean +- sd. Labelled extra rows at VLS's chosen (tau, a), each with its own stage 1 per
seed: ``vls-bottleneck``, densecal's non-paper network (latent at the bottleneck, no skips, KL
annealing over ``--stage1-epochs / 4`` epochs), and ``vls-elbo``, the paper's network with the
KL weighed ``1 / size**2`` (``--vls-kl-weight``: the per-image KL against a CE summed over
pixels, the ELBO of a per-pixel likelihood; non-paper). Also reported: each method's training
targets against the soft truth on ambiguous training pixels (soft-truth maximum below 0.99):
the mass taken off the mask's label and the total-variation distance; and per stage-1 variant
the KL per image and posterior sigma per epoch. The verdict (VLS vs CE and vs SVLS on ECE and
soft-truth ECE) counts a difference only beyond both seed sds combined and outside its paired
95 % bootstrap interval over test slices.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from car_ambiguity import ROOT, emit, machine_info
from run_timing import record, wall_gaps, wall_seconds

from densecal.data.pairs import find_pairs
from densecal.data.readers import read_label
from densecal.losses.svls import svls_smooth
from densecal.methods.engine.checkpoints import epochs_trained, read_checkpoint
from densecal.methods.train import run_started

GRID: dict[str, list[dict[str, float]]] = {
    "ce": [{}],
    "ls": [{"eps": e} for e in (0.05, 0.1, 0.2)],
    "focal": [{"gamma": g} for g in (1.0, 2.0, 3.0)],
    "svls": [{"svls_sigma": s} for s in (0.5, 1.0, 2.0)],
    "vls": [{"vls_tau": t, "vls_mix": a} for t in (1.0, 2.0, 5.0, 10.0) for a in (0.3, 0.6, 1.0)],
}
DATASETS = {"partial": [], "rater": ["--rater", "dark-gm"]}
#: stage-1 networks: the paper's, then the labelled non-paper extras (module docstring)
STAGE1_VARIANTS = ("paper", "bottleneck", "elbo")
EXTRA_VARIANTS = STAGE1_VARIANTS[1:]
AMBIGUOUS = 0.99
#: result key -> (table label, keys in the ``densecal evaluate`` metrics.json)
COLUMNS = {"dice": ("Dice", ("segmentation", "dice")), "ece": ("ECE %", ("calibration", "ece")),
           "ece_fg": ("fg ECE %", ("calibration", "ece_foreground")),
           "classwise_ece": ("cw-ECE %", ("calibration", "classwise_ece")),
           "soft_ece": ("soft ECE %", ("soft_truth", "ece")),
           "nll": ("NLL", ("calibration", "nll"))}


def setting_name(method: str, setting: dict[str, float]) -> str:
    """``vls_tau=2_vls_mix=0.3``-style folder name of one grid point (``ce`` for none)."""
    return "_".join([method, *(f"{k}={v:g}" for k, v in setting.items())])


def densecal(*args: object, log: Path) -> None:
    """One single-thread ``densecal`` process; its output goes to ``log``. A ``train`` call's
    wall time is appended to ``timing.jsonl`` beside the log (``run_timing``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = args[list(args).index("--out") + 1] if args[0] == "train" else None
    clock = record(log.parent / "timing.jsonl", run) if run else contextlib.nullcontext()
    with clock, log.open("a") as f:
        done = subprocess.run([sys.executable, "-m", "densecal", *map(str, args)], stdout=f,
                              stderr=subprocess.STDOUT, env=env, check=False)
        if done.returncode:
            raise RuntimeError(f"densecal {' '.join(map(str, args[:3]))} failed: see {log}")


class Bench:
    """The runs of one dataset in ``work/DATASET``."""

    def __init__(self, work: Path, dataset: str, args: argparse.Namespace) -> None:
        self.root, self.args = work / dataset, args
        self.data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "manifest.json").is_file():
            densecal("data", "brain", "--out", self.data, "--size", args.size,
                     *DATASETS[dataset], *(["--copies", 1, "--stride", 8] if args.quick else []),
                     log=self.root / "data.log")

    def common(self, seed: int) -> list[object]:
        a = self.args
        return ["--num-classes", 3, "--data", self.data / "train", "--val-data",
                self.data / "val", "--model", "unet-small", "--epochs", a.epochs,
                "--batch-size", a.batch_size, "--image-size", a.size, "--lr", 2e-3,
                "--no-augment", "--seed", seed]

    def run_dir(self, method: str, setting: dict[str, float], seed: int) -> Path:
        return self.root / "runs" / f"seed{seed}" / setting_name(method, setting)

    def stage1_options(self, variant: str) -> list[object]:
        """The stage-1 options of ``variant`` (module docstring)."""
        if variant == "bottleneck":
            return ["--vls-variant", variant,
                    "--vls-kl-warmup", max(1, self.args.stage1_epochs // 4)]
        if variant == "elbo":
            return ["--vls-kl-weight", 1.0 / self.args.size**2]
        return []

    def stage1_run(self, seed: int, variant: str) -> Path:
        """The run folder that holds the stage-1 network of ``variant`` for ``seed``."""
        return self.root / "runs" / f"seed{seed}" / f"stage1_{variant}"

    def stage1(self, seed: int, variant: str = "paper") -> Path:
        """Train (once) the stage-1 network of ``variant`` for ``seed``; its checkpoint."""
        run = self.stage1_run(seed, variant)
        ckpt = run / "vls" / "stage1" / "last.ckpt"
        if not (run / "checkpoints" / "last.ckpt").is_file():
            extra = self.stage1_options(variant)
            # a one-epoch stage 2 just to make the run complete; the run is only its stage 1
            densecal("train", "--method", "vls", *self.common(seed), "--epochs", 1,
                     "--vls-stage1-epochs", self.args.stage1_epochs, *extra, "--out", run,
                     *(["--resume"] if run_started(run) else []), log=self.root / "train.log")
        return ckpt

    def train(self, method: str, setting: dict[str, float], seed: int,
              stage1: Path | None = None, variant: str = "paper") -> Path:
        run = self.run_dir(method if variant == "paper" else f"vls-{variant}", setting, seed)
        if _finished(run, self.args.epochs):
            return run
        options = [f"--{k.replace('_', '-')}" for k in setting]
        flat = [x for k, v in zip(options, setting.values(), strict=True) for x in (k, v)]
        extra = ["--vls-stage1", stage1] if stage1 is not None else []
        if variant == "bottleneck":
            extra += ["--vls-variant", variant]
        densecal("train", "--method", method, *self.common(seed), *flat, *extra,
                 "--out", run, *(["--resume"] if run_started(run) else []),
                 log=self.root / "train.log")
        return run

    def evaluate(self, run: Path, split: str) -> dict[str, Any]:
        out = run / f"eval_{split}"
        if not (out / "metrics.json").is_file():
            densecal("evaluate", "--checkpoint", run / "checkpoints" / "last.ckpt", "--data",
                     self.data / split, "--out", out, log=self.root / "eval.log")
        return json.loads((out / "metrics.json").read_text())


def _finished(run: Path, epochs: int) -> bool:
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        return False
    return epochs_trained(read_checkpoint(ckpt)[0]) >= epochs


def _get(record: dict[str, Any], keys: tuple[str, ...]) -> float:
    value: Any = record
    for key in keys:
        value = value[key]
    return float(value)


def select(grid_scores: dict[str, list[tuple[dict[str, float], float, float]]]
           ) -> dict[str, dict[str, Any]]:
    """Per method, the setting with the lowest validation ECE among those whose validation
    Dice is not below CE's; if none qualifies, the best Dice (``qualified: false``).

    ``grid_scores[method]`` lists ``(setting, val_dice, val_ece)``.

    Example:
        >>> select({"ce": [({}, 0.8, 0.05)],
        ...         "ls": [({"eps": 0.1}, 0.81, 0.03), ({"eps": 0.2}, 0.79, 0.01)]})["ls"]
        {'setting': {'eps': 0.1}, 'val_dice': 0.81, 'val_ece': 0.03, 'qualified': True}
    """
    ce_dice = grid_scores["ce"][0][1]
    chosen = {}
    for method, rows in grid_scores.items():
        good = [r for r in rows if r[1] >= ce_dice]
        best = min(good, key=lambda r: r[2]) if good else max(rows, key=lambda r: r[1])
        chosen[method] = {"setting": best[0], "val_dice": best[1], "val_ece": best[2],
                          "qualified": bool(good)}
    return chosen


def target_distance(bench: Bench, method: str, setting: dict[str, float],
                    soft_dir: Path | None) -> dict[str, float]:
    """Each training target's distance to the soft truth on ambiguous training pixels: mass
    off the mask's label, ``1 - target[mask]``, and total variation, pooled over pixels."""
    off, tv, count = 0.0, 0.0, 0
    for pair in find_pairs(bench.data / "train"):
        mask = torch.from_numpy(read_label(pair.mask).astype(np.int64))
        truth = torch.from_numpy(np.load(pair.image.parent.parent / "soft"
                                         / f"{pair.image.stem}.npy")).double()
        onehot = torch.nn.functional.one_hot(mask, 3).permute(2, 0, 1).double()
        if method == "ls":
            target = (1 - setting["eps"]) * onehot + setting["eps"] / 3
        elif method == "svls":
            target = svls_smooth(onehot[None], None, 3, setting["svls_sigma"])[0]
        elif method.startswith("vls"):
            assert soft_dir is not None
            target = torch.from_numpy(np.load(soft_dir / f"{pair.image.stem}.npy")).double()
        else:  # ce, focal: the one-hot mask
            target = onehot
        where = truth.max(0).values < AMBIGUOUS
        picked = target.gather(0, mask[None])[0]
        off += float((1 - picked)[where].sum())
        tv += float((0.5 * (target - truth).abs().sum(0))[where].sum())
        count += int(where.sum())
    return {"pixels": count, "mass_off_label": off / max(count, 1),
            "total_variation": tv / max(count, 1)}


def stage1_curves(run: Path) -> dict[str, list[float]]:
    """``stage1_kl`` and ``stage1_sigma`` per epoch from the stage-1 Lightning logs."""
    rows: dict[int, dict[str, float]] = {}
    for path in sorted((run / "vls" / "stage1" / "logs").glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("stage1_kl"):
                    rows[int(row["epoch"])] = {k: float(row[k]) for k in
                                               ("stage1_kl", "stage1_sigma")}
    epochs = sorted(rows)
    return {"kl": [rows[e]["stage1_kl"] for e in epochs],
            "sigma": [rows[e]["stage1_sigma"] for e in epochs]}


def run_dataset(bench: Bench, args: argparse.Namespace, pool: ThreadPoolExecutor
                ) -> dict[str, Any]:
    """Grid on seed 0, selection on validation, the chosen settings over seeds, on test."""
    stage1s = {v: {s: pool.submit(bench.stage1, s, v) for s in range(args.seeds)}
               for v in STAGE1_VARIANTS}
    stage1 = stage1s["paper"]
    jobs = {(m, setting_name(m, st)): pool.submit(bench.train, m, st, 0)
            for m, sts in GRID.items() if m != "vls" for st in sts}
    paper0 = stage1[0].result()
    jobs.update({("vls", setting_name("vls", st)): pool.submit(bench.train, "vls", st, 0, paper0)
                 for st in GRID["vls"]})
    runs = {key: job.result() for key, job in jobs.items()}
    scores: dict[str, list[tuple[dict[str, float], float, float]]] = {m: [] for m in GRID}
    grid_table = []
    for m, sts in GRID.items():
        for st in sts:
            val = bench.evaluate(runs[(m, setting_name(m, st))], "val")
            dice, ece = _get(val, ("segmentation", "dice")), _get(val, ("calibration", "ece"))
            scores[m].append((st, dice, ece))
            grid_table.append({"method": m, "setting": st, "val_dice": dice, "val_ece": ece})
    chosen = select(scores)
    final = {m: [pool.submit(bench.train, m, chosen[m]["setting"], s,
                             stage1[s].result() if m == "vls" else None)
                 for s in range(args.seeds)] for m in GRID}
    vls_setting = chosen["vls"]["setting"]
    for v in EXTRA_VARIANTS:
        final[f"vls-{v}"] = [pool.submit(bench.train, "vls", vls_setting, s,
                                         stage1s[v][s].result(), v) for s in range(args.seeds)]
    final_runs = {m: [job.result() for job in jobs_] for m, jobs_ in final.items()}
    tests = {m: [bench.evaluate(r, "test") for r in rs] for m, rs in final_runs.items()}
    timing = bench.root / "timing.jsonl"
    table: dict[str, dict[str, Any]] = {}
    for m, records in tests.items():
        table[m] = {}
        for key, (_, path) in COLUMNS.items():
            values = [_get(r, path) for r in records]
            table[m][key] = {"mean": statistics.fmean(values),
                             "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                             "values": values}
        table[m]["chosen"] = chosen["vls" if m.startswith("vls") else m]["setting"]
        grid_runs = ([] if m not in GRID else
                     [runs[(m, setting_name(m, st))] for st in GRID[m]])
        table[m]["wall"] = {"tuning": wall_seconds(timing, grid_runs),
                            "other_seeds": wall_seconds(timing, [
                                r for r in final_runs[m] if r not in grid_runs])}
    targets = {}
    for m in final_runs:
        setting = chosen["vls" if m.startswith("vls") else m]["setting"]
        soft_dir = final_runs[m][0] / "vls" / "soft_labels" if m.startswith("vls") else None
        targets[m] = target_distance(bench, m, setting, soft_dir)
    states = {m: [image_states(r, bench.data / "test") for r in final_runs[m]]
              for m in ("vls", "ce", "svls")}
    intervals = paired_bootstrap(states, 100 if args.quick else 1000)
    diagnostics = {}
    for variant, futures in stage1s.items():
        stage1_runs = [bench.stage1_run(s, variant) for s in futures]  # all done: final used them
        reports = [json.loads((r / "vls" / "diagnostics.json").read_text())["networks"][0]
                   for r in stage1_runs]
        diagnostics[variant] = {"final": reports[0], "per_epoch": stage1_curves(stage1_runs[0]),
                                "collapsed_seeds": sum(r["collapsed"] for r in reports),
                                "kl_per_image": reports[0]["kl_mean"],
                                "wall": wall_seconds(timing, stage1_runs)}
    return {"chosen": chosen, "grid": grid_table, "methods": table, "targets": targets,
            "stage1": diagnostics, "paired_bootstrap": intervals,
            "verdict": verdict(table, intervals)}


def image_states(run: Path, split: Path, n_bins: int = 10) -> np.ndarray:
    """Per test image the top-label calibration state ``(N, 2, 3, n_bins)``: against the mask
    and against the soft truth, per equal-width bin ``(lo, hi]`` the pixel count, the summed
    confidence and the summed accuracy (the mask: argmax correct; the soft truth: its mass at
    the argmax). Summed over images they give ``densecal evaluate``'s pooled ECEs."""
    from densecal.data.readers import read_image
    from densecal.methods.segmentation.inference import load_module, predict_class_probabilities

    pairs = find_pairs(split)
    module = load_module(run / "checkpoints" / "last.ckpt")
    states = np.zeros((len(pairs), 2, 3, n_bins))
    probs = predict_class_probabilities(module, [read_image(p.image) for p in pairs])
    for i, (pair, prob) in enumerate(zip(pairs, probs, strict=True)):
        prob = prob.astype(np.float64)
        mask = read_label(pair.mask).astype(np.int64)
        soft = np.load(pair.image.parent.parent / "soft" / f"{pair.image.stem}.npy")
        top, conf = prob.argmax(0), prob.max(0)
        bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1).ravel()
        hard = (top == mask).astype(np.float64)
        mass = np.take_along_axis(soft.astype(np.float64), top[None], 0)[0]
        for t, accuracy in enumerate((hard, mass)):
            states[i, t, 0] = np.bincount(bins, minlength=n_bins)
            states[i, t, 1] = np.bincount(bins, conf.ravel(), minlength=n_bins)
            states[i, t, 2] = np.bincount(bins, accuracy.ravel(), minlength=n_bins)
    return states


def state_ece(states: np.ndarray) -> np.ndarray:
    """Pooled ECE of summed states ``(..., 3, n_bins)``: ``sum_b |conf_b - acc_b| / count``."""
    return np.abs(states[..., 1, :] - states[..., 2, :]).sum(-1) / states[..., 0, :].sum(-1)


def paired_bootstrap(states: dict[str, list[np.ndarray]], n_boot: int = 1000, seed: int = 0
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """Seed-averaged ``vls - other`` in ECE and soft-truth ECE for other in CE and SVLS, with a
    95 % percentile interval over test images drawn with replacement (every model and seed on
    the same draw). ``states[m]`` lists :func:`image_states` per seed. Keys ``"vls-ce"``,
    ``"vls-svls"`` -> ``"ece"`` / ``"soft_ece"`` -> ``{diff, lo, hi}``."""
    rng = np.random.default_rng(seed)
    n = next(iter(states.values()))[0].shape[0]

    def mean_ece(m: str, idx: np.ndarray) -> np.ndarray:  # (2,): mask, soft truth
        return np.mean([state_ece(st[idx].sum(0)) for st in states[m]], axis=0)

    draws = [rng.integers(0, n, n) for _ in range(n_boot)]
    full = np.arange(n)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for other in ("ce", "svls"):
        diffs = np.array([mean_ece("vls", d) - mean_ece(other, d) for d in draws])
        point = mean_ece("vls", full) - mean_ece(other, full)
        out[f"vls-{other}"] = {
            key: {"diff": float(point[t]), "lo": float(np.percentile(diffs[:, t], 2.5)),
                  "hi": float(np.percentile(diffs[:, t], 97.5))}
            for t, key in enumerate(("ece", "soft_ece"))}
    return out


def verdict(table: dict[str, dict[str, Any]],
            intervals: dict[str, dict[str, dict[str, float]]] | None = None) -> dict[str, str]:
    """Plain answers on test ECE (all pixels) and soft-truth ECE: does VLS beat CE, and SVLS?
    "lower" / "higher" = the difference exceeds both seed sds combined and, with
    ``intervals`` (:func:`paired_bootstrap`), its 95 % interval over test images excludes 0 on
    the same side; otherwise "not separable"."""
    out = {}
    for other in ("ce", "svls"):
        words = []
        for key in ("ece", "soft_ece"):
            label = COLUMNS[key][0]
            a, b = table["vls"][key], table[other][key]
            margin = math.hypot(a["sd"], b["sd"])
            diff = a["mean"] - b["mean"]
            ci = (intervals or {}).get(f"vls-{other}", {}).get(key)
            lo, hi = (ci["lo"], ci["hi"]) if ci else (-math.inf, math.inf)
            word = ("lower" if diff < -margin and (hi < 0 or not ci) else
                    "higher" if diff > margin and (lo > 0 or not ci) else "not separable")
            where = f", 95 % CI over test images [{100 * lo:+.2f}, {100 * hi:+.2f}]" if ci else ""
            words.append(f"{label}: VLS {100 * a['mean']:.2f} vs {other} {100 * b['mean']:.2f} "
                         f"({word}{where})")
        out[f"vls_vs_{other}"] = "; ".join(words)
    return out


def _wall_cell(wall: dict[str, dict[str, Any]]) -> str:
    return (f"{wall['tuning']['seconds']:.0f}{wall_gaps(wall['tuning'])} + "
            f"{wall['other_seeds']['seconds']:.0f}{wall_gaps(wall['other_seeds'])}")


def markdown(result: dict[str, Any]) -> str:
    lines = ["# CALSeg / VLS, tuned alike, on two brain datasets", "",
             f"Command: `python benchmarks/vls_fair.py --jobs {result['setup']['jobs']}` "
             f"(this invocation {result['machine']['seconds']:.0f} s, reusing finished runs; "
             f"training wall time per method below, summed from `timing.jsonl`; "
             f"{result['machine']['cpu_count']} vCPUs, one thread per run). Setup: "
             f"{result['setup']['protocol']}", ""]
    for dataset, r in result["datasets"].items():
        lines += [f"## {dataset}", "", "Chosen on validation (seed 0): " + ", ".join(
            setting_name(m, c["setting"]).replace("_", " ")
            + ("" if c["qualified"] else " (no setting reached CE's val Dice)")
            for m, c in r["chosen"].items()), "",
            "| method | " + " | ".join(label for label, _ in COLUMNS.values())
            + " | training wall s (grid + other seeds) |",
            "|---" * (len(COLUMNS) + 2) + "|"]
        for m, cols in r["methods"].items():
            cells = []
            for key, (label, _) in COLUMNS.items():
                c, scale = cols[key], (100 if "%" in label else 1)
                digits = 2 if "%" in label else 3
                cells.append(f"{scale * c['mean']:.{digits}f} ± {scale * c['sd']:.{digits}f}")
            cells.append(_wall_cell(cols["wall"]))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", "Training targets on ambiguous training pixels (soft truth max < 0.99):",
                  "", "| method | mass off the label | TV to soft truth |", "|---|---|---|"]
        for m, t in r["targets"].items():
            lines.append(f"| {m} | {t['mass_off_label']:.3f} | {t['total_variation']:.3f} |")
        lines += ["", "Stage 1 (seed 0, after training): " + "; ".join(
            f"{v}: KL {d['final']['kl_mean']:.2g} nats/image, sigma {d['final']['sigma_mean']:.3f}"
            f", sample spread {d['final']['sample_spread']:.4f}, collapsed in "
            f"{d['collapsed_seeds']}/{result['setup']['seeds']} seeds, training "
            f"{d['wall']['seconds']:.0f} s{wall_gaps(d['wall'])}"
            for v, d in r["stage1"].items()), "",
            "Verdict: " + " | ".join(r["verdict"].values()), ""]
    lines += ["![stage 1](vls_fair_stage1.png)", ""]
    return "\n".join(lines)


def figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for dataset, r in result["datasets"].items():
        for variant, d in r["stage1"].items():
            style = {"paper": "-", "bottleneck": "--"}.get(variant, ":")
            for ax, key in zip(axes, ("kl", "sigma"), strict=True):
                ax.plot(d["per_epoch"][key], style, label=f"{dataset}, {variant}")
    axes[0].set(xlabel="stage-1 epoch", ylabel="KL per image (nats)", yscale="log")
    axes[1].set(xlabel="stage-1 epoch", ylabel="posterior sigma (mean)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder (default runs/bench/vls_fair)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--stage1-epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--datasets", default="partial,rater")
    args = parser.parse_args(argv)
    if args.quick:
        if args.out is None:
            parser.error("--quick needs --out")
        args.epochs, args.stage1_epochs, args.seeds, args.size = 1, 2, 2, 32
    work = args.out or ROOT.parent / "runs" / "bench" / "vls_fair"
    info, start = machine_info(), time.perf_counter()
    result: dict[str, Any] = {"benchmark": "vls_fair", "datasets": {}}
    with ThreadPoolExecutor(args.jobs) as pool:
        for dataset in args.datasets.split(","):
            result["datasets"][dataset] = run_dataset(Bench(work, dataset, args), args, pool)
    result["setup"] = {k: v for k, v in vars(args).items() if k != "out"}
    result["setup"]["grid"] = GRID
    result["setup"]["protocol"] = (
        f"unet-small, {args.epochs} epochs, batch {args.batch_size}, {args.size} px, Adam lr "
        f"2e-3, no augmentation, for every method; VLS stage 1 {args.stage1_epochs} epochs at "
        f"Adam lr 1e-4 (m = 8); selection on validation ECE among settings with validation "
        f"Dice >= CE's; {args.seeds} seeds")
    result["machine"] = {**info, "seconds": round(time.perf_counter() - start, 1)}
    folder = work if args.quick else ROOT / "results"
    figure(result, folder / "vls_fair_stage1.png")
    (folder / "vls_fair.md").write_text(markdown(result))
    emit(result, "vls_fair", args.quick, folder)
    return result


if __name__ == "__main__":
    main()
