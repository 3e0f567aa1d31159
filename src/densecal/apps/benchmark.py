"""``densecal benchmark``: every calibration method on the same data, model and schedule.

For each method and seed the benchmark trains (or reuses) a run, evaluates it on the test split
and, when present, the OOD split, and stores the result of that run in its own folder. A killed
benchmark continues where it stopped: finished evaluations are read back, unfinished training
resumes from its last checkpoint. ``--out`` is a workspace
(:func:`densecal.atomic.claim_workspace`): ``data/`` (the demo scenes when no ``--data`` is
given), ``runs/`` and ``report/``, which at the end is replaced as a whole with:

* ``benchmark.json`` (schema ``densecal.benchmark/1``: one record per method, seed and split with
  the ``calibration`` and ``segmentation`` blocks of ``densecal.evaluate/2``),
* ``runs.csv`` (the same records, one row each),
* ``benchmark.md`` (mean ± std over seeds per method and split),
* ``ece_vs_maxf.png`` (test ECE against max-F, one point per run).

Methods are the training methods of :mod:`densecal.methods` plus ``NAME+ts``: the ``NAME`` run
with post-hoc temperature scaling fitted on the validation split (binary runs).

Multi-class data (``num_classes >= 2``, e.g. ``densecal data brain``) keeps every block of
``densecal.evaluate-multiclass/3`` that the evaluation reports (``calibration``,
``segmentation``, ``soft_truth`` with a ``soft/`` folder, ``per_volume`` means and stds); the
table shows Dice, all-pixel / foreground / soft-truth / class-wise ECE, NLL and the soft-truth
Brier score, the scatter plot ECE against Dice, and with soft truth ``example_slice.png`` shows
one test slice: image, soft truth, each method's prediction and its per-pixel confidence error.
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

from densecal._checks import check_out_apart
from densecal.apps.calibrate import calibrate_checkpoint
from densecal.apps.evaluate_checkpoint import evaluate_checkpoint
from densecal.atomic import claim_workspace, staged_directory
from densecal.errors import input_error
from densecal.evaluation.options import EvaluationOptions
from densecal.methods.config import TrainConfig
from densecal.methods.engine.checkpoints import epochs_trained, read_checkpoint
from densecal.methods.engine.run_folder import last_checkpoint
from densecal.methods.registry import method_names
from densecal.methods.train import run_started, train
from densecal.report.tables import format_percent, format_value, markdown_table
from densecal.report.writers import write_json, write_per_image_csv, write_report_md

__all__ = [
    "BENCHMARK_SCHEMA",
    "DEFAULT_METHODS",
    "MULTICLASS_METHODS",
    "BenchmarkSchedule",
    "run_benchmark",
]

BENCHMARK_SCHEMA = "densecal.benchmark/1"
BENCHMARK_WORKSPACE = "benchmark-workspace"
DEFAULT_METHODS = ("bce", "bce+ts", "ls", "focal", "mbls", "svls", "slp", "aslp")
MULTICLASS_METHODS = ("ce", "ls", "focal", "mbls", "svls", "vls")

Column = tuple[str, tuple[str, ...]]
"""A table column: its label (``%`` at the end: shown in percent) and the record keys to it."""

TABLE_COLUMNS: tuple[Column, ...] = (
    ("ECE %", ("calibration", "ece")), ("OE %", ("calibration", "oe")),
    ("MCE %", ("calibration", "mce")), ("NLL", ("calibration", "nll")),
    ("MAE", ("segmentation", "mae")), ("max-F", ("segmentation", "max_f")),
    ("S-m", ("segmentation", "s_measure")),
)  # fmt: skip
MULTICLASS_COLUMNS: tuple[Column, ...] = (
    ("Dice", ("segmentation", "dice")), ("ECE %", ("calibration", "ece")),
    ("fg ECE %", ("calibration", "ece_foreground")), ("soft ECE %", ("soft_truth", "ece")),
    ("cw-ECE %", ("calibration", "classwise_ece")), ("NLL", ("calibration", "nll")),
    ("soft Brier", ("soft_truth", "brier")), ("vol. Dice", ("per_volume", "mean", "dice")),
    ("vol. ECE %", ("per_volume", "mean", "ece")),
)  # fmt: skip
_RECORD_BLOCKS = ("calibration", "segmentation", "soft_truth", "per_volume")


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
    num_classes: int = 1


def _splits(data: Path) -> dict[str, Path]:
    splits = {name: data / name for name in ("train", "val", "test", "ood")
              if (data / name).is_dir()}  # fmt: skip
    missing = [name for name in ("train", "val", "test") if name not in splits]
    if missing:
        raise input_error(data, f"benchmark data needs split folders train, val and test "
                                f"(missing: {', '.join(missing)}); `densecal data demo` writes "
                                f"this layout")
    return splits


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``NAME[@KEY=VALUE[;KEY=VALUE...]][+ts]`` into the method and its TrainConfig
    overrides (values read as JSON when they parse): ``"vls@vls_mix=0.6"`` trains ``vls`` with
    ``vls_mix=0.6``, a variant with its own runs and table row.

    Raises:
        DensecalInputError: unknown method or TrainConfig field, or a malformed override.
    """
    name, _, rest = spec.removesuffix("+ts").partition("@")
    overrides: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in filter(None, rest.split(";")):
        key, sep, text = item.partition("=")
        if not sep or key not in fields or key in ("method", "seed", "data", "val_data"):
            raise input_error("--methods", f"bad override {item!r} in {spec!r}; expected "
                                           "FIELD=VALUE with a TrainConfig field")
        try:
            overrides[key] = json.loads(text)
        except ValueError:
            overrides[key] = text
    if name not in method_names():
        raise input_error("--methods", f"unknown method {spec!r}; choose among "
                          f"{', '.join(sorted(method_names()))} (each optionally with "
                          f"@FIELD=VALUE overrides and +ts)")
    return name, overrides


