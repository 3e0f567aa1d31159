"""Uncertainty distillation on multi-label garment scenes: teacher, UD student, GT student.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ud_multilabel.py [--seeds 3] [--out DIR] [--quick]``.
Prints ONE JSON object on stdout and writes it atomically to ``benchmarks/results/
ud_multilabel.json``, with the table ``benchmarks/results/ud_multilabel.md`` (``--quick``: tiny
sizes, both files only under ``--out``). Densecal issue 7; method: METHODS.md section 5
(Song et al., ACM MM 2021).

Data: ``densecal data multilabel`` scenes (2-4 Fashion-MNIST garments on a texture, the six
default classes, "difficult" flags for small, occluded or low-contrast garments), 48 x 48 px,
2500 train / 200 val / 500 test images, scene seed 0 (the same data for every seed).

Models, each trained with ``densecal train`` from scratch for the same number of epochs (8;
Adam, lr 1e-3, batch 32), per seed s in 0..seeds-1 (``--seed s``):

- ``teacher``: ``--method ud-teacher --model resnet-small`` (BCE + PAL-N);
- ``student_ud``: ``--method ud-student --model resnet-tiny --teacher`` the teacher of the same
  seed (L_PDD + L_UAD, T = 3, UAD weight 0.1, no ground-truth term: densecal's defaults);
- ``student_gt``: ``--method ud-gt --model resnet-tiny``: the student backbone and schedule,
  trained on the ground truth only (the teacher's loss).

Measured on the test split with ``densecal.methods.ud.evaluate_multilabel`` (probabilities
``sigmoid(o)``, difficult labels ignored): ``map``, ``map_hard`` (mAP over the images that carry a
difficult label), ``cf1`` and ``of1`` at threshold 0.5, and ``ece`` = the class-wise ECE (mean over
classes of the 10-bin ECE of p_c against y_c). All values are fractions in [0, 1]; ``mean`` and
``std`` (sample standard deviation, ddof = 1; null with one seed) over the seeds, each seed's
values under ``per_seed``. NaN (e.g. no hard image in a tiny test set) is written as null.

Resumable: everything lives under ``--out`` (default ``runs/bench/ud_multilabel``): the data
folder, one run folder per model and seed, and ``RUN/eval_test.json``. A run with its evaluation is
skipped, a run with a checkpoint but no evaluation is continued with ``densecal train --resume``
(a finished one resumes as a no-op), so a killed script picks up where it stopped.

Expected time of the full run: about 20-30 minutes per seed with ``OMP_NUM_THREADS=1`` on a
loaded 2-core CPU (measured for seed 0: teacher ~100 s per epoch, distilled student ~97 s per
epoch (it runs the teacher too), ground-truth student ~19 s per epoch); ``--quick`` takes
about 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from calibration_metrics import machine_info  # noqa: E402

from densecal.atomic import atomic_write_text  # noqa: E402

#: result key -> (densecal method, backbone); students share backbone and schedule.
MODELS: dict[str, tuple[str, str]] = {
    "teacher": ("ud-teacher", "resnet-small"),
    "student_ud": ("ud-student", "resnet-tiny"),
    "student_gt": ("ud-gt", "resnet-tiny"),
}
#: result key -> key of ``evaluate_multilabel``'s dictionary.
METRICS: dict[str, str] = {
    "map": "map",
    "map_hard": "map_hard",
    "cf1": "cf1",
    "of1": "of1",
    "ece": "classwise_ece",
}
#: further per-seed values (not aggregated).
EXTRA_METRICS: dict[str, str] = {"ece_top_label": "ece", "n_images": "n_images"}

FULL = {"n_train": 2500, "n_val": 200, "n_test": 500, "scene_size": 48, "image_size": 48,
        "epochs": 8, "batch_size": 32}
QUICK = {"n_train": 16, "n_val": 8, "n_test": 16, "scene_size": 32, "image_size": 16,
         "epochs": 1, "batch_size": 8}


def densecal_cli(args: list[str]) -> None:
    """Run ``densecal ARGS`` in this process, its stdout sent to stderr (ours is the JSON).

    Raises:
        RuntimeError: the command ended with a non-zero exit code.
    """
    from densecal.cli.main import main as cli

    with contextlib.redirect_stdout(sys.stderr):
        try:
            cli(args)
        except SystemExit as exc:
            raise RuntimeError(f"densecal {' '.join(args)} failed (exit code {exc.code})") from None


def ensure_data(out: Path, setup: dict[str, Any]) -> Path:
    """The scene folder ``out`` (``train``/``val``/``test``), generated once.

    Generated into ``out.partial`` and renamed at the end, so a killed generation is redone.
    """
    if all((out / split / "labels.csv").is_file() for split in ("train", "val", "test")):
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    densecal_cli(["data", "multilabel", "--out", str(partial), "--n-train", str(setup["n_train"]),
                  "--n-val", str(setup["n_val"]), "--n-test", str(setup["n_test"]),
                  "--size", str(setup["scene_size"]), "--seed", str(setup["data_seed"])])
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def train_run(model: str, seed: int, data: Path, work: Path, setup: dict[str, Any]) -> Path:
    """Train (or continue) the run of ``model`` and ``seed``; returns its checkpoint."""
    method, backbone = MODELS[model]
    run = work / f"{model}-seed{seed}"
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        densecal_cli(["train", "--resume", "--out", str(run), "--epochs", str(setup["epochs"])])
        return ckpt
    args = ["train", "--method", method, "--model", backbone, "--data", str(data / "train"),
            "--val-data", str(data / "val"), "--epochs", str(setup["epochs"]),
            "--image-size", str(setup["image_size"]), "--batch-size", str(setup["batch_size"]),
            "--lr", str(setup["lr"]), "--seed", str(seed), "--out", str(run)]
    if method == "ud-student":
        args += ["--teacher", str(work / f"teacher-seed{seed}" / "checkpoints" / "last.ckpt")]
    densecal_cli(args)
    return ckpt


def _finite(value: Any) -> float | int | None:
    """A JSON-safe number: NaN and infinities become ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_run(model: str, seed: int, data: Path, work: Path,
                 setup: dict[str, Any]) -> dict[str, Any]:
    """Test-split values of one run, cached in ``RUN/eval_test.json``.

    A cache of another epoch count is ignored: the run is resumed to ``setup["epochs"]``.
    """
    run = work / f"{model}-seed{seed}"
    cache = run / "eval_test.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("epochs") == setup["epochs"]:
            return cached
    start = time.perf_counter()
    ckpt = train_run(model, seed, data, work, setup)
    train_s = time.perf_counter() - start
    from densecal.methods.ud import evaluate_multilabel

    values = evaluate_multilabel(ckpt, data / "test")
    missing = sorted(set(METRICS.values()) - set(values))
    if missing:
        raise RuntimeError(f"evaluate_multilabel returned no {', '.join(missing)}")
    record: dict[str, Any] = {"seed": seed, "epochs": setup["epochs"]}
    for key, source in {**METRICS, **EXTRA_METRICS}.items():
        record[key] = _finite(values.get(source))
    record["train_seconds_this_invocation"] = round(train_s, 2)
    atomic_write_text(cache, json.dumps(record, indent=2) + "\n")
    return record


