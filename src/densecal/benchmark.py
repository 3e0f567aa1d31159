"""``densecal benchmark``: every calibration method on the same data, model and schedule.

For each method and seed the benchmark trains (or reuses) a run, evaluates it on the test split
and, when present, the OOD split, and stores the result of that run in its own folder. A killed
benchmark continues where it stopped: finished evaluations are read back, unfinished training
resumes from its last checkpoint. At the end it writes, atomically:

* ``benchmark.json`` (schema ``densecal.benchmark/1``: one record per method, seed and split with
  the ``calibration`` and ``segmentation`` blocks of ``densecal.evaluate/1``),
* ``runs.csv`` (the same records, one row each),
* ``benchmark.md`` (mean ± std over seeds per method and split),
* ``ece_vs_maxf.png`` (test ECE against max-F, one point per run).

Methods are the training methods of :mod:`densecal.methods` plus ``NAME+ts``: the ``NAME`` run
with post-hoc temperature scaling fitted on the validation split.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densecal.atomic import staged_directory
from densecal.errors import input_error
from densecal.evaluation import EvaluationOptions
from densecal.methods import TrainConfig, last_checkpoint, method_names, train
from densecal.predict import calibrate_checkpoint, evaluate_checkpoint
from densecal.report.tables import format_value, markdown_table
from densecal.report.writers import write_json, write_per_image_csv, write_report_md

__all__ = ["BENCHMARK_SCHEMA", "DEFAULT_METHODS", "BenchmarkSchedule", "run_benchmark"]

BENCHMARK_SCHEMA = "densecal.benchmark/1"
DEFAULT_METHODS = ("bce", "bce+ts", "ls", "focal", "mbls", "svls", "slp", "aslp")
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ECE %", "calibration", "ece"), ("OE %", "calibration", "oe"),
    ("MCE %", "calibration", "mce"), ("NLL", "calibration", "nll"),
    ("MAE", "segmentation", "mae"), ("max-F", "segmentation", "max_f"),
    ("S-m", "segmentation", "s_measure"),
)  # fmt: skip


@dataclass(frozen=True)
class BenchmarkSchedule:
    """Model and schedule shared by every method (defaults: the demo's)."""

    model: str = "unet-small"
    epochs: int = 120
    image_size: int = 64
    batch_size: int = 16
    lr: float = 2e-3
    augment: bool = False
    aslp_warmup: int = 5


def _splits(data: Path) -> dict[str, Path]:
    splits = {name: data / name for name in ("train", "val", "test", "ood")
              if (data / name).is_dir()}  # fmt: skip
    missing = [name for name in ("train", "val", "test") if name not in splits]
    if missing:
        raise input_error(data, f"benchmark data needs split folders train, val and test "
                                f"(missing: {', '.join(missing)}); `densecal data demo` writes "
                                f"this layout")
    return splits


def _check_methods(methods: Sequence[str]) -> None:
    known = set(method_names())
    for method in methods:
        base = method.removesuffix("+ts")
        if base not in known:
            raise input_error("--methods", f"unknown method {method!r}; choose among "
                              f"{', '.join(sorted(known))} (each optionally with +ts)")


def _evaluate_run(method: str, seed: int, splits: dict[str, Path], schedule: BenchmarkSchedule,
                  runs_dir: Path, progress: bool) -> dict[str, Any]:
    """Train (or resume) one run and evaluate it; the result is cached in ``eval.json``."""
    base = method.removesuffix("+ts")
    run_dir = runs_dir / f"{base}-seed{seed}"
    cache = runs_dir / f"{method}-seed{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    config = TrainConfig(method=base, data=str(splits["train"]), val_data=str(splits["val"]),
                         seed=seed, **dataclasses.asdict(schedule))
    checkpoint = last_checkpoint(run_dir)
    done = checkpoint.is_file() and _finished(run_dir, schedule.epochs)
    if not done:
        checkpoint = train(config, run_dir, resume=checkpoint.is_file(), progress=progress)
    if method.endswith("+ts"):
        _, checkpoint = calibrate_checkpoint(checkpoint, splits["val"])
    evaluations = evaluate_checkpoint(checkpoint, splits["test"], EvaluationOptions(),
                                      ood=splits.get("ood"))
    record = {split: {"calibration": ev.result["calibration"],
                      "segmentation": ev.result["segmentation"]}
              for split, ev in evaluations.items()}  # fmt: skip
    write_json(cache, record)
    return record