def _check_methods(methods: Sequence[str]) -> None:
    for method in methods:
        parse_method(method)


def _evaluate_run(method: str, seed: int, splits: dict[str, Path], schedule: BenchmarkSchedule,
                  runs_dir: Path, progress: bool) -> dict[str, Any]:
    """Train (or resume) one run and evaluate it; the result is cached in ``eval.json``."""
    base = method.removesuffix("+ts")
    name, overrides = parse_method(method)
    run_dir = runs_dir / f"{base}-seed{seed}"
    cache = runs_dir / f"{method}-seed{seed}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    config = TrainConfig(method=name, data=str(splits["train"]), val_data=str(splits["val"]),
                         seed=seed, **{**dataclasses.asdict(schedule), **overrides})
    checkpoint = last_checkpoint(run_dir)
    done = checkpoint.is_file() and _finished(run_dir, schedule.epochs)
    if not done:
        checkpoint = train(config, run_dir, resume=run_started(run_dir), progress=progress)
    if method.endswith("+ts"):
        _, checkpoint = calibrate_checkpoint(checkpoint, splits["val"])
    evaluations = evaluate_checkpoint(checkpoint, splits["test"], EvaluationOptions(),
                                      ood=splits.get("ood"))
    record = {split: _record_blocks(ev.result) for split, ev in evaluations.items()}
    write_json(cache, record)
    return record


def _record_blocks(result: dict[str, Any]) -> dict[str, Any]:
    """The blocks of an evaluation kept per run (per-volume: means and stds, not each volume)."""
    blocks = {key: result[key] for key in _RECORD_BLOCKS if key in result}
    if "per_volume" in blocks:
        blocks["per_volume"] = {k: v for k, v in blocks["per_volume"].items() if k != "volumes"}
    return blocks