def mean_std(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (ddof = 1) of the finite values.

    ``None`` values are left out (``n`` counts the others); mean is ``None`` without values,
    std ``None`` with fewer than two.

    >>> mean_std([0.25, 0.75])
    {'mean': 0.5, 'std': 0.3535533905932738, 'n': 2}
    """
    finite = [float(v) for v in values if v is not None]
    n = len(finite)
    mean = sum(finite) / n if n else None
    std = (math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
           if n >= 2 and mean is not None else None)
    return {"mean": mean, "std": std, "n": n}


def markdown_table(result: dict[str, Any]) -> str:
    """The result as a markdown table, values in percent as ``mean ± std``."""
    def cell(stats: dict[str, Any]) -> str:
        if stats["mean"] is None:
            return "n/a"
        text = f"{100 * stats['mean']:.2f}"
        return text + (f" ± {100 * stats['std']:.2f}" if stats["std"] is not None else "")

    setup = result["setup"]
    lines = [
        f"Uncertainty distillation on multi-label garment scenes ({setup['n_train']} train / "
        f"{setup['n_test']} test images at {setup['image_size']} px, {setup['epochs']} epochs, "
        f"{setup['seeds']} seeds; mean ± std in %; ECE: class-wise, {setup['n_bins']} bins; "
        f"CF1/OF1 with difficult labels ignored, densecal's default counting, not the ML-GCN "
        f"code's, which counts a predicted difficult label as a false positive).",
        "",
        "| model | backbone | mAP | mAP hard | CF1 | OF1 | class-wise ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, (_method, backbone) in MODELS.items():
        cells = " | ".join(cell(result[model][key]) for key in METRICS)
        lines.append(f"| {model} | {backbone} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and tabulate; returns the JSON object it prints."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and 1 epoch (for tests); writes only under --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder: data, runs and evaluations (default "
                             "runs/bench/ud_multilabel; --quick: a temporary folder)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    started = time.perf_counter()
    setup: dict[str, Any] = {**(QUICK if args.quick else FULL), "lr": 1e-3, "data_seed": 0,
                             "seeds": args.seeds, "n_bins": 10, "quick": args.quick,
                             "backbones": {k: v[1] for k, v in MODELS.items()},
                             "methods": {k: v[0] for k, v in MODELS.items()},
                             "values": "fractions in [0, 1]; std: sample std over seeds",
                             "ece": "class-wise ECE (evaluate_multilabel's classwise_ece)"}
    if args.epochs is not None:
        setup["epochs"] = args.epochs
    info = machine_info("cpu")
    info["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")

    with contextlib.ExitStack() as stack:
        if args.out is not None:
            work = args.out
        elif args.quick:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            work = BENCH_DIR.parent / "runs" / "bench" / "ud_multilabel"
        work.mkdir(parents=True, exist_ok=True)
        data = ensure_data(work / "data", setup)
        per_seed: dict[str, list[dict[str, Any]]] = {model: [] for model in MODELS}
        for seed in range(args.seeds):
            for model in MODELS:  # teacher first: the student of this seed needs it
                per_seed[model].append(evaluate_run(model, seed, data, work, setup))

    result: dict[str, Any] = {"benchmark": "ud_multilabel", "setup": setup, "machine": info}
    for model in MODELS:
        result[model] = {key: mean_std([r[key] for r in per_seed[model]]) for key in METRICS}
    result["per_seed"] = per_seed
    result["seconds_this_invocation"] = round(time.perf_counter() - started, 2)

    text = json.dumps(result, indent=2)
    results_dir = (args.out if args.quick else BENCH_DIR / "results")
    if results_dir is not None:
        atomic_write_text(results_dir / "ud_multilabel.json", text + "\n")
        atomic_write_text(results_dir / "ud_multilabel.md", markdown_table(result))
    print(text)
    return result


if __name__ == "__main__":
    main()
