"""Uncertainty distillation with controls: gt, kd, pdd, ud students under one cached teacher.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ud_controls.py [--seeds 3] [--teacher-epochs 16]
[--epochs 8] [--out DIR] [--quick]``. Prints ONE JSON object and, unless ``--quick``, writes
``results/ud_controls.json`` and ``results/ud_controls.md``. Densecal issue 21; method:
docs/methods.md section 5 (Song et al., ACM MM 2021; official code github.com/lsongx/ud).

Data: the scenes of ``benchmarks/ud_multilabel.py`` (``densecal data multilabel``: 2-4
Fashion-MNIST garments on a texture, six classes, "difficult" flags for small, occluded or
low-contrast garments; 2500 train / 200 val / 500 test at 48 px, seed 0).

Models (Adam lr 1e-3, batch 32, from scratch: no pretrained weights exist here, while the
paper's teacher and student are ImageNet-pretrained):

- ``teacher``: ``ud-teacher`` on ``resnet-small``, trained once for ``--teacher-epochs``
  epochs with seed 0 and shared by every student and seed (cached in the work folder);
- students on ``resnet-tiny``, ``--epochs`` epochs, seeds 0..N-1, the same schedule:
  ``gt`` (``ud-gt``: ground truth only, the teacher's loss), ``kd`` (``ud.distill=kd``: plain
  Bernoulli distillation of the classification head), ``pdd`` (``ud.distill=pdd``: UAD off),
  ``ud`` (PDD + UAD), all with the official loss scaling (PDD / KD summed over the batch,
  UAD a mean), and ``ud_mean`` (labelled variant: densecal 0.1's scaling, every term a mean).

Measures on the test split (probabilities ``sigmoid(o)``): ``map`` and ``map_hard`` (mAP over
images that carry a difficult label; difficult labels ignored), ``cp`` / ``op`` at 0.5 and
``cp_top3`` / ``op_top3`` with the ML-GCN counting (a predicted difficult label is a false
positive; ``convention="ml-gcn"``), ``difficult_fp_rate`` (share of difficult labels predicted
positive at 0.5: the false positives the paper is about), ``fp_rate_elsewhere`` (share of
absent labels predicted positive, over classes that are difficult in some other test image),
``classwise_ece`` (secondary: the paper makes no ECE claim). Teacher-branch diagnostic: on the
test images with a difficult label, the calibration branch's share ``softmax(s)_l x |P|`` of
easy (``easy_share``) and difficult (``difficult_share``) positives, and
``teacher_branch_auroc`` = P(an easy positive's share > a difficult one's) (0.5: the branch
does not flag difficult labels).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from calibration_metrics import machine_info  # noqa: E402
from run_timing import record, wall_gaps, wall_seconds  # noqa: E402
from ud_multilabel import densecal_cli, ensure_data, mean_std  # noqa: E402

from densecal.atomic import atomic_write_text  # noqa: E402
from densecal.methods.engine.checkpoints import epochs_trained, read_checkpoint  # noqa: E402

#: result key -> (method, ud options); every student uses resnet-tiny.
STUDENTS: dict[str, tuple[str, dict[str, str]]] = {
    "gt": ("ud-gt", {}),
    "kd": ("ud-student", {"distill": "kd"}),
    "pdd": ("ud-student", {"distill": "pdd"}),
    "ud": ("ud-student", {"distill": "ud"}),
    "ud_mean": ("ud-student", {"distill": "ud", "scaling": "mean"}),
}
MEASURES = ("map", "map_hard", "cp", "op", "cp_top3", "op_top3", "difficult_fp_rate",
            "fp_rate_elsewhere", "classwise_ece")
FULL = {"n_train": 2500, "n_val": 200, "n_test": 500, "scene_size": 48, "image_size": 48,
        "batch_size": 32}
QUICK = {"n_train": 16, "n_val": 8, "n_test": 16, "scene_size": 32, "image_size": 16,
         "batch_size": 8}


def train(run: Path, method: str, backbone: str, epochs: int, seed: int, data: Path,
          setup: dict[str, Any], options: dict[str, str], teacher: Path | None = None) -> Path:
    """Train (or continue) one run, its wall time recorded in ``run.parent / timing.jsonl``;
    returns its checkpoint."""
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        if epochs_trained(read_checkpoint(ckpt)[0]) < epochs:
            with record(run.parent / "timing.jsonl", run):
                densecal_cli(["train", "--resume", "--out", str(run), "--epochs", str(epochs)])
        return ckpt
    args = ["train", "--method", method, "--model", backbone, "--data", str(data / "train"),
            "--val-data", str(data / "val"), "--epochs", str(epochs), "--image-size",
            str(setup["image_size"]), "--batch-size", str(setup["batch_size"]), "--lr", "1e-3",
            "--seed", str(seed), "--out", str(run)]
    args += [x for k, v in options.items() for x in ("--set", f"ud.{k}={v}")]
    if teacher is not None:
        args += ["--teacher", str(teacher)]
    with record(run.parent / "timing.jsonl", run):
        densecal_cli(args)
    return ckpt


@torch.no_grad()
def predict(ckpt: Path, data: Path) -> dict[str, np.ndarray]:
    """Probabilities ``sigmoid(o)``, branch shares ``softmax(s)`` and labels in {0, 1, 2}."""
    from torch.utils.data import DataLoader

    from densecal.data.classification import ClassificationDataset
    from densecal.methods.ud import load_ud

    module = load_ud(ckpt)
    dataset = ClassificationDataset(data, module.config.image_size)
    probs, shares, labels = [], [], []
    for image, _, label in DataLoader(dataset, batch_size=64):
        out = module(image)
        probs.append(torch.sigmoid(out.logits))
        shares.append(torch.softmax(out.scores, 1))
        labels.append(label)
    return {"probs": torch.cat(probs).double().numpy(), "shares": torch.cat(shares).numpy(),
            "labels": torch.cat(labels).numpy()}


def measures(pred: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The table's values for one model (module docstring)."""
    from densecal.metrics.calibration import PixelCalibration
    from densecal.metrics.multilabel import MultilabelMetrics

    probs, labels = torch.from_numpy(pred["probs"]), torch.from_numpy(pred["labels"])
    metric = MultilabelMetrics(labels.shape[1], convention="ml-gcn")
    metric.update(probs, labels)
    values = {k: float(v) for k, v in metric.compute().items() if v.ndim == 0}
    plain = MultilabelMetrics(labels.shape[1])
    plain.update(probs, labels)
    ignore = {k: float(v) for k, v in plain.compute().items() if v.ndim == 0}
    p, t = pred["probs"], pred["labels"]
    difficult = t == 2
    difficult_elsewhere = (difficult.sum(0, keepdims=True) - difficult) > 0  # (N, C)
    absent = (t == 0) & difficult_elsewhere
    calibration = PixelCalibration(10, task="multilabel", num_classes=t.shape[1],
                                   ignore_index=2)
    calibration.update(probs[:, :, None, None], labels[:, :, None, None].double())
    out = {"map": ignore["map"], "map_hard": ignore["map_hard"], "cp": values["cp"],
           "op": values["op"], "cp_top3": values["cp_top3"], "op_top3": values["op_top3"],
           "difficult_fp_rate": float((p[difficult] > 0.5).mean()) if difficult.any()
           else None,
           "fp_rate_elsewhere": float((p[absent] > 0.5).mean()) if absent.any() else None,
           "classwise_ece": float(calibration.compute()["classwise_ece"])}
    return {k: None if v is None or not np.isfinite(v) else v for k, v in out.items()}


