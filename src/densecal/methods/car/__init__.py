"""CAR, calibrated adversarial refinement (Kassapis et al., ICCV 2021): the calibration net ``F``,
the refinement generator ``G`` and discriminator ``D`` (:mod:`~.nets`), their Lightning module
and trainer (:mod:`~.module`), sampling (:mod:`~.sampling`) and the 1-d toy (:mod:`~.toy`)."""

from __future__ import annotations

from densecal.methods.car.module import (
    CARModule,
    CAROptions,
    d_window_active,
    pixel_ce,
    train_car,
)
from densecal.methods.car.sampling import load_car, sample_car, sample_images

__all__ = ["CARModule", "CAROptions", "d_window_active", "load_car", "pixel_ce", "sample_car",
           "sample_images", "train_car"]
