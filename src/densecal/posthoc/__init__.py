"""Post-hoc calibrators: fitted on a frozen model's predictions for a validation split.

Temperature scaling (Guo et al., ICML 2017) for dense binary and multi-class maps, fitted
streaming over a loader with an exact, bounded 1-D search. Plain torch; no Lightning, no CLI.
Formulas: docs/methods.md section 2 and each module's docstrings.
"""

from __future__ import annotations

from densecal.posthoc.nll import Task, flatten_pixels, infer_task, scaled_nll_terms
from densecal.posthoc.search import SearchResult, minimise_unimodal
from densecal.posthoc.stream import PixelPasses
from densecal.posthoc.temperature import FitResult, TemperatureScaler

__all__ = [
    "FitResult",
    "PixelPasses",
    "SearchResult",
    "Task",
    "TemperatureScaler",
    "flatten_pixels",
    "infer_task",
    "minimise_unimodal",
    "scaled_nll_terms",
]
