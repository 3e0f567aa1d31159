"""Write the outputs of ``densecal evaluate``: metrics.json, report.md, reliability.png, CSVs.

Every file is staged and moved into place only after all of them were produced, so a failure
leaves the output folder as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from densecal.atomic import staged_directory
from densecal.evaluation.schema import Evaluation, check_result_values
from densecal.report.figures import save_reliability_grid, save_risk_coverage_grid
from densecal.report.tables import format_percent, markdown_table, metrics_table
from densecal.report.writers import write_json, write_per_image_csv, write_report_md

__all__ = ["MULTICLASS_COLUMNS", "PER_VOLUME_COLUMNS", "SOFT_TRUTH_COLUMNS", "SUMMARY_COLUMNS",
           "multiclass_sections", "protocol_note", "summary_columns", "write_evaluation_outputs"]

SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("ECE %", "calibration", "ece"),
    ("OE %", "calibration", "oe"),
    ("MCE %", "calibration", "mce"),
    ("ACE %", "calibration", "ace"),
    ("NLL", "calibration", "nll"),
    ("Brier", "calibration", "brier"),
    ("Acc %", "calibration", "accuracy"),
    ("AURC %", "calibration", "aurc"),
    ("AUROC %", "calibration", "auroc"),
    ("MAE", "segmentation", "mae"),
    ("max-F", "segmentation", "max_f"),
    ("S-m", "segmentation", "s_measure"),
]


MULTICLASS_COLUMNS: list[tuple[str, str, str]] = [
    ("ECE %", "calibration", "ece"),
    ("fg-ECE %", "calibration", "ece_foreground"),
    ("OE %", "calibration", "oe"),
    ("MCE %", "calibration", "mce"),
    ("cw-ECE %", "calibration", "classwise_ece"),
    ("marg-ECE %", "calibration", "marginal_ece"),
    ("NLL", "calibration", "nll"),
    ("Brier", "calibration", "brier"),
    ("Acc %", "calibration", "accuracy"),
    ("Dice", "segmentation", "dice"),
    ("IoU", "segmentation", "iou"),
]
"""Main table of a multi-class result; a label ending in ``%`` shows a percentage."""

SOFT_TRUTH_COLUMNS: list[tuple[str, str, str]] = [
    ("ECE %", "soft_truth", "ece"),
    ("OE %", "soft_truth", "oe"),
    ("MCE %", "soft_truth", "mce"),
    ("cw-ECE %", "soft_truth", "classwise_ece"),
    ("Brier", "soft_truth", "brier"),
    ("NLL", "soft_truth", "nll"),
]

PER_VOLUME_COLUMNS: list[tuple[str, str]] = [
    ("Dice", "dice"),
    ("ECE %", "ece"),
    ("fg-ECE %", "ece_foreground"),
    ("soft ECE %", "ece_soft"),
    ("soft Brier", "brier_soft"),
]
"""Per-volume table: ``(label, key)`` of ``per_volume.mean`` / ``per_volume.std``."""


def summary_columns(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Table columns for a binary (SOD measures) or multi-class (Dice, IoU) result."""
    return MULTICLASS_COLUMNS if "multiclass" in result["schema"] else SUMMARY_COLUMNS


def _suffix(split: str, first: bool) -> str:
    return "" if first else f"_{split}"


def protocol_note(result: Mapping[str, Any]) -> str:
    """One markdown paragraph stating the protocol a result was computed under."""
    p = result["protocol"]
    if "num_classes" in p:
        note = (f"{p['num_classes']} classes, {p['n_bins']} equal-width bins (lo, hi], "
                f"top-label confidence, aggregate `{p['aggregate']}`, ignore_index "
                f"{p['ignore_index']}. Calibration in %, Dice / IoU pooled per class then "
                "averaged. fg-ECE: pixels whose ground-truth label is not background (0).")
        if "per_volume" in result:
            note += (" Per volume (stem before the first `__`): each volume pooled, then mean "
                     "± std (ddof 0) over volumes.")
        if "soft_truth" in result:
            note += " Soft truth: expected accuracy = soft probability of the predicted class."
        return note
    return (f"Protocol: `{p['protocol']}`, {p['n_bins']} equal-width bins (lo, hi], "
            f"confidence `{p['confidence']}`, threshold {p['threshold']}, aggregate "
            f"`{p['aggregate']}`, target `{p['target']}`. Calibration and accuracy are shown in %, "
            "MAE / max-F / S-measure as fractions.")


