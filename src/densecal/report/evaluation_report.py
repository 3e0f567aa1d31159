"""Write the outputs of ``densecal evaluate``: metrics.json, report.md, reliability.png, CSVs.

Every file is staged and moved into place only after all of them were produced, so a failure
leaves the output folder as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from densecal.atomic import staged_directory
from densecal.evaluation import Evaluation
from densecal.report.figures import save_reliability_grid
from densecal.report.tables import metrics_table
from densecal.report.writers import write_json, write_per_image_csv, write_report_md

__all__ = ["MULTICLASS_COLUMNS", "SUMMARY_COLUMNS", "protocol_note", "summary_columns",
           "write_evaluation_outputs"]

SUMMARY_COLUMNS: list[tuple[str, str, str]] = [
    ("ECE %", "calibration", "ece"),
    ("OE %", "calibration", "oe"),
    ("MCE %", "calibration", "mce"),
    ("ACE %", "calibration", "ace"),
    ("NLL", "calibration", "nll"),
    ("Brier", "calibration", "brier"),
    ("Acc %", "calibration", "accuracy"),
    ("MAE", "segmentation", "mae"),
    ("max-F", "segmentation", "max_f"),
    ("S-m", "segmentation", "s_measure"),
]


MULTICLASS_COLUMNS: list[tuple[str, str, str]] = [
    ("ECE %", "calibration", "ece"),
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


def summary_columns(result: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Table columns for a binary (SOD measures) or multi-class (Dice, IoU) result."""
    return MULTICLASS_COLUMNS if "multiclass" in result["schema"] else SUMMARY_COLUMNS


def _suffix(split: str, first: bool) -> str:
    return "" if first else f"_{split}"


def protocol_note(result: Mapping[str, Any]) -> str:
    """One markdown paragraph stating the protocol a result was computed under."""
    p = result["protocol"]
    if "num_classes" in p:
        return (f"{p['num_classes']} classes, {p['n_bins']} equal-width bins (lo, hi], top-label "
                f"confidence, aggregate `{p['aggregate']}`, ignore_index {p['ignore_index']}. "
                "Calibration in %, Dice / IoU pooled per class then averaged.")
    return (f"Protocol: `{p['protocol']}`, {p['n_bins']} equal-width bins (lo, hi], "
            f"confidence `{p['confidence']}`, threshold {p['threshold']}, aggregate "
            f"`{p['aggregate']}`, target `{p['target']}`. Calibration and accuracy are shown in %, "
            "MAE / max-F / S-measure as fractions.")


def write_evaluation_outputs(out_dir: str | Path, evaluations: Mapping[str, Evaluation],
                             title: str = "densecal evaluation") -> list[Path]:
    """Write one evaluation per split into ``out_dir``.

    The first split gets ``metrics.json`` and ``per_image.csv``; any further split ``S`` (e.g.
    ``ood``) gets ``metrics_S.json`` and ``per_image_S.csv``. ``reliability.png`` has one panel
    per split and ``report.md`` one table row per split.

    Args:
        out_dir: output folder (created).
        evaluations: split name -> evaluation, in display order.
        title: heading of ``report.md``.

    Returns:
        The written files' final paths.
    """
    out_dir = Path(out_dir)
    names: list[str] = []
    with staged_directory(out_dir) as stage:
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
        first = next(iter(evaluations.values())).result
        table = metrics_table({"model": {s: ev.result for s, ev in evaluations.items()}},
                              summary_columns(first))
        datasets = "\n".join(
            f"- `{s}`: {ev.result['dataset']['name']} — {ev.result['dataset']['n_images']} "
            f"images, {ev.result['dataset']['n_pixels']} pixels"
            for s, ev in evaluations.items())
        write_report_md(stage / "report.md", title, [
            ("Data", datasets),
            ("Results", table + "\n\n" + protocol_note(first)),
            ("Reliability", "![reliability diagrams](reliability.png)"),
        ])
        names += ["reliability.png", "report.md"]
    return [out_dir / n for n in names]
