"""The console lines of every verb that reports metrics, formatted in one place.

Percentages have two decimals; a value that is not finite prints as ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["demo_line", "result_line", "run_line"]


def result_line(result: dict[str, Any]) -> str:
    """One console line of a result (multi-class: foreground, soft and per-volume numbers).

    Example:
        >>> result_line({"calibration": {"ece": 0.0125, "oe": 0.01, "accuracy": 0.9},
        ...               "segmentation": {"mae": 0.05, "max_f": 0.8}})
        'ECE 1.25%  OE 1.00%  acc 90.00%  MAE 0.0500  max-F 0.8000'
        >>> result_line({"calibration": {"ece": 0.0125, "oe": 0.01, "accuracy": 0.9},
        ...               "segmentation": {"mae": None, "max_f": None}})
        'ECE 1.25%  OE 1.00%  acc 90.00%'
    """
    c, s = result["calibration"], result["segmentation"]
    line = f"ECE {_pct(c['ece'])}  OE {_pct(c['oe'])}  acc {_pct(c['accuracy'])}  "
    if "dice_class" not in s:
        if s["mae"] is None:  # --measures calibration
            return line.rstrip()
        return line + f"MAE {s['mae']:.4f}  max-F {s['max_f']:.4f}"
    line = (f"ECE {_pct(c['ece'])}  fg-ECE {_pct(c['ece_foreground'])}  OE {_pct(c['oe'])}  "
            f"acc {_pct(c['accuracy'])}  Dice {s['dice']:.4f}  IoU {s['iou']:.4f}")
    if "soft_truth" in result:
        line += f"  soft-ECE {_pct(result['soft_truth']['ece'])}"
    if "per_volume" in result:
        volumes = result["per_volume"]
        line += (f"  per-volume Dice {volumes['mean']['dice']:.4f} ± "
                 f"{volumes['std']['dice']:.4f} ({volumes['n_volumes']} volumes)")
    return line


def _pct(x: float) -> str:
    """A fraction as a percentage with 2 decimals; ``n/a`` when not finite."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f}%"


def demo_line(label: str, split: str, result: Mapping[str, Any]) -> str:
    """The line of one demo run on one split (calibration, MAE, max-F, S-measure).

    Example:
        >>> demo_line("ASLP", "test", {"calibration": {"ece": 0.0125, "oe": 0.01,
        ...                                            "accuracy": 0.9},
        ...                            "segmentation": {"mae": 0.05, "max_f": 0.8,
        ...                                             "s_measure": 0.7}})
        ' ASLP test: ECE   1.25%  OE   1.00%  acc  90.00%  MAE 0.0500  max-F 0.8000  S 0.7000'
    """
    c, s = result["calibration"], result["segmentation"]
    return (f"{label:>5} {split:>4}: ECE {100 * c['ece']:6.2f}%  OE {100 * c['oe']:6.2f}%  "
            f"acc {100 * c['accuracy']:6.2f}%  MAE {s['mae']:.4f}  max-F {s['max_f']:.4f}  "
            f"S {s['s_measure']:.4f}")


def run_line(method: str, seed: int, record: Mapping[str, Any], num_classes: int) -> str:
    """The line of one finished benchmark run (test ECE and accuracy; Dice for K classes)."""
    c = record["test"]["calibration"]
    dice = record["test"]["segmentation"].get("dice")
    extra = f"  Dice {dice:.3f}" if num_classes > 1 and dice is not None else ""
    return (f"{method:>8} seed {seed}: test ECE {100 * c['ece']:.2f}%  "
            f"acc {100 * c['accuracy']:.2f}%{extra}")
