"""Sample-based metrics of stochastic segmentation: GED, HM-IoU, diversity, flip calibration.

A stochastic segmenter returns ``N`` label maps (samples) per image; the ground truth is ``M``
label maps (graders, or the modes of an injected-ambiguity dataset with known probabilities).
Every metric here compares label maps through

    d(a, b) = 1 - IoU(a, b),

the distance of Kohl et al., "A Probabilistic U-Net for Segmentation of Ambiguous Images"
(NeurIPS 2018), used by Kassapis et al., "Calibrated Adversarial Refinement for Stochastic
Semantic Segmentation" (ICCV 2021, docs/methods.md section 4). Inputs are class-index maps (take the
argmax of probabilities first); class 0 is background and never enters the IoU.

Multi-class IoU (two conventions, both documented in :func:`pairwise_iou`):

- ``num_classes=None`` (default): mean IoU over the foreground classes present in either map;
  IoU = 1 when neither map has foreground. For binary maps this is the plain foreground IoU.
  This is the CARSSS evaluation's rule (github.com/EliasKassapis/CARSSS,
  ``utils/evaluation_utils.py``: a class absent from both maps has IoU NaN and ``nanmean``
  skips it).
- ``num_classes=K``: a fixed class set: one-hot over ``K`` classes, per-class IoU with 0/0 read
  as 1, averaged over *all* classes ``1..K-1``, so classes absent from both maps count as
  perfect agreement (densecal's option, not a convention of the CARSSS code). Example:
  ``a = [[1, 2], [0, 0]]``, ``b = [[1, 1], [0, 0]]``: 0.25 by default (and in CARSSS), 0.5 with
  ``K = 4``. For ``K = 2`` both conventions coincide.

All arithmetic is float64. Functions accept torch tensors or numpy arrays of integers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from densecal.errors import input_error

__all__ = [
    "Flips",
    "flip_counts",
    "flip_frequencies",
    "flip_frequency_error",
    "generalized_energy_distance",
    "hungarian_matched_iou",
    "iou_distance",
    "pairwise_iou",
    "sample_diversity",
]

Flips = Mapping[int, tuple[int, float]]
"""``{class: (twin_class, flip_probability)}`` of an injected-ambiguity dataset."""


def _as_labels(name: str, value: Tensor | np.ndarray, min_dim: int = 1) -> Tensor:
    tensor = torch.as_tensor(value)
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        if tensor.dtype != torch.bool:
            raise input_error(name, f"expected integer class-index maps, got {tensor.dtype} "
                                    "(take the argmax of probabilities first)")
        tensor = tensor.long()
    if tensor.dim() < min_dim:
        raise input_error(name, f"expected at least {min_dim} dimensions, got shape "
                                f"{tuple(tensor.shape)}")
    if tensor.numel() and int(tensor.min()) < 0:
        raise input_error(name, "class indices must be >= 0")
    return tensor.long()


def pairwise_iou(a: Tensor | np.ndarray, b: Tensor | np.ndarray,
                 num_classes: int | None = None) -> Tensor:
    """IoU between every map of ``a`` and every map of ``b`` (foreground classes only).

    Args:
        a: ``(N, *S)`` integer class-index maps (0 = background).
        b: ``(M, *S)`` integer class-index maps, same ``S``.
        num_classes: ``None`` for the mean over foreground classes present in either map (IoU =
            1 when both maps are all background; the CARSSS evaluation's rule); ``K`` for the
            mean over all classes ``1..K-1`` with a class absent from both maps counted as IoU
            1 (a fixed class set; densecal's option).

    Returns:
        ``(N, M)`` float64 tensor in [0, 1].

    Raises:
        DensecalInputError: float input, negative indices, mismatched spatial shapes, or a
            class index >= ``num_classes``.

    Example:
        >>> a = torch.tensor([[[1, 1], [0, 0]]])
        >>> b = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]])
        >>> pairwise_iou(a, b).tolist()
        [[0.5, 0.0]]
    """
    a, b = _as_labels("a", a), _as_labels("b", b)
    if a.shape[1:] != b.shape[1:]:
        raise input_error("b", f"spatial shape {tuple(b.shape[1:])} differs from a's "
                               f"{tuple(a.shape[1:])}")
    n_max = int(max(a.max() if a.numel() else 0, b.max() if b.numel() else 0)) + 1
    if num_classes is not None:
        if num_classes < 2:
            raise input_error("num_classes", f"must be >= 2, got {num_classes}")
        if n_max > num_classes:
            raise input_error("num_classes", f"a class index {n_max - 1} is >= {num_classes}")
        n_max = num_classes
    a_flat, b_flat = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    classes = torch.arange(1, max(n_max, 2), device=a.device)
    one_a = (a_flat[:, :, None] == classes).double()  # (N, P, C)
    one_b = (b_flat[:, :, None] == classes).double()  # (M, P, C)
    inter = torch.einsum("npc,mpc->nmc", one_a, one_b)
    union = one_a.sum(1)[:, None, :] + one_b.sum(1)[None, :, :] - inter
    present = union > 0
    per_class = torch.where(present, inter / union.clamp_min(1.0), torch.ones_like(inter))
    if num_classes is not None:
        return per_class.mean(-1)
    n_present = present.sum(-1)
    iou = (per_class * present).sum(-1) / n_present.clamp_min(1)
    return torch.where(n_present > 0, iou, torch.ones_like(iou))


def iou_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray,
                 num_classes: int | None = None) -> Tensor:
    """``d(a, b) = 1 - IoU(a, b)`` between two label maps (Kohl et al. 2018, eq. for D_GED).

    Args:
        a: ``(*S)`` integer class-index map (0 = background).
        b: ``(*S)`` integer class-index map.
        num_classes: multi-class convention, see :func:`pairwise_iou`.

    Returns:
        0-dim float64 tensor in [0, 1]; 0 when both maps are all background.

    Example:
        >>> float(iou_distance(torch.tensor([[1, 1], [0, 0]]), torch.tensor([[1, 0], [0, 1]])))
        0.6666666666666667
    """
    a, b = _as_labels("a", a, 0), _as_labels("b", b, 0)
    return 1.0 - pairwise_iou(a[None], b[None], num_classes)[0, 0]


def _weights(label_weights: Tensor | np.ndarray | None, m: int) -> Tensor:
    if label_weights is None:
        return torch.full((m,), 1.0 / m, dtype=torch.float64)
    w = torch.as_tensor(label_weights, dtype=torch.float64).cpu()
    if w.shape != (m,):
        raise input_error("label_weights", f"expected shape ({m},), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise input_error("label_weights", "must be finite, >= 0 and not all zero")
    return w / w.sum()


def _check_pair(samples: Tensor | np.ndarray,
                labels: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    s, y = _as_labels("samples", samples, 1), _as_labels("labels", labels, 1)
    if s.shape[0] == 0 or y.shape[0] == 0:
        raise input_error("samples" if s.shape[0] == 0 else "labels", "need at least one map")
    return s, y


def generalized_energy_distance(samples: Tensor | np.ndarray, labels: Tensor | np.ndarray,
                                label_weights: Tensor | np.ndarray | None = None,
                                num_classes: int | None = None,
                                squared: bool = True) -> Tensor:
    """Generalized energy distance between sampled and ground-truth label maps of one image.

    ``D²_GED = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')]`` with ``d = 1 - IoU`` and the
    expectations estimated over the *full* ``N x N`` and ``M x M`` matrices, zero diagonal
    included (Kohl et al. 2018's estimator, kept by CAR's code). When the ``M`` labels are modes
    with known probabilities ``w``, the Y expectations are weighted:
    ``E[d(S, Y)] = (1/N) Σ_i Σ_j w_j d(S_i, Y_j)`` and ``E[d(Y, Y')] = Σ_j Σ_k w_j w_k d(Y_j,
    Y_k)``. Kohl et al. and Kassapis et al. report ``D²_GED`` (the default here).

    Args:
        samples: ``(N, *S)`` integer class-index maps drawn from the model.
        labels: ``(M, *S)`` integer ground-truth maps (graders or modes).
        label_weights: ``(M,)`` non-negative mode probabilities (normalised to sum 1), or
            ``None`` for equal weights.
        num_classes: multi-class IoU convention, see :func:`pairwise_iou`.
        squared: return ``D²_GED`` (default) or its square root (clamped at 0 first).

    Returns:
        0-dim float64 tensor.

    Raises:
        DensecalInputError: bad maps or weights.

    Example:
        >>> s = torch.tensor([[[1, 0]], [[0, 0]]])
        >>> float(generalized_energy_distance(s, s))
        0.0
    """
    s, y = _check_pair(samples, labels)
    w = _weights(label_weights, y.shape[0]).to(s.device)
    cross = (1.0 - pairwise_iou(s, y, num_classes)).mean(0) @ w
    within_s = (1.0 - pairwise_iou(s, s, num_classes)).mean()
    within_y = w @ (1.0 - pairwise_iou(y, y, num_classes)) @ w
    ged2 = 2.0 * cross - within_s - within_y
    return ged2 if squared else ged2.clamp_min(0.0).sqrt()


def sample_diversity(samples: Tensor | np.ndarray, num_classes: int | None = None) -> Tensor:
    """Diversity ``E[d(S, S')]`` over the full ``N x N`` matrix (diagonal included).

    Args:
        samples: ``(N, *S)`` integer class-index maps.
        num_classes: multi-class IoU convention, see :func:`pairwise_iou`.

    Returns:
        0-dim float64 tensor in [0, 1].
    """
    s = _as_labels("samples", samples, 1)
    if s.shape[0] == 0:
        raise input_error("samples", "need at least one map")
    return (1.0 - pairwise_iou(s, s, num_classes)).mean()


def hungarian_matched_iou(samples: Tensor | np.ndarray, labels: Tensor | np.ndarray,
                          num_classes: int | None = None) -> Tensor:
    """HM-IoU: mean IoU of an optimal one-to-one matching of samples to tiled labels.

    The ``M`` labels are tiled to ``N`` maps (``labels[j % M]`` for ``j < N``; exact replication
    when ``M`` divides ``N``, as for LIDC's 4 graders and 16 samples), the cost ``1 - IoU`` is
    minimised by :func:`scipy.optimize.linear_sum_assignment`, and the matched IoUs are averaged
    (Kassapis et al. 2021, section 4, following Kohl et al. 2019's Hungarian-matched IoU).

    Args:
        samples: ``(N, *S)`` integer class-index maps.
        labels: ``(M, *S)`` integer ground-truth maps.
        num_classes: multi-class IoU convention, see :func:`pairwise_iou`.

    Returns:
        0-dim float64 tensor in [0, 1].
    """
    s, y = _check_pair(samples, labels)
    n = s.shape[0]
    tiled = y[torch.arange(n, device=y.device) % y.shape[0]]
    iou = pairwise_iou(s, tiled, num_classes).cpu().numpy()
    rows, cols = linear_sum_assignment(1.0 - iou)
    return torch.tensor(float(iou[rows, cols].mean()), dtype=torch.float64)


def check_flips(flips: Flips) -> None:
    for cls, (twin, prob) in flips.items():
        if not 0.0 <= float(prob) <= 1.0 or cls == twin:
            raise input_error("flips", f"class {cls}: need a distinct twin and a probability in "
                                       f"[0, 1], got ({twin}, {prob})")


def flip_counts(samples: Tensor | np.ndarray, base_label: Tensor | np.ndarray, flips: Flips,
                *, conditional: bool = False) -> dict[int, tuple[int, int]]:
    """``(twin picks, pairs)`` per flippable class present: the numerator and denominator of
    :func:`flip_frequencies`, to pool over images before dividing (as the CARSSS evaluation
    pools its class probabilities over a batch).

    Example:
        >>> samples = torch.tensor([[[1, 0]], [[2, 0]], [[3, 0]], [[1, 0]]])
        >>> flip_counts(samples, torch.tensor([[1, 0]]), {1: (2, 0.5)})
        {1: (1, 4)}
    """
    s = _as_labels("samples", samples, 1)
    base = _as_labels("base_label", base_label, 0)
    if s.shape[1:] != base.shape:
        raise input_error("base_label", f"shape {tuple(base.shape)} differs from the samples' "
                                        f"{tuple(s.shape[1:])}")
    check_flips(flips)
    out: dict[int, tuple[int, int]] = {}
    for cls, (twin, _) in sorted(flips.items()):
        where = base == cls
        if not bool(where.any()):
            continue
        picked = s[:, where]
        twins = int((picked == twin).sum())
        pairs = int(((picked == twin) | (picked == cls)).sum()) if conditional else picked.numel()
        if pairs:
            out[int(cls)] = (twins, pairs)
    return out


def flip_frequencies(samples: Tensor | np.ndarray, base_label: Tensor | np.ndarray,
                     flips: Flips, *, conditional: bool = False) -> dict[int, float]:
    """Fraction of sampled pixels that choose the twin, per flippable class present.

    For each flippable class ``c`` present in ``base_label``: the mean over samples and over the
    pixels with ``base_label == c`` of ``1[sample == twin(c)]`` (the "calibration of samples"
    of Kassapis et al. 2021, section 4.2). With ``conditional`` the mean runs only over the
    (sample, pixel) pairs labelled ``c`` or ``twin(c)``: the share of the twin among the two
    readings of the class, free of the pixels a sample gives to background or another class
    (a segmentation error, not a calibration one).

    Args:
        samples: ``(N, *S)`` integer class-index maps.
        base_label: ``(*S)`` unflipped ground-truth map.
        flips: ``{class: (twin, probability)}``.
        conditional: count only samples that label the pixel ``c`` or ``twin(c)``.

    Returns:
        ``{class: frequency}`` for the flippable classes present (with ``conditional``: and
        labelled ``c`` or its twin by some sample), frequencies in [0, 1].

    Example:
        >>> samples = torch.tensor([[[1, 0]], [[2, 0]], [[3, 0]], [[1, 0]]])
        >>> flip_frequencies(samples, torch.tensor([[1, 0]]), {1: (2, 0.5)})
        {1: 0.25}
        >>> flip_frequencies(samples, torch.tensor([[1, 0]]), {1: (2, 0.5)}, conditional=True)
        {1: 0.3333333333333333}
    """
    counts = flip_counts(samples, base_label, flips, conditional=conditional)
    return {cls: twins / pairs for cls, (twins, pairs) in counts.items()}


def flip_frequency_error(samples: Tensor | np.ndarray, base_label: Tensor | np.ndarray,
                         flips: Flips, *, conditional: bool = False) -> dict[int, float]:
    """``|frequency of the twin - true flip probability|`` per flippable class present.

    On one image with ``N`` samples this has a noise floor of about
    ``sqrt(p (1 - p) / N)`` even for a perfect sampler (whole-class flips are Bernoulli draws
    per sample): to judge calibration, pool :func:`flip_counts` over images first, then take
    the error (``StochasticSegmentationMetrics``' ``flip_error``).

    Args:
        samples: ``(N, *S)`` integer class-index maps.
        base_label: ``(*S)`` unflipped ground-truth map.
        flips: ``{class: (twin, probability)}``.
        conditional: as :func:`flip_frequencies`.

    Returns:
        ``{class: absolute error}`` in [0, 1], for the flippable classes present.

    Example:
        >>> samples = torch.tensor([[[1, 0]], [[2, 0]], [[1, 0]], [[1, 0]]])
        >>> flip_frequency_error(samples, torch.tensor([[1, 0]]), {1: (2, 0.5)})
        {1: 0.25}
    """
    freq = flip_frequencies(samples, base_label, flips, conditional=conditional)
    return {cls: abs(f - float(flips[cls][1])) for cls, f in freq.items()}
