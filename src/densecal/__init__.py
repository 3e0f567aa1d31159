"""densecal: calibrated dense classification for PyTorch.

Calibration losses (SC-BCE and ASLP, label smoothing, ...), exact constant-memory pixel calibration
metrics (ECE, MCE, OE, ACE, Brier, NLL, reliability diagrams), and the training methods of five
papers, with a command-line tool on top (``densecal --help``).

The names most code needs are importable from the root, loaded on first use (``import densecal``
itself imports neither torch nor Lightning)::

    from densecal import PixelCalibration, SCBCELoss, pixel_calibration
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0.dev0"

_LAZY = {
    "PixelCalibration": "densecal.metrics",
    "pixel_calibration": "densecal.metrics.functional",
    "SCBCELoss": "densecal.losses",
    "AdaptivePerturbation": "densecal.losses",
    "TemperatureScaler": "densecal.posthoc",
    "create_model": "densecal.models",
}

__all__ = ["AdaptivePerturbation", "PixelCalibration", "SCBCELoss", "TemperatureScaler",
           "__version__", "create_model", "pixel_calibration"]

if TYPE_CHECKING:
    from densecal.losses import AdaptivePerturbation, SCBCELoss
    from densecal.metrics import PixelCalibration
    from densecal.metrics.functional import pixel_calibration
    from densecal.models import create_model
    from densecal.posthoc import TemperatureScaler


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'densecal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