def _finished(run_dir: Path, epochs: int) -> bool:
    import torch

    state = torch.load(last_checkpoint(run_dir), map_location="cpu", weights_only=False)
    return int(state.get("epoch", -1)) + 1 >= epochs


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_table(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Markdown table: one row per method and split, mean ± std over seeds per column."""
    rows = []
    for method in methods:
        for split in ("test", "ood"):
            chosen = [r for r in records if r["method"] == method and r["split"] == split]
            if not chosen:
                continue
            cells = [method, split, str(len(chosen))]
            for _, section, key in TABLE_COLUMNS:
                mean, std = _mean_std([float(r[section][key]) for r in chosen])
                cells.append(f"{format_value(section, key, mean)} ± "
                             f"{format_value(section, key, std)}")
            rows.append(cells)
    return markdown_table(["Method", "Split", "Seeds", *[c[0] for c in TABLE_COLUMNS]], rows)


def run_benchmark(out_dir: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS,
                  seeds: int = 3, data: str | Path | None = None,
                  schedule: BenchmarkSchedule | None = None, progress: bool = True,
                  on_run: Callable[[str, int, dict[str, Any]], None] | None = None
                  ) -> dict[str, Any]:
    """Run (or resume) the benchmark and write its tables; returns the benchmark JSON.

    Args:
        out_dir: output folder (``runs/`` inside holds every run and its cached evaluation).
        methods: method names, ``NAME+ts`` for temperature-scaled ``NAME``.
        seeds: seeds 0 .. seeds-1 for every method.
        data: a folder with ``train``, ``val``, ``test`` and optionally ``ood`` folder datasets;
            default: the demo scenes, written to ``out_dir/data``.
        schedule: model and schedule shared by all methods.
        progress: show training progress bars.
        on_run: called after each (method, seed) with its record (for progress output).

    Raises:
        DensecalInputError: unknown method, seeds < 1, or a data folder without the splits.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    schedule = schedule or BenchmarkSchedule()
    _check_methods(methods)
    if seeds < 1:
        raise input_error("--seeds", f"must be at least 1, got {seeds}")
    if data is None:
        from densecal.data import write_demo_dataset
        from densecal.demo import demo_data_config

        data = out_dir / "data"
        if not (data / "test").is_dir():
            write_demo_dataset(data, demo_data_config())
    splits = _splits(Path(data))
    records: list[dict[str, Any]] = []
    for method in methods:
        for seed in range(seeds):
            result = _evaluate_run(method, seed, splits, schedule, out_dir / "runs", progress)
            if on_run is not None:
                on_run(method, seed, result)
            records += [{"method": method, "seed": seed, "split": split, **blocks}
                        for split, blocks in result.items()]  # fmt: skip
    output = {"schema": BENCHMARK_SCHEMA, "runs": records,
              "schedule": dataclasses.asdict(schedule), "data": str(data),
              "wall_time_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    _write_outputs(out_dir, output, list(methods))
    return output


def _write_outputs(out_dir: Path, output: dict[str, Any], methods: list[str]) -> None:
    from densecal.report.benchmark_figures import save_metric_scatter

    records = output["runs"]
    with staged_directory(out_dir) as stage:
        write_json(stage / "benchmark.json", output)
        write_per_image_csv(stage / "runs.csv", [
            {"method": r["method"], "seed": r["seed"], "split": r["split"],
             **{f"{k}": v for k, v in r["calibration"].items()},
             **{f"{k}": v for k, v in r["segmentation"].items()}} for r in records])
        table = summary_table(records, methods)
        s = output["schedule"]
        write_report_md(stage / "benchmark.md", "densecal benchmark", [
            ("Setup", f"Data `{output['data']}`; model `{s['model']}`, {s['epochs']} epochs at "
                      f"{s['image_size']} px, batch {s['batch_size']}, Adam lr {s['lr']}, "
                      f"augmentation {'on' if s['augment'] else 'off'}; the same for every "
                      f"method. `+ts`: temperature fitted on the validation split. Wall time "
                      f"{output['wall_time_s']} s."),
            ("Results (mean ± std over seeds)", table + "\n\nECE, OE, MCE in %; pooled "
             "top-label, 10 bins, raw protocol."),
            ("ECE against max-F (test)", "![ECE vs max-F](ece_vs_maxf.png)"),
        ])
        test = [r for r in records if r["split"] == "test"]
        save_metric_scatter(
            {m: [(100 * r["calibration"]["ece"], r["segmentation"]["max_f"])
                 for r in test if r["method"] == m] for m in methods},
            stage / "ece_vs_maxf.png", xlabel="test ECE (%)", ylabel="test max-F")