def branch_diagnostic(pred: dict[str, np.ndarray]) -> dict[str, float]:
    """The teacher's calibration-branch shares of easy vs difficult positives (docstring)."""
    from sklearn.metrics import roc_auc_score

    t = pred["labels"]
    rows = (t == 2).any(1)
    scaled = pred["shares"][rows] * (t[rows] > 0).sum(1, keepdims=True)
    easy, hard = scaled[t[rows] == 1], scaled[t[rows] == 2]
    auroc = roc_auc_score(np.r_[np.ones(len(easy)), np.zeros(len(hard))], np.r_[easy, hard])
    return {"easy_share": float(easy.mean()), "difficult_share": float(hard.mean()),
            "teacher_branch_auroc": float(auroc), "easy_n": len(easy), "difficult_n": len(hard)}


def markdown(result: dict[str, Any]) -> str:
    setup = result["setup"]

    def cell(stats: dict[str, Any]) -> str:
        if stats["mean"] is None:
            return "n/a"
        sd = "" if stats["std"] is None else f" ± {100 * stats['std']:.2f}"
        return f"{100 * stats['mean']:.2f}{sd}"

    labels = ("mAP", "mAP hard", "CP", "OP", "CP top-3", "OP top-3", "difficult FP rate",
              "FP rate elsewhere", "class-wise ECE")
    lines = [f"# Uncertainty distillation with controls ({setup['seeds']} student seeds, one "
             f"teacher)", "",
             f"Command: `OMP_NUM_THREADS=1 python benchmarks/ud_controls.py` (this "
             f"invocation {result['seconds']:.0f} s; training wall time below). "
             f"{setup['n_train']} train / {setup['n_test']} test "
             f"scenes at {setup['image_size']} px; teacher resnet-small {setup['teacher_epochs']} "
             f"epochs (seed 0, shared), students resnet-tiny {setup['epochs']} epochs; from "
             f"scratch (no pretrained weights here; the paper's networks are "
             f"ImageNet-pretrained). Values in %, mean ± sd over student seeds (the teacher: one "
             f"run). CP/OP: ML-GCN counting (a predicted difficult label is a false positive). "
             f"ECE is secondary: the paper makes no ECE claim.", "",
             "| model | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for model in ("teacher", *STUDENTS):
        lines.append(f"| {model} | " + " | ".join(cell(result[model][k]) for k in MEASURES)
                     + " |")
    d = result["teacher_branch"]
    lines += ["", "Training wall time, s (summed over seeds; runs trained before timing was "
                  "recorded are untimed, runs resumed after it partly timed): " + ", ".join(
                      f"{m} {w['seconds']:.0f}{wall_gaps(w)}"
                      for m, w in result["training_wall"].items()) + ".", "",
              f"Teacher branch: easy positives' share {d['easy_share']:.3f}, difficult "
                  f"{d['difficult_share']:.3f} ({d['easy_n']} / {d['difficult_n']} labels); "
                  f"AUROC easy vs difficult {d['teacher_branch_auroc']:.3f}.", "",
              f"Verdict: the students' gain on difficult labels is due to "
              f"**{result['verdict']['answer']}** (rule: `verdict` in the script). "
              f"{result['verdict']['text']}.", ""]
    return "\n".join(lines)


#: the claim's measures and their better direction (+1: higher is better)
CLAIM = {"map_hard": 1, "difficult_fp_rate": -1}


PAIRS = (("kd", "gt"), ("pdd", "kd"), ("ud", "pdd"), ("ud", "kd"), ("ud", "gt"))


def claim_measures(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``map_hard`` and ``difficult_fp_rate`` of one model's ``(N, C)`` probabilities."""
    from densecal.metrics.functional.multilabel import ranking_metrics

    difficult = labels == 2
    return {"map_hard": float(ranking_metrics(torch.from_numpy(probs),
                                              torch.from_numpy(labels))["map_hard"]),
            "difficult_fp_rate": float((probs[difficult] > 0.5).mean())}


def paired_bootstrap(preds: dict[str, list[dict[str, np.ndarray]]], n_boot: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """Seed-averaged ``a - b`` of :data:`PAIRS` on the claim's measures, with a 95 %
    percentile interval over test images drawn with replacement; every model and seed is
    scored on the same draw (paired), so the interval is the test set's sampling noise of the
    difference, which the seed sd does not see. Keys ``"a-b"`` -> measure -> ``{diff, lo,
    hi}``."""
    labels = next(iter(preds.values()))[0]["labels"]
    rng = np.random.default_rng(seed)
    models = sorted({m for pair in PAIRS for m in pair})

    def averaged(idx: np.ndarray) -> dict[str, dict[str, float]]:
        out = {}
        for m in models:
            scores = [claim_measures(p["probs"][idx], labels[idx]) for p in preds[m]]
            out[m] = {k: float(np.mean([r[k] for r in scores])) for k in CLAIM}
        return out

    full = averaged(np.arange(len(labels)))
    draws = [averaged(rng.integers(0, len(labels), len(labels))) for _ in range(n_boot)]
    result: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in PAIRS:
        result[f"{a}-{b}"] = {}
        for k in CLAIM:
            diffs = [d[a][k] - d[b][k] for d in draws]
            lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
            result[f"{a}-{b}"][k] = {"diff": full[a][k] - full[b][k], "lo": float(lo),
                                     "hi": float(hi)}
    return result


def compare(result: dict[str, Any], a: str, b: str, key: str) -> dict[str, Any]:
    """``a - b`` on ``key`` with the yard ``hypot(sd_a, sd_b)`` (seed sds, ddof 1): ``better``
    or ``worse`` (in the claim's direction) when the difference exceeds the yard and, if
    ``result["paired_bootstrap"]`` is there, its 95 % interval over test images excludes 0 on
    the same side; ``same`` otherwise."""
    ra, rb = result[a][key], result[b][key]
    diff = ra["mean"] - rb["mean"]
    yard = float(np.hypot(ra["std"] or 0.0, rb["std"] or 0.0))
    signed = CLAIM[key] * diff
    interval = result.get("paired_bootstrap", {}).get(f"{a}-{b}", {}).get(key)
    # the interval in the claim's direction; without one, neither bound stands in the way
    signed_lo, signed_hi = (sorted(CLAIM[key] * interval[x] for x in ("lo", "hi"))
                            if interval else (math.inf, -math.inf))
    word = ("better" if signed > yard and signed_lo > 0
            else "worse" if signed < -yard and signed_hi < 0 else "same")
    return {"a": a, "b": b, "key": key, "diff": diff, "yard": yard, "word": word,
            "interval": interval}


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Where the students' gain on difficult labels comes from, in plain words.

    On mAP-hard and the difficult-label FP rate: ``kd`` vs ``gt`` (distillation as such),
    ``pdd`` vs ``kd`` (the calibration branch in the distilled distribution), ``ud`` vs
    ``pdd`` (UAD) and ``ud`` vs ``kd``. A difference counts only beyond the seeds' combined
    sd and outside the paired bootstrap interval's 0 (:func:`compare`). The answer is
    ``uncertainty distillation`` when ud beats kd on one measure and is not worse on the
    other; ``distillation as such`` when kd beats gt that way and ud does not beat kd; ``no
    gain`` when neither kd nor ud is better than gt on either measure; ``not resolvable``
    otherwise (a gain over gt that the controls cannot attribute).
    """
    rows = [compare(result, a, b, key) for a, b in PAIRS for key in CLAIM]

    def beats(a: str, b: str) -> bool:
        words = [r["word"] for r in rows if (r["a"], r["b"]) == (a, b)]
        return "better" in words and "worse" not in words

    if beats("ud", "kd"):
        answer = "uncertainty distillation"
    elif beats("kd", "gt"):
        answer = "distillation as such"
    elif all(r["word"] != "better" for r in rows if r["b"] == "gt"):
        answer = "no gain"
    else:
        answer = "not resolvable"
    def interval(r: dict[str, Any]) -> str:
        i = r["interval"]
        return f", 95 % CI [{100 * i['lo']:+.2f}, {100 * i['hi']:+.2f}]" if i else ""

    text = "; ".join(f"{r['key']} {r['a']} - {r['b']} = {100 * r['diff']:+.2f} points "
                     f"(seed yard {100 * r['yard']:.2f}{interval(r)}: {r['word']})"
                     for r in rows)
    return {"answer": answer, "comparisons": rows, "text": text}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--teacher-epochs", type=int, default=16)
    args = parser.parse_args(argv)
    if args.quick:
        if args.out is None:
            parser.error("--quick needs --out")
        args.epochs, args.teacher_epochs, args.seeds = 1, 1, 2
    setup: dict[str, Any] = {**(QUICK if args.quick else FULL), "data_seed": 0,
                             "seeds": args.seeds, "epochs": args.epochs,
                             "teacher_epochs": args.teacher_epochs,
                             "students": {k: {"method": m, "ud": o}
                                          for k, (m, o) in STUDENTS.items()}}
    info = {**machine_info("cpu"), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    start = time.perf_counter()
    work = args.out or BENCH_DIR.parent / "runs" / "bench" / "ud_controls"
    work.mkdir(parents=True, exist_ok=True)
    data = ensure_data(work / "data", setup)
    teacher = train(work / "teacher", "ud-teacher", "resnet-small", args.teacher_epochs, 0,
                    data, setup, {})
    teacher_pred = predict(teacher, data / "test")
    result: dict[str, Any] = {"benchmark": "ud_controls", "setup": setup, "machine": info,
                              "teacher": {k: mean_std([v]) for k, v in
                                          measures(teacher_pred).items()}}
    result["teacher_branch"] = branch_diagnostic(teacher_pred)
    result["teacher_branch_auroc"] = result["teacher_branch"]["teacher_branch_auroc"]
    timing = work / "timing.jsonl"
    wall = {"teacher": wall_seconds(timing, [work / "teacher"])}
    per_seed: dict[str, list[dict[str, float | None]]] = {}
    preds: dict[str, list[dict[str, np.ndarray]]] = {}
    for name, (method, options) in STUDENTS.items():
        per_seed[name], preds[name] = [], []
        runs = [work / f"{name}-seed{seed}" for seed in range(args.seeds)]
        for seed, run in enumerate(runs):
            ckpt = train(run, method, "resnet-tiny", args.epochs, seed, data, setup, options,
                         teacher if method == "ud-student" else None)
            preds[name].append(predict(ckpt, data / "test"))
            per_seed[name].append(measures(preds[name][-1]))
        result[name] = {k: mean_std([r[k] for r in per_seed[name]]) for k in MEASURES}
        wall[name] = wall_seconds(timing, runs)
    result["training_wall"] = wall
    result["per_seed"] = per_seed
    result["paired_bootstrap"] = paired_bootstrap(preds, 100 if args.quick else 1000)
    result["verdict"] = verdict(result)
    result["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2, allow_nan=False)
    folder = work if args.quick else BENCH_DIR / "results"
    atomic_write_text(folder / "ud_controls.json", text + "\n")
    atomic_write_text(folder / "ud_controls.md", markdown(result))
    print(text)
    return result


if __name__ == "__main__":
    main()
