"""Reports: ``metrics.json`` / per-image CSV / ``report.md`` writers, tables and figures.

Everything here takes plain data (dicts, lists, numpy arrays), so results read back from a
``metrics.json`` can be re-plotted or re-tabled without the model. matplotlib is imported only
when a figure is drawn.
"""

from __future__ import annotations

from densecal._deprecated import moved_names
from densecal.report.figures import (
    new_figure,
    plot_reliability,
    save_figure,
    save_prediction_grid,
    save_reliability_grid,
)
from densecal.report.tables import (
    DEFAULT_COLUMNS,
    PERCENT_KEYS,
    format_percent,
    format_value,
    markdown_table,
    metrics_table,
)
from densecal.report.writers import (
    to_jsonable,
    write_json,
    write_per_image_csv,
    write_report_md,
)

__all__ = [
    "DEFAULT_COLUMNS",
    "PERCENT_KEYS",
    "format_percent",
    "format_value",
    "markdown_table",
    "metrics_table",
    "new_figure",
    "plot_reliability",
    "save_figure",
    "save_prediction_grid",
    "save_reliability_grid",
    "to_jsonable",
    "write_json",
    "write_per_image_csv",
    "write_report_md",
]

__getattr__ = moved_names(__name__, dict.fromkeys(
    ("EVALUATE_SCHEMA", "EVALUATE_SECTIONS", "validate_evaluate_result"),
    "densecal.evaluation.schema"))
