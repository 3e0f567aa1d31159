"""Deprecated (0.2): moved to :mod:`densecal.evaluation.multiclass`,
:mod:`densecal.evaluation.options` and :mod:`densecal.data.readers`."""

from densecal._deprecated import moved_names

__getattr__ = moved_names(__name__, {
    "MulticlassEvaluator": "densecal.evaluation.multiclass",
    "volume_of": "densecal.evaluation.multiclass",
    "MulticlassOptions": "densecal.evaluation.options",
    "EVALUATE_MULTICLASS_SCHEMA": "densecal.evaluation.schema",
    "SUM_TOLERANCE": "densecal.data.readers",
    "check_distribution": "densecal.data.readers",
    "read_distribution": "densecal.data.readers",
})
