"""Streaming pixel calibration metric (torchmetrics ``Metric``) for binary, multi-class and
multi-label dense maps."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import Metric

from densecal.metrics.functional._calibration.failure import risk_coverage
from densecal.metrics.functional.calibration import (
    calibration_state,
    parse_options,
    state_compute,
    state_reliability,
    state_update,
)

__all__ = ["PixelCalibration"]


class PixelCalibration(Metric):
    """ECE, MCE, OE, ACE, Brier, NLL, accuracy (and class-wise ECEs), exact, in constant memory.

    The state is the sufficient statistics of :class:`~densecal.metrics.functional.calibration.
    CalibrationState`: per-bin sums (count, confidence sum, accuracy sum) over ``n_bins``
    equal-width bins, a ``fine_bins`` histogram for the equal-mass bins of ACE, scalar sums for
    Brier/NLL/accuracy and, per image, running sums of each image's metrics. Every state is a
    float64 tensor reduced with ``sum``, so batches and DDP ranks merge exactly and memory does
    not grow with the number of images (unlike torchmetrics' ``BinaryCalibrationError``, which
    keeps every prediction).

    With ``task="multiclass"`` or ``"multilabel"`` the same keys are top-label and
    :meth:`compute` adds ``ece_class`` (``(C,)``), ``classwise_ece`` and ``marginal_ece``; the
    state then also holds the :class:`~densecal.metrics.functional.calibration.ClasswiseState`
    sums (``(C, n_bins)`` per-class bin sums and per-image running sums), all ``sum``-reduced.

    Formulas and options: :func:`densecal.metrics.functional.pixel_calibration` (ASLP ICCV 2023
    evaluation code; Guo et al. 2017; Nixon et al. 2019 for ACE).

    Args:
        n_bins: equal-width bins ``(k/n, (k+1)/n]`` on [0, 1], >= 1 (10).
        input: ``"probs"`` or ``"logits"``.
        confidence: ``"top-label"`` (max(q, 1 - q) vs correctness) or ``"positive"`` (q vs
            frequency of y = 1).
        aggregate: ``"pooled"`` (one histogram over all pixels) or ``"per-image"`` (mean of
            per-image values; images with every pixel ignored are skipped).
        target_type: ``"hard"``, ``"soft"`` or ``"strict"`` correctness rule.
        threshold: foreground threshold on q (0.5).
        ignore_index: target value excluded everywhere.
        fine_bins: resolution of the fine histogram behind ACE (4096).
        task: ``"binary"``, ``"multiclass"`` (softmax over C channels) or ``"multilabel"`` (C
            sigmoids).
        num_classes: C (multiclass / multilabel only), checked against the channel dim.
        include_background: False: foreground-only top-label metrics and class 0 left out
            of ``classwise_ece`` / ``marginal_ece`` (MONAI convention).
        validate_args: check values on every update (one host sync per update).
        failure_detection: add ``aurc, eaurc, auroc, fpr95`` to :meth:`compute` (about 1 ms
            per call for 4096 fine bins; switch off for per-image values).
        **kwargs: passed to :class:`torchmetrics.Metric` (``sync_on_compute``, ...).

    Raises:
        DensecalInputError: bad option here; bad shapes or values in :meth:`update`.

    Example:
        >>> import torch
        >>> metric = PixelCalibration(n_bins=4)
        >>> metric.update(torch.tensor([[0.9, 0.8]]), torch.tensor([[1, 0]]))
        >>> metric.update(torch.tensor([[0.3, 0.6]]), torch.tensor([[0, 1]]))
        >>> round(metric.compute()["ece"].item(), 6), metric.reliability()["count"].tolist()
        (0.35, [0.0, 0.0, 2.0, 2.0])
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(
        self,
        n_bins: int = 10,
        *,
        input: str = "probs",
        confidence: str = "top-label",
        aggregate: str = "pooled",
        target_type: str = "hard",
        threshold: float = 0.5,
        ignore_index: float | None = None,
        fine_bins: int = 4096,
        task: str = "binary",
        num_classes: int | None = None,
        include_background: bool = True,
        validate_args: bool = True,
        failure_detection: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.failure_detection = failure_detection
        self.options = parse_options(
            n_bins=n_bins, input=input, confidence=confidence, aggregate=aggregate,
            target_type=target_type, threshold=threshold, ignore_index=ignore_index,
            fine_bins=fine_bins, task=task, num_classes=num_classes,
            include_background=include_background,
        )  # fmt: skip
        self.validate_args = validate_args
        for name, default in calibration_state(self.options).items():
            self.add_state(name, default=default, dist_reduce_fx="sum")
        self._state_names: tuple[str, ...] = tuple(calibration_state(self.options))

    def _sums(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self._state_names}

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of maps.

        Args:
            preds: binary: ``(N, *S)`` or ``(N, 1, *S)``; multiclass / multilabel:
                ``(N, C, *S)``; floating-point probabilities or logits. Binary probability
                maps may also be uint8 (8-bit PNG predictions): ``v`` means
                ``float32(v) / 255``, and with hard targets one pass over a 256 x 2 histogram
                gives exactly the state of the float32 maps ``v / 255``.
            target: binary: same shape, values in [0, 1] (may be soft) except
                ``ignore_index``. Multiclass: ``(N, *S)`` integer class indices or an
                ``(N, C, *S)`` one-hot / soft map; multilabel: ``(N, C, *S)`` in [0, 1].

        Raises:
            DensecalInputError: shape mismatch, channel dim != ``num_classes``, NaN/Inf,
                values outside [0, 1], bad class indices, channels not summing to 1.
        """
        preds, target = preds.to(self.device), target.to(self.device)
        batch = state_update(preds, target, self.options, validate=self.validate_args)
        for name, value in batch.items():
            setattr(self, name, getattr(self, name) + value)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen: keys ``ece, mce, oe, ace, brier, nll, accuracy``, then
        (with ``failure_detection``) ``aurc, eaurc, auroc, fpr95`` of the top-label confidence
        from the pooled fine histogram (``docs/methods.md`` §7), then for multiclass /
        multilabel ``ece_class``, ``classwise_ece``, ``marginal_ece``.

        Returns:
            0-dim float64 tensors (``ece_class``: ``(C,)``), fractions in [0, 1]; NaN when no
            pixel was seen.
        """
        return state_compute(self._sums(), self.options, failure=self.failure_detection)

    def risk_coverage(self) -> dict[str, list[float]]:
        """Risk-coverage curve of the top-label confidence from the pooled fine histogram
        (synced across ranks; see
        :func:`~densecal.metrics.functional._calibration.failure.risk_coverage`).

        Returns:
            ``{"coverage", "risk", "oracle_risk"}``: lists of fractions, one entry per
            non-empty fine cell from the most confident (``aurc`` averages the risk over every
            pixel's coverage, ties in expectation, so it is close to, not equal to, the area
            under this step curve).
        """
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            sums = self._sums()
            return risk_coverage(sums["fine_count"].cpu().numpy(),
                                 sums["fine_acc"].cpu().numpy())

    def reliability(self) -> dict[str, Tensor]:
        """Reliability table of the pooled equal-width bins (synced across ranks).

        Returns:
            ``bin_lower``, ``bin_upper``, ``count``, ``confidence``, ``accuracy``: float64
            ``(n_bins,)``; confidence/accuracy are NaN in empty bins.
        """
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            return {k: v.clone() for k, v in state_reliability(self._sums()).items()}

    def reliability_classwise(self) -> dict[str, Tensor]:
        """Per-class reliability tables of the equal-width bins of p_k (synced across ranks).

        Returns:
            ``bin_lower``, ``bin_upper``: float64 ``(n_bins,)``; ``count``, ``confidence``
            (mean p_k), ``accuracy`` (frequency of class k): float64 ``(C, n_bins)``, NaN in
            empty bins. Row k feeds :func:`densecal.report.figures.plot_reliability`.

        Raises:
            DensecalInputError: with ``task="binary"`` (no classes).
        """
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            return {k: v.clone()
                    for k, v in state_reliability(self._sums(), per_class=True).items()}

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Add another metric's (or state dict's) sums into this one.

        Unlike torchmetrics' default, the merge counts as an update (no "compute before update"
        warning) and drops a cached :meth:`compute` result, which would otherwise be stale.
        """
        super().merge_state(incoming_state)
        self._update_count += 1
        self._computed = None

    def state_size(self) -> int:
        """Total number of elements held in the metric state (independent of the data seen)."""
        return sum(int(getattr(self, name).numel()) for name in self._state_names)
