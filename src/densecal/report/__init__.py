"""Reports: ``metrics.json`` / per-image CSV / ``report.md`` writers, tables and figures.

Everything here takes plain data (dicts, lists, numpy arrays), so results read back from a
``metrics.json`` can be re-plotted or re-tabled without the model. matplotlib is imported only
when a figure is drawn.
"""

from __future__ import annotations

from densecal.report.figures import plot_reliability, save_prediction_grid, save_reliability_grid
from densecal.report.tables import (
    DEFAULT_COLUMNS,
    PERCENT_KEYS,
    format_percent,
    format_value,
    markdown_table,
    metrics_table,
)
from densecal.report.writers import (
    EVALUATE_SCHEMA,
    EVALUATE_SECTIONS,
    to_jsonable,
    validate_evaluate_result,
    write_json,
    write_per_image_csv,
    write_report_md,
)

__all__ = [
    "DEFAULT_COLUMNS",
    "EVALUATE_SCHEMA",
    "EVALUATE_SECTIONS",
    "PERCENT_KEYS",
    "format_percent",
    "format_value",
    "markdown_table",
    "metrics_table",
    "plot_reliability",
    "save_prediction_grid",
    "save_reliability_grid",
    "to_jsonable",
    "validate_evaluate_result",
    "write_json",
    "write_per_image_csv",
    "write_report_md",
]
