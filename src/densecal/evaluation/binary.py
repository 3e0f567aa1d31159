"""Evaluate probability maps against ground truth: the path from maps to ``metrics.json``.

The data path goes straight through: pairs of (prediction map, ground-truth mask) stream in one at
a time, update constant-memory calibration state (:class:`~densecal.metrics.PixelCalibration`)
and the SOD accuracy measures (:class:`~densecal.metrics.segmentation.SODMetrics`), and come out
as one result dict of schema ``densecal.evaluate/2`` plus a per-image table.

Protocols (``docs/methods.md``, *Evaluation protocols*):

* ``raw`` (default): the model's probabilities as they are; a pixel is correct when
  ``1[q >= threshold] == 1[y >= 0.5]`` (``target="hard"``) or in expectation over a soft ``y``
  (``target="soft"``).
* ``official``: the ASLP reference code's calibration evaluation (Liu et al., ICCV 2023,
  github.com/Carlisle-Liu/ASLP, ``test()`` then ``ECE.py``): each map min-max normalised and
  quantised to 8 bits (:func:`official_quantise`), pixels whose ground truth is not exactly 0 or
  1 (0 or 255 in the PNG) always count as wrong (``target="strict"``). The SOD measures are
  pysodmetrics' (the MATLAB toolbox's) on those maps, NOT the ASLP repository's
  ``SOD_Evaluation_Tool``: mean F and mean E differ by about 1e-3 on binary truth, more on soft
  truth, and that tool gives E-measure 0.25 on an empty or all-foreground truth
  (``benchmarks/aslp_sod_tool.py``, ``docs/compatibility.md``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from densecal.errors import DensecalInputError, input_error
from densecal.evaluation.options import EvaluationOptions
from densecal.evaluation.schema import EVALUATE_SCHEMA, Evaluation
from densecal.metrics.calibration import PixelCalibration
from densecal.metrics.segmentation import SOD_KEYS, ImageSOD, SODMetrics

__all__ = ["BYTES_PER_PIXEL", "Evaluator", "evaluate_maps", "measure_sod", "official_quantise",
           "sod_map"]

BYTES_PER_PIXEL = 100
"""Peak memory of evaluating one binary map, per pixel, above a fixed ~0.5 GiB (measured by
``benchmarks/evaluate_memory.py``: 94-100 bytes for 1000² to 4000² maps, 45 of them in
pysodmetrics' weighted F-measure). Memory does not grow with the number of maps."""

#: Maps from this many pixels on are checked against the memory the machine has free.
_LARGE_MAP = 4_000_000


def check_memory(name: str, pixels: int, shape: tuple[int, ...]) -> None:
    """Refuse, with one line naming ``name``, a map too large for the free memory.

    A map of ``pixels`` needs about ``pixels * BYTES_PER_PIXEL`` bytes; on Linux the free memory
    is ``MemAvailable`` of ``/proc/meminfo`` (elsewhere nothing is checked). Without the check a
    20000 x 20000 map would end in the kernel's out-of-memory killer, not an error.

    Raises:
        DensecalInputError: the map needs more memory than is available.
    """
    if pixels < _LARGE_MAP:
        return
    free = _available_memory()
    need = pixels * BYTES_PER_PIXEL
    if free is not None and need > free:
        raise input_error(name, f"a {'x'.join(map(str, shape))} map needs about "
                                f"{need / 2**30:.1f} GiB to evaluate ({BYTES_PER_PIXEL} bytes per "
                                f"pixel), {free / 2**30:.1f} GiB are free; downsample the maps "
                                f"or use a machine with more memory")


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None



def official_quantise(pred: np.ndarray) -> np.ndarray:
    """The ASLP code's saved-map transform, arithmetic and rounding included.

    The official ``test()`` (``main_ASLP.py``) writes each float32 sigmoid map ``p`` as
    ``255 * (p - p.min()) / (p.max() - p.min() + 1e-8)`` with ``cv2.imwrite``, which converts a
    float image to 8 bits by rounding half to even and saturating to [0, 255]. Reproduced here
    operation by operation in NumPy 1.x's types (the official code's era; it uses pandas'
    ``DataFrame.append``, removed in pandas 2): ``p - min`` and the product by 255 in float32,
    the denominator ``max - min`` in float32 plus ``1e-8`` in float64, rounded to float32 for
    the division. Consequences the tests pin down: a constant map becomes all zeros (level 0:
    confidence 1, prediction background); a map whose range is below about ``5e-6`` is not
    stretched to 255 (the ``1e-8`` matters); any map is stretched to the full [0, 255] range.

    Args:
        pred: probability map ``(H, W)`` (any float dtype; read as float32, as the official
            sigmoid output is).

    Returns:
        ``(H, W)`` float32 map of values k/255, k ∈ {0, ..., 255} (the PNG as ``ECE.py`` reads it).
    """
    p = np.asarray(pred, dtype=np.float32)
    if p.size == 0:
        return p
    lo, hi = p.min(), p.max()  # float32 scalars
    denominator = np.float32(np.float64(hi - lo) + 1e-8)
    scaled = (np.float32(255.0) * (p - lo)) / denominator  # float32 throughout
    levels = np.clip(np.rint(scaled), 0.0, 255.0)  # OpenCV's saturate_cast: half to even
    return (levels / 255.0).astype(np.float32)


def sod_map(pred: np.ndarray, protocol: str) -> np.ndarray:
    """The float map the SOD measures see: 8-bit levels as ``v / 255`` (float32, as
    ``read_mask`` reads a PNG), and under the ``official`` protocol :func:`official_quantise`."""
    if pred.dtype == np.uint8:
        pred = (pred / 255.0).astype(np.float32)
    return official_quantise(pred) if protocol == "official" else pred


def measure_sod(metric: SODMetrics, pred: np.ndarray, gt: np.ndarray) -> ImageSOD | None:
    """One pair's SOD measures as :meth:`Evaluator.add` would compute them, or None when the
    pair is bad input (:meth:`Evaluator.add` then reports it, naming the files). Runs in
    decoding workers: ``metric`` must have the evaluation's protocol and threshold."""
    try:
        if pred.shape != gt.shape:
            return None
        check_memory("", pred.size, pred.shape)
        return metric.measure(sod_map(pred, metric.protocol), gt)
    except DensecalInputError:
        return None


class Evaluator:
    """Streaming evaluator: :meth:`add` one (prediction, ground truth) pair at a time.

    Memory stays constant in the number of images (calibration state is per-bin sums; the SOD
    measures keep pysodmetrics' per-image curves of 256 values).

    Args:
        options: the scoring protocol.
        name: dataset name for ``metrics.json``.
    """

    def __init__(self, options: EvaluationOptions | None = None, name: str = "") -> None:
        self.options = options or EvaluationOptions()
        self.name = name
        self.calibration = PixelCalibration(**self.options.metric_kwargs())
        self._own = PixelCalibration(**{**self.options.metric_kwargs(), "aggregate": "pooled"},
                                     failure_detection=False)  # per-image rows do not use them
        self.segmentation = SODMetrics(protocol=self.options.protocol,
                                       threshold=self.options.threshold)
        self.rows: list[dict[str, Any]] = []
        self.n_pixels = 0
        self._per_image = self.options.aggregate != "pooled"
        self.seconds = {"calibration": 0.0, "segmentation": 0.0}
        """Time spent in :meth:`add` on calibration and on the SOD measures (for reports)."""
        self._created = time.perf_counter()

    def add(self, name: str, pred: np.ndarray, gt: np.ndarray, sod: ImageSOD | None = None
            ) -> dict[str, Any]:
        """Score one map.

        Args:
            name: image name (stem), reported in the per-image table.
            pred: foreground probability map ``(H, W)``: floating point in [0, 1], or the
                ``uint8`` levels ``v`` of an 8-bit map (probability ``v / 255``, as
                ``read_prediction(keep_8bit=True)`` gives them). Both give the same numbers;
                8-bit maps with a ``hard`` target take the exact one-pass histogram path.
            gt: ground-truth mask ``(H, W)`` in [0, 1] (soft allowed).
            sod: this pair's SOD measures, already computed (in a decoding worker, by
                :func:`measure_sod`); None computes them here. Unused with
                ``measures="calibration"``.

        Returns:
            The image's row of the per-image table.

        Raises:
            DensecalInputError: shape mismatch, NaN or values outside [0, 1], or a map larger
                than the free memory allows (:func:`check_memory`), naming ``name``.
        """
        if pred.shape != gt.shape:
            raise input_error(name, f"prediction size {tuple(pred.shape)} does not match ground "
                              f"truth size {tuple(gt.shape)}")
        check_memory(name, pred.size, pred.shape)
        levels = pred if pred.dtype == np.uint8 else None
        if levels is not None:  # 8-bit levels: always valid probabilities
            pred = (levels / 255.0).astype(np.float32)  # = read_mask's reading of the PNG
        elif not np.isfinite(pred).all():
            raise input_error(name, "prediction contains NaN or Inf")
        elif pred.size and (pred.min() < 0.0 or pred.max() > 1.0):
            raise input_error(name, f"prediction values outside [0, 1] (min {pred.min():.4g}, "
                              f"max {pred.max():.4g}); probabilities expected")
        if self.options.protocol == "official":
            levels = None  # the map is re-quantised below: no 8-bit shortcut
        pred = sod_map(pred, self.options.protocol)
        start = time.perf_counter()
        p, y = self._calibration_inputs(pred, levels, gt)
        # one pass: the image's own state gives its row and is merged into the dataset state
        own_metric = self._own
        own_metric.reset()  # reused: a new torchmetrics Metric costs more than the update
        own_metric.update(p, y)
        own = own_metric.compute()
        if self._per_image:  # the dataset state also needs the per-image sums
            self.calibration.update(p, y)
        else:
            self.calibration.merge_state(own_metric)
        middle = time.perf_counter()
        if self.options.measures != "all":
            seg: dict[str, Any] = dict.fromkeys(("mae", "s_measure", "dice", "iou"))
        elif sod is not None:
            seg = self.segmentation.add(sod)
        else:
            seg = self.segmentation.update(pred, gt)
        self.seconds["calibration"] += middle - start
        self.seconds["segmentation"] += time.perf_counter() - middle
        self.n_pixels += int(pred.size)
        row: dict[str, Any] = {"name": name}
        row.update({k: float(own[k]) for k in ("ece", "oe", "mce", "accuracy", "brier", "nll")})
        row.update(seg)
        self.rows.append(row)
        return row

    def _calibration_inputs(self, pred: np.ndarray, levels: np.ndarray | None,
                            gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, H, W)`` tensors for :class:`PixelCalibration`, in their fastest exact form.

        A ``hard`` target is binarised here by the metric's own rule ``y >= 0.5`` (a bool map
        lets the fused kernels run), and 8-bit maps stay uint8 levels (the 256 x 2 histogram
        path, the same state as the float32 maps ``v / 255``).
        """
        if self.options.target_type == "hard":
            y = _tensor(gt >= 0.5)
            if levels is not None:
                return _tensor(levels), y
        else:
            y = _tensor(gt, np.float32)
        return _tensor(pred, np.float32), y

    def evaluation(self) -> Evaluation:
        """The accumulated result (schema ``densecal.evaluate/2``) and per-image rows.

        Raises:
            DensecalInputError: no image was added.
        """
        if not self.rows:
            raise input_error(self.name or "dataset", "no images to evaluate")
        calibration = {k: float(v) for k, v in self.calibration.compute().items()}
        reliability = {k: [float(x) for x in v.tolist()]
                       for k, v in self.calibration.reliability().items()}
        result = {
            "schema": EVALUATE_SCHEMA,
            "dataset": {"name": self.name, "n_images": len(self.rows),
                        "n_pixels": self.n_pixels},
            "protocol": self.options.to_dict(),
            "calibration": calibration,
            "segmentation": (self.segmentation.compute() if self.options.measures == "all"
                             else dict.fromkeys(SOD_KEYS)),
            "reliability": reliability,
        }
        seconds = {"total": time.perf_counter() - self._created, **self.seconds}
        curve = (self.calibration.risk_coverage() if self.options.confidence == "top-label"
                 else {})
        return Evaluation(result, list(self.rows), seconds, curve)


def evaluate_maps(pairs: Iterable[tuple[Any, ...]], options: EvaluationOptions | None = None,
                  name: str = "") -> Evaluation:
    """Evaluate a stream of ``(name, prediction (H, W), ground truth (H, W))`` triples (or
    ``(name, prediction, ground truth, ImageSOD)`` with the SOD measures already computed; see
    :meth:`Evaluator.add`).

    Example:
        >>> import numpy as np
        >>> gt = np.zeros((4, 4), np.float32); gt[:2] = 1.0
        >>> pred = np.where(gt > 0, 0.75, 0.25).astype(np.float32)
        >>> ev = evaluate_maps([("a", pred, gt)], name="toy")
        >>> round(ev.result["calibration"]["ece"], 6)  # confidence 0.75, accuracy 1
        0.25
    """
    evaluator = Evaluator(options, name)
    for item in pairs:
        evaluator.add(*item)
    return evaluator.evaluation()


def _tensor(array: np.ndarray, dtype: type | None = None) -> torch.Tensor:
    """``(1, *array.shape)`` tensor sharing ``array``'s memory, or a copy when the array is
    read-only (a decoded PNG often is; torch warns on read-only arrays, and the metric only
    reads)."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return torch.from_numpy(array if array.flags.writeable else array.copy())[None]
