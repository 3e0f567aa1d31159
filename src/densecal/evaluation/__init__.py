"""Score prediction maps that already exist: no model, no Lightning.

The data path, read in this order: :mod:`~densecal.evaluation.options` (how maps are scored),
:mod:`~densecal.evaluation.folders` (file pairs to decoded maps), :mod:`~densecal.evaluation.binary`
and :mod:`~densecal.evaluation.multiclass` (maps to metric states to one result),
:mod:`~densecal.evaluation.schema` (what a result holds), :mod:`~densecal.evaluation.outputs`
(``metrics.json``, ``report.md``, figures). Scoring a model's maps is
:mod:`densecal.apps.evaluate_checkpoint`.
"""

from __future__ import annotations

from densecal.evaluation.binary import Evaluator, evaluate_maps, official_quantise
from densecal.evaluation.folders import (
    evaluate_class_prediction_folder,
    evaluate_prediction_folder,
    iter_prediction_pairs,
)
from densecal.evaluation.multiclass import MulticlassEvaluator
from densecal.evaluation.options import EvaluationOptions, MulticlassOptions
from densecal.evaluation.outputs import write_evaluation_outputs
from densecal.evaluation.schema import (
    EVALUATE_MULTICLASS_SCHEMA,
    EVALUATE_SCHEMA,
    Evaluation,
    validate_evaluate_result,
)

__all__ = [
    "EVALUATE_MULTICLASS_SCHEMA",
    "EVALUATE_SCHEMA",
    "Evaluation",
    "EvaluationOptions",
    "Evaluator",
    "MulticlassEvaluator",
    "MulticlassOptions",
    "evaluate_class_prediction_folder",
    "evaluate_maps",
    "evaluate_prediction_folder",
    "iter_prediction_pairs",
    "official_quantise",
    "validate_evaluate_result",
    "write_evaluation_outputs",
]
