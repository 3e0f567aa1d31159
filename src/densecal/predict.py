"""Deprecated (0.2): moved to :mod:`densecal.apps.predict`,
:mod:`densecal.apps.evaluate_checkpoint`, :mod:`densecal.apps.calibrate` and
:mod:`densecal.evaluation.folders`."""

from densecal._deprecated import moved_names

__getattr__ = moved_names(__name__, {
    "FORMATS": "densecal.apps.predict",
    "iter_predictions": "densecal.apps.predict",
    "predict_folder": "densecal.apps.predict",
    "evaluate_checkpoint": "densecal.apps.evaluate_checkpoint",
    "calibrate_checkpoint": "densecal.apps.calibrate",
    "evaluate_prediction_folder": "densecal.evaluation.folders",
    "evaluate_class_prediction_folder": "densecal.evaluation.folders",
})