def _cell(label: str, value: Any) -> str:
    """A value as a percentage (label ending in ``%``) or with 3 decimals; n/a if missing."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return format_percent(value) if label.endswith("%") else f"{float(value):.3f}"


def multiclass_sections(evaluations: Mapping[str, Evaluation]) -> list[tuple[str, str]]:
    """Markdown sections of multi-class results (schema ``densecal.evaluate-multiclass/3``).

    ``Results`` (pooled, one row per split, with the protocol note), ``Per class`` (Dice, IoU,
    class-wise ECE), and when present ``Soft truth`` and ``Per volume`` (mean ± std).

    Args:
        evaluations: split name -> multi-class evaluation, in display order.

    Returns:
        ``(heading, markdown body)`` pairs for :func:`densecal.report.writers.write_report_md`.
    """
    results = {split: ev.result for split, ev in evaluations.items()}
    first = next(iter(results.values()))
    main = markdown_table(["Split", *(c[0] for c in MULTICLASS_COLUMNS)], [
        [split, *(_cell(label, r[sec].get(key)) for label, sec, key in MULTICLASS_COLUMNS)]
        for split, r in results.items()])
    per_class = markdown_table(["Split", "Class", "Dice", "IoU", "ECE %"], [
        [split, str(k), _cell("", dice), _cell("", r["segmentation"]["iou_class"][k]),
         _cell("%", r["calibration"]["ece_class"][k])]
        for split, r in results.items() for k, dice in enumerate(r["segmentation"]["dice_class"])])
    sections = [("Results", main + "\n" + protocol_note(first)), ("Per class", per_class)]
    soft = {split: r["soft_truth"] for split, r in results.items() if "soft_truth" in r}
    if soft:
        sections.append(("Soft truth", markdown_table(
            ["Split", *(c[0] for c in SOFT_TRUTH_COLUMNS)],
            [[split, *(_cell(label, values[key]) for label, _, key in SOFT_TRUTH_COLUMNS)]
             for split, values in soft.items()])))
    volumes = {split: r["per_volume"] for split, r in results.items() if "per_volume" in r}
    if volumes:
        columns = [c for c in PER_VOLUME_COLUMNS
                   if any(c[1] in v["mean"] for v in volumes.values())]
        rows = [[split, str(v["n_volumes"]),
                 *(f"{_cell(label, v['mean'].get(key))} ± {_cell(label, v['std'].get(key))}"
                   for label, key in columns)] for split, v in volumes.items()]
        sections.append(("Per volume", markdown_table(
            ["Split", "Volumes", *(label for label, _ in columns)], rows)
            + "\nMean ± std over volumes, each volume's pixels pooled."))
    return sections


def write_evaluation_outputs(out_dir: str | Path, evaluations: Mapping[str, Evaluation],
                             title: str = "densecal evaluation") -> list[Path]:
    """Write one evaluation per split into ``out_dir``.

    The first split gets ``metrics.json`` and ``per_image.csv``; any further split ``S`` (e.g.
    ``ood``) gets ``metrics_S.json`` and ``per_image_S.csv``. ``reliability.png`` and, with the
    top-label confidence, ``risk_coverage.png`` have one panel per split and ``report.md`` one
    table row per split.

    Args:
        out_dir: output folder (created).
        evaluations: split name -> evaluation, in display order; every value is checked
            (:func:`~densecal.evaluation.schema.check_result_values`) before anything is
            written.
        title: heading of ``report.md``.

    Returns:
        The written files' final paths.
    """
    out_dir = Path(out_dir)
    for ev in evaluations.values():
        check_result_values(ev.result)  # nothing is written if any value is out of range
    names: list[str] = []
    with staged_directory(out_dir, "evaluate") as stage:
        for i, (split, ev) in enumerate(evaluations.items()):
            suffix = _suffix(split, i == 0)
            write_json(stage / f"metrics{suffix}.json", ev.result)
            write_per_image_csv(stage / f"per_image{suffix}.csv", ev.per_image)
            names += [f"metrics{suffix}.json", f"per_image{suffix}.csv"]
        save_reliability_grid(
            {split: ev.result["reliability"] for split, ev in evaluations.items()},
            stage / "reliability.png",
            ece={split: ev.result["calibration"]["ece"] for split, ev in evaluations.items()},
        )
        curves = {split: ev.risk_coverage for split, ev in evaluations.items()
                  if ev.risk_coverage.get("coverage")}
        failure = []
        if curves:
            save_risk_coverage_grid(curves, stage / "risk_coverage.png", aurc={
                s: evaluations[s].result["calibration"]["aurc"] for s in curves
                if "aurc" in evaluations[s].result["calibration"]})
            names.append("risk_coverage.png")
            failure = [("Failure detection", "How well the top-label confidence ranks correct "
                        "pixels above misclassified ones: AURC (area under the risk-coverage "
                        "curve, lower is better; oracle dashed), E-AURC, AUROC of detecting "
                        "errors and FPR at 95 % TPR are in `metrics.json` under `calibration`."
                        "\n\n![risk-coverage curves](risk_coverage.png)")]
        first = next(iter(evaluations.values())).result
        datasets = "\n".join(
            f"- `{s}`: {ev.result['dataset']['name']} — {ev.result['dataset']['n_images']} "
            f"images, {ev.result['dataset']['n_pixels']} pixels"
            for s, ev in evaluations.items())
        if "multiclass" in first["schema"]:
            results = multiclass_sections(evaluations)
        else:
            table = metrics_table({"model": {s: ev.result for s, ev in evaluations.items()}},
                                  summary_columns(first))
            results = [("Results", table + "\n\n" + protocol_note(first))]
        write_report_md(stage / "report.md", title, [
            ("Data", datasets),
            *results,
            ("Reliability", "![reliability diagrams](reliability.png)"),
            *failure,
        ])
        names += ["reliability.png", "report.md"]
    return [out_dir / n for n in names]