def _finished(run_dir: Path, epochs: int) -> bool:
    state, _ = read_checkpoint(last_checkpoint(run_dir))
    return epochs_trained(state) >= epochs


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _lookup(record: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The value at ``path`` in a record, or None where the evaluation did not report it."""
    value: Any = record
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def _cell(label: str, path: tuple[str, ...], value: float) -> str:
    if label.endswith("%"):
        return format_percent(value)
    return format_value(path[0], path[-1], value)


def summary_columns(records: list[dict[str, Any]]) -> tuple[Column, ...]:
    """The table's columns: the multi-class set when the records carry Dice, else the binary
    set; columns no record reports are left out."""
    multiclass = any(_lookup(r, ("segmentation", "dice")) is not None
                     and _lookup(r, ("segmentation", "max_f")) is None for r in records)
    columns = MULTICLASS_COLUMNS if multiclass else TABLE_COLUMNS
    return tuple(c for c in columns if any(_lookup(r, c[1]) is not None for r in records))


def summary_table(records: list[dict[str, Any]], methods: Sequence[str]) -> str:
    """Markdown table: one row per method and split, mean ± std over seeds per column."""
    columns = summary_columns(records)
    rows = []
    for method in methods:
        for split in ("test", "ood"):
            chosen = [r for r in records if r["method"] == method and r["split"] == split]
            if not chosen:
                continue
            cells = [method, split, str(len(chosen))]
            for label, path in columns:
                values = [v for r in chosen if (v := _lookup(r, path)) is not None]
                if not values:
                    cells.append("n/a")
                    continue
                mean, std = _mean_std(values)
                cells.append(f"{_cell(label, path, mean)} ± {_cell(label, path, std)}")
            rows.append(cells)
    return markdown_table(["Method", "Split", "Seeds", *[c[0] for c in columns]], rows)


def run_benchmark(out_dir: str | Path, *, methods: Sequence[str] | None = None,
                  seeds: int = 3, data: str | Path | None = None,
                  schedule: BenchmarkSchedule | None = None, progress: bool = True,
                  on_run: Callable[[str, int, dict[str, Any]], None] | None = None
                  ) -> dict[str, Any]:
    """Run (or resume) the benchmark and write its tables; returns the benchmark JSON.

    Args:
        out_dir: workspace folder: ``runs/`` holds every run and its cached evaluation,
            ``report/`` the tables and figures.
        methods: method names, ``NAME+ts`` for temperature-scaled ``NAME``; default
            :data:`DEFAULT_METHODS` (binary) or :data:`MULTICLASS_METHODS`
            (``schedule.num_classes >= 2``).
        seeds: seeds 0 .. seeds-1 for every method.
        data: a folder with ``train``, ``val``, ``test`` and optionally ``ood`` folder datasets;
            default: the demo scenes (binary), written to ``out_dir/data``.
        schedule: model and schedule shared by all methods.
        progress: show training progress bars.
        on_run: called after each (method, seed) with its record (for progress output).

    Raises:
        DensecalInputError: unknown method, seeds < 1, a data folder without the splits, or
            multi-class without ``data``.
    """
    start = time.perf_counter()
    out_dir = check_out_apart(out_dir, {"--data": data})
    schedule = schedule or BenchmarkSchedule()
    multiclass = schedule.num_classes > 1
    methods = list(methods or (MULTICLASS_METHODS if multiclass else DEFAULT_METHODS))
    _check_methods(methods)
    if seeds < 1:
        raise input_error("--seeds", f"must be at least 1, got {seeds}")
    if data is None and multiclass:
        raise input_error("--data", "a multi-class benchmark needs a data folder (e.g. "
                                    "`densecal data brain --out brain`)")
    splits = _splits(Path(data)) if data is not None else None  # checked before --out is made
    claim_workspace(out_dir, BENCHMARK_WORKSPACE)
    if splits is None:
        from densecal.apps.demo import demo_data_config
        from densecal.data import write_demo_dataset

        data = out_dir / "data"
        if not (data / "test").is_dir():
            write_demo_dataset(data, demo_data_config())
        splits = _splits(data)
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
    _write_outputs(out_dir, output, methods, splits)
    return output


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record flattened to scalars (``block.key``; per-class lists left out)."""
    row: dict[str, Any] = {"method": record["method"], "seed": record["seed"],
                           "split": record["split"]}
    for block in _RECORD_BLOCKS:
        for key, value in _flatten(record.get(block, {}), block).items():
            row[key] = value
    return row


def _flatten(block: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in block.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}.{key}"))
        elif not isinstance(value, list):
            out[f"{prefix}.{key}" if prefix not in ("calibration", "segmentation") else key] = value
    return out


def _write_outputs(out_dir: Path, output: dict[str, Any], methods: list[str],
                   splits: dict[str, Path]) -> None:
    from densecal.report.benchmark_figures import save_metric_scatter

    records = output["runs"]
    multiclass = output["schedule"].get("num_classes", 1) > 1
    with staged_directory(out_dir / "report", "benchmark") as stage:
        write_json(stage / "benchmark.json", output)
        write_per_image_csv(stage / "runs.csv", [_csv_row(r) for r in records])
        table = summary_table(records, methods)
        s = output["schedule"]
        x_name, x_key, x_file = (("Dice", "dice", "ece_vs_dice.png") if multiclass
                                 else ("max-F", "max_f", "ece_vs_maxf.png"))
        notes = ("ECE in %, pooled top-label, 10 bins; fg: foreground pixels only (ground truth "
                 "not background); soft: against the soft truth (expected accuracy); cw: "
                 "class-wise; vol.: mean over volumes." if multiclass else
                 "ECE, OE, MCE in %; pooled top-label, 10 bins, raw protocol.")
        sections = [
            ("Setup", f"Data `{output['data']}`; model `{s['model']}`, {s['epochs']} epochs at "
                      f"{s['image_size']} px, batch {s['batch_size']}, Adam lr {s['lr']}, "
                      f"augmentation {'on' if s['augment'] else 'off'}; the same for every "
                      f"method. `+ts`: temperature fitted on the validation split. Wall time "
                      f"{output['wall_time_s']} s."),
            ("Results (mean ± std over seeds)", table + "\n\n" + notes),
            (f"ECE against {x_name} (test)", f"![ECE vs {x_name}]({x_file})"),
        ]
        test = [r for r in records if r["split"] == "test"]
        save_metric_scatter(
            {m: [(100 * r["calibration"]["ece"], r["segmentation"][x_key])
                 for r in test if r["method"] == m] for m in methods},
            stage / x_file, xlabel="test ECE (%)", ylabel=f"test {x_name}")
        if multiclass and (splits["test"] / "soft").is_dir():
            name = _save_example(stage / "example_slice.png", splits["test"], methods,
                                 out_dir / "runs")
            sections.append((f"One test slice ({name})", "Image, soft truth (RGB = classes "
                             "0/1/2), each method's prediction (seed 0) and its per-pixel "
                             "confidence error |max_k p_k - s_(argmax p)|.\n\n"
                             "![example](example_slice.png)"))
        write_report_md(stage / "benchmark.md", "densecal benchmark", sections)


def _save_example(path: Path, test: Path, methods: list[str], runs_dir: Path) -> str:
    """Draw the test slice with the most partial-volume pixels for every method (seed 0)."""
    import numpy as np

    from densecal.data.pairs import find_pairs
    from densecal.data.readers import read_image
    from densecal.methods.segmentation.inference import load_module, predict_class_probabilities
    from densecal.report.benchmark_figures import save_soft_truth_examples

    pairs = {p.name: p for p in find_pairs(test)}
    soft = {n: test / "soft" / f"{n}.npy" for n in pairs if (test / "soft" / f"{n}.npy").is_file()}
    mixed = {n: int((np.load(f).max(0) < 0.9).sum()) for n, f in sorted(soft.items())}
    name = max(mixed, key=lambda n: (mixed[n], n))
    image = read_image(pairs[name].image)
    predictions = {}
    for method in methods:
        if method.endswith("+ts"):
            continue
        module = load_module(last_checkpoint(runs_dir / f"{method}-seed0"))
        predictions[method] = next(predict_class_probabilities(module, [image]))
    save_soft_truth_examples(image, np.load(soft[name]), predictions, path)
    return name
