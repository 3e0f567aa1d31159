"""Salient-object / binary segmentation accuracy metrics, wrapping pysodmetrics.

The SOD measures (MAE, F-measure curve, E-measure curve, S-measure, weighted F-measure) come from
`pysodmetrics <https://github.com/lartpang/PySODMetrics>`_, the community reference that matches
the MATLAB toolboxes; densecal only prepares the maps, aggregates, and adds Dice / IoU at a fixed
threshold with an explicit empty-mask convention.

Two input protocols (``protocol=``):

* ``"raw"`` (default) — the probability map ``q`` is used as is (no min-max normalisation) and the
  ground truth is ``y >= 0.5``. This measures the probabilities the model actually outputs.
* ``"official"`` — the ASLP / MATLAB-toolbox protocol: ``q`` and ``y`` are quantised to 8 bits
  (``round(255 * v)``), the map is min-max normalised per image and the truth is ``gt > 128``
  (pysodmetrics' ``normalize=True`` path, fed with the 8-bit maps). A soft truth of exactly
  0.5 quantises to 128 and is background here, foreground under ``"raw"``.

Dice and IoU are computed on the same prepared maps the SOD measures see: ``1[map >= threshold]``
against the binary truth (for ``"raw"`` exactly ``1[q >= threshold]`` vs ``1[y >= 0.5]``).

Degenerate inputs, where the reference code leaves [0, 1] (see ``docs/methods.md``, section 7):

* **E-measure.** Fan et al. (IJCAI 2018, eq. 6) average the enhanced-alignment matrix over the
  H·W pixels; the MATLAB code and pysodmetrics divide its sum by H·W − 1 (+eps), so a perfect
  map scores H·W / (H·W − 1): 64/63 on 8x8, 1.25 on 1x5, 4.5e15 on 1x1. densecal divides by
  H·W as the paper does (pysodmetrics' curve times (H·W − 1 + eps) / (H·W)), so every value is
  a fraction; on 384x384 maps the two differ by a factor 1 − 6.8e-6.
* **S-measure.** Its region term splits the map at the truth's centroid into four blocks
  weighted by area; on a one-row or one-column map a block can be empty, and SSIM of an empty
  block is NaN (pysodmetrics and the MATLAB code alike). An empty block has weight 0 and adds 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from py_sod_metrics import (
    MAE,
    Emeasure,
    FmeasureHandler,
    FmeasureV2,
    Smeasure,
    WeightedFmeasure,
)
from py_sod_metrics.utils import EPS, prepare_data

from densecal._checks import parse_choice
from densecal.errors import input_error
from densecal.metrics.functional.segmentation import (
    binary_dice_iou,
    check_pair,
    check_threshold,
    dice_iou,
)
from densecal.types import Protocol

__all__ = ["SOD_KEYS", "ImageSOD", "SODMetrics", "dice_iou"]

#: Keys of :meth:`SODMetrics.compute`, in report order.
SOD_KEYS: tuple[str, ...] = (
    "mae", "max_f", "mean_f", "adaptive_f", "max_e", "mean_e",
    "s_measure", "weighted_f", "dice", "iou",
)

#: F-measure beta^2 (Achanta et al., CVPR 2009; pysodmetrics' default).
_F_BETA2 = 0.3
#: S-measure object/region balance (Fan et al., ICCV 2017).
_S_ALPHA = 0.5


class _PaperEmeasure(Emeasure):
    """pysodmetrics' E-measure curve, averaged over H·W pixels as in the paper (eq. 6)."""

    def cal_em_with_cumsumhistogram(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        curve = super().cal_em_with_cumsumhistogram(pred, gt)
        # undo the reference's division by (H*W - 1 + EPS); exact for 1x1 (EPS is a power of 2)
        return np.minimum(curve * ((self.gt_size - 1 + EPS) / self.gt_size), 1.0)


class _GuardedSmeasure(Smeasure):
    """pysodmetrics' S-measure with an empty region block adding 0 (its weight is 0)."""

    def ssim(self, pred: np.ndarray, gt: np.ndarray) -> float:
        if pred.size == 0:
            return 0.0
        return float(super().ssim(pred, gt))


@dataclass(frozen=True)
class ImageSOD:
    """One image's SOD measures, as :meth:`SODMetrics.measure` gives them and
    :meth:`SODMetrics.add` merges them (picklable, for worker processes).

    Attributes:
        f_curve: ``(256,)`` F-measure at the thresholds of pysodmetrics' curve.
        adaptive_f: F-measure at the adaptive threshold.
        e_curve: ``(256,)`` E-measure curve (averaged over H·W pixels).
        weighted_f: weighted F-measure.
        mae, s_measure, dice, iou: the per-image values of the per-image table.
    """

    f_curve: np.ndarray
    adaptive_f: float
    e_curve: np.ndarray
    weighted_f: float
    mae: float
    s_measure: float
    dice: float
    iou: float

    def row(self) -> dict[str, float]:
        """``{"mae", "s_measure", "dice", "iou"}`` (the per-image table's SOD columns)."""
        return {"mae": self.mae, "s_measure": self.s_measure, "dice": self.dice,
                "iou": self.iou}


class SODMetrics:
    """Accumulate salient-object-detection accuracy measures over a dataset, image by image.

    Measures (each averaged over images, as the MATLAB toolboxes and pysodmetrics do):

    * ``mae`` — mean absolute error (Perazzi et al., CVPR 2012);
    * ``max_f`` / ``mean_f`` — maximum / mean over the 256 thresholds of the dataset-mean
      F-measure curve, beta^2 = 0.3 (Achanta et al., CVPR 2009); ``adaptive_f`` — F-measure at
      the per-image adaptive threshold min(2 * mean(map), 1);
    * ``max_e`` / ``mean_e`` — same for the E-measure curve (Fan et al., IJCAI 2018), averaged
      over H·W pixels as in the paper (the reference code divides by H·W − 1; see the module
      docstring), so a perfect map scores exactly 1;
    * ``s_measure`` — structure measure with alpha = 0.5 (Fan et al., ICCV 2017; an empty
      region block on a one-pixel-wide map adds 0);
    * ``weighted_f`` — weighted F-measure (Margolin et al., CVPR 2014); 0 for an empty truth;
    * ``dice`` / ``iou`` — at ``threshold`` on the prepared map, per image, then averaged; an
      image whose prediction and truth are both empty scores 1.0 (see :func:`dice_iou`).

    Args:
        protocol: ``"raw"`` (probabilities as they are, truth ``y >= 0.5``) or ``"official"``
            (8-bit quantisation, per-map min-max normalisation, truth ``gt > 128``; the
            ASLP / MATLAB evaluation protocol). See the module docstring.
        threshold: Dice / IoU decision threshold in (0, 1].

    Raises:
        DensecalInputError: for an unknown protocol or a threshold outside (0, 1].

    Example:
        >>> import numpy as np
        >>> m = SODMetrics()
        >>> m.update(np.full((4, 4), 0.1), np.zeros((4, 4)))["mae"]
        0.1
        >>> round(m.compute()["mae"], 6)
        0.1
    """

    def __init__(self, protocol: Protocol | str = "raw", threshold: float = 0.5) -> None:
        self.protocol = parse_choice(
            Protocol, protocol, "protocol",
            message="must be one of ['raw', 'official'], got {value}").value
        self.threshold = check_threshold(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        # pysodmetrics objects used one image at a time: each step's entry is popped at once
        self._f_handler = FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=_F_BETA2)
        self._fm = FmeasureV2({"fm": self._f_handler})
        self._em = _PaperEmeasure()
        self._wfm = WeightedFmeasure()
        self._mae = MAE()
        self._sm = _GuardedSmeasure(alpha=_S_ALPHA)
        self._images: list[ImageSOD] = []

    @property
    def n_images(self) -> int:
        """Number of images added since the last :meth:`reset`."""
        return len(self._images)

    def _prepare(self, q: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map validated float maps to pysodmetrics' normalised form (float pred, bool gt)."""
        if self.protocol == "raw":
            return q, y >= 0.5
        q8 = np.rint(q * 255.0).astype(np.uint8)
        y8 = np.rint(y * 255.0).astype(np.uint8)
        return prepare_data(q8, y8)

    def measure(self, pred: Any, gt: Any) -> ImageSOD:
        """One image's measures, without adding them (:meth:`add` does; a worker process can
        measure and the main process add, with the same result as :meth:`update`).

        Args:
            pred: predicted foreground probabilities q, shape ``(H, W)``, values in [0, 1].
            gt: ground truth y, shape ``(H, W)``, values in [0, 1] (may be soft).

        Raises:
            DensecalInputError: on shape mismatch, non-2-D input, NaN/inf or values outside
                [0, 1].
        """
        q, y = check_pair(pred, gt)
        p, g = self._prepare(q, y)
        # Every pysodmetrics measure receives the same prepared maps (normalize=False), so the
        # "official" normalisation is done once, exactly as each measure would do it.
        self._fm.step(p, g, normalize=False)
        self._em.step(p, g, normalize=False)
        self._wfm.step(p, g, normalize=False)
        self._em.adaptive_ems.pop()  # not reported
        dice, iou = binary_dice_iou(p >= self.threshold, g)
        return ImageSOD(f_curve=np.asarray(self._f_handler.dynamic_results.pop()),
                        adaptive_f=float(self._f_handler.adaptive_results.pop()),
                        e_curve=np.asarray(self._em.changeable_ems.pop()),
                        weighted_f=float(self._wfm.weighted_fms.pop()),
                        mae=float(self._mae.cal_mae(p, g)), s_measure=float(self._sm.cal_sm(p, g)),
                        dice=dice, iou=iou)

    def add(self, image: ImageSOD) -> dict[str, float]:
        """Add one image's measures (from :meth:`measure`); returns its per-image row
        ``{"mae", "s_measure", "dice", "iou"}``."""
        self._images.append(image)
        return image.row()

    def update(self, pred: Any, gt: Any) -> dict[str, float]:
        """Add one image: :meth:`add` of :meth:`measure`.

        Args:
            pred: predicted foreground probabilities q, shape ``(H, W)``, values in [0, 1].
            gt: ground truth y, shape ``(H, W)``, values in [0, 1] (may be soft).

        Returns:
            This image's own ``{"mae", "s_measure", "dice", "iou"}`` as Python floats, under the
            metric's protocol (for a per-image CSV).

        Raises:
            DensecalInputError: on shape mismatch, non-2-D input, NaN/inf or values outside
                [0, 1].
        """
        return self.add(self.measure(pred, gt))

    def compute(self) -> dict[str, float]:
        """Dataset-level measures over every image added.

        The F- and E-measure curves are means over images of the per-image curves, reduced as
        pysodmetrics reduces them (``np.mean`` of a float64 stack), so the numbers equal
        pysodmetrics' own to the last bit.

        Returns:
            ``{"mae", "max_f", "mean_f", "adaptive_f", "max_e", "mean_e", "s_measure",
            "weighted_f", "dice", "iou"}`` as Python floats, each a fraction in [0, 1].

        Raises:
            DensecalInputError: if no image was added.
        """
        if self.n_images == 0:
            raise input_error("SODMetrics.compute", "no image was added with update()")

        def mean(key: str) -> Any:
            return np.mean(np.array([getattr(i, key) for i in self._images], np.float64), axis=0)

        def fsum_mean(key: str) -> float:
            return math.fsum(getattr(i, key) for i in self._images) / self.n_images

        f_curve, e_curve = mean("f_curve"), mean("e_curve")
        out = {
            "mae": fsum_mean("mae"),
            "max_f": float(f_curve.max()),
            "mean_f": float(f_curve.mean()),
            "adaptive_f": float(mean("adaptive_f")),
            "max_e": float(e_curve.max()),
            "mean_e": float(e_curve.mean()),
            "s_measure": fsum_mean("s_measure"),
            "weighted_f": float(mean("weighted_f")),
            "dice": fsum_mean("dice"),
            "iou": fsum_mean("iou"),
        }
        return {k: out[k] for k in SOD_KEYS}
