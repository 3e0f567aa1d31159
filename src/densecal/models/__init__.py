"""Networks by the names users type: segmentation networks (``--model unet-small``, MONAI) in
:mod:`~densecal.models.segmentation` and image classifiers (``--model resnet-small``) in
:mod:`~densecal.models.classifiers`."""

from __future__ import annotations

from densecal.models.classifiers import (
    CLASSIFIERS,
    Classifier,
    classifier_names,
    create_classifier,
)
from densecal.models.segmentation import MODELS, create_model, model_names

__all__ = [
    "CLASSIFIERS",
    "MODELS",
    "Classifier",
    "classifier_names",
    "create_classifier",
    "create_model",
    "model_names",
]
