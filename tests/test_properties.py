"""Property-based tests (hypothesis): invariants of the pixel calibration metrics and identities
of the losses, on tiny random maps.

Maps are drawn as a shape plus a seed; probabilities lie on the grid ``(m + 1/2) / 1000``, so no
value sits on a bin edge ``j / n_bins`` (where conventions legitimately differ) and the float64
sums are exact enough for ``1e-12`` tolerances.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.classification import BinaryCalibrationError

from densecal.losses import (
    focal_loss,
    label_smoothing_loss,
    paln_loss,
    pdd_loss,
    perturbed_target,
    sc_bce_loss,
    svls_kernel,
)
from densecal.metrics import PixelCalibration
from densecal.metrics.functional import pixel_calibration

FAST = settings(max_examples=25, deadline=None)
KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")


def _maps(n: int, h: int, w: int, seed: int, soft: bool = False) -> tuple[torch.Tensor,
                                                                              torch.Tensor]:
    """``(n, h, w)`` float64 probabilities off every bin edge and a hard (or soft) target."""
    rng = np.random.default_rng(seed)
    q = (rng.integers(0, 1000, (n, h, w)) + 0.5) / 1000
    y = rng.random((n, h, w)) if soft else (rng.random((n, h, w)) < q).astype(np.float64)
    return torch.from_numpy(q), torch.from_numpy(y)


maps = st.builds(_maps, st.integers(1, 5), st.integers(1, 6), st.integers(1, 6),
                 st.integers(0, 2**31 - 1))
options = st.fixed_dictionaries({
    "n_bins": st.sampled_from([1, 2, 5, 10, 15]),
    "confidence": st.sampled_from(["top-label", "positive"]),
    "aggregate": st.sampled_from(["pooled", "per-image"]),
})


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-12) -> None:
    for key in KEYS:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def _metric(opts: dict[str, object], *batches: tuple[torch.Tensor, torch.Tensor]
            ) -> PixelCalibration:
    metric = PixelCalibration(**opts)  # type: ignore[arg-type]
    for q, y in batches:
        metric.update(q, y)
    return metric


# ----------------------------------------------------------------------------- metrics

@FAST
@given(maps, options, st.data())
def test_batch_split_invariance(qy: tuple[torch.Tensor, torch.Tensor],
                                opts: dict[str, object], data: st.DataObject) -> None:
    q, y = qy
    cut = data.draw(st.integers(0, q.shape[0]))
    parts = [(q[:cut], y[:cut]), (q[cut:], y[cut:])]
    split = _metric(opts, *[p for p in parts if p[0].shape[0] > 0]).compute()
    _close(split, pixel_calibration(q, y, **opts))  # type: ignore[arg-type]


@FAST
@given(maps, options, st.randoms(use_true_random=False))
def test_image_order_invariance(qy: tuple[torch.Tensor, torch.Tensor], opts: dict[str, object],
                                rnd: object) -> None:
    q, y = qy
    perm = torch.tensor(rnd.sample(range(q.shape[0]), q.shape[0]))  # type: ignore[attr-defined]
    _close(pixel_calibration(q[perm], y[perm], **opts),  # type: ignore[arg-type]
           pixel_calibration(q, y, **opts))  # type: ignore[arg-type]


@FAST
@given(maps, st.integers(0, 2**31 - 1))
def test_pooled_pixel_order_invariance(qy: tuple[torch.Tensor, torch.Tensor], seed: int) -> None:
    q, y = qy
    perm = torch.randperm(q.numel(), generator=torch.Generator().manual_seed(seed))
    shuffled = (q.flatten()[perm].reshape(q.shape), y.flatten()[perm].reshape(q.shape))
    _close(pixel_calibration(*shuffled), pixel_calibration(q, y))


@FAST
@given(maps, st.sampled_from([2, 5, 10]))
def test_per_image_equals_pooled_on_one_image(qy: tuple[torch.Tensor, torch.Tensor],
                                              n_bins: int) -> None:
    q, y = (t[:1] for t in qy)
    _close(pixel_calibration(q, y, n_bins=n_bins, aggregate="per-image"),
           pixel_calibration(q, y, n_bins=n_bins, aggregate="pooled"))


same_size_pair = st.integers(1, 6).flatmap(lambda h: st.integers(1, 6).flatmap(
    lambda w: st.tuples(*(st.builds(_maps, st.integers(1, 3), st.just(h), st.just(w),
                                    st.integers(0, 2**31 - 1)) for _ in range(2)))))


@FAST
@given(same_size_pair, options)
def test_merge_state_equals_single_pass(pair: tuple[tuple[torch.Tensor, torch.Tensor], ...],
                                        opts: dict[str, object]) -> None:
    a, b = pair
    left, right = _metric(opts, a), _metric(opts, b)
    left.merge_state(right)
    _close(left.compute(), _metric(opts, a, b).compute())


@FAST
@given(st.builds(_maps, st.integers(1, 4), st.integers(1, 6), st.integers(1, 6),
                 st.integers(0, 2**31 - 1), st.booleans()), options)
def test_bounds_and_orderings(qy: tuple[torch.Tensor, torch.Tensor],
                              opts: dict[str, object]) -> None:
    out = {k: v.item() for k, v in
           pixel_calibration(*qy, target_type="soft", **opts).items()}  # type: ignore[arg-type]
    for key in ("ece", "mce", "oe", "ace", "brier", "accuracy"):
        assert 0.0 <= out[key] <= 1.0, (key, out[key])
    # ECE is a weighted mean of the bins' gaps, MCE their maximum; OE weights the positive part
    # of each gap by a confidence <= 1.
    assert out["ece"] <= out["mce"] + 1e-12
    assert out["oe"] <= out["ece"] + 1e-12
    assert out["nll"] >= 0.0


@FAST
@given(maps, st.sampled_from([1, 3, 5, 10, 15]))
def test_positive_mode_agrees_with_torchmetrics(qy: tuple[torch.Tensor, torch.Tensor],
                                                n_bins: int) -> None:
    q, y = qy
    ours = pixel_calibration(q, y, n_bins=n_bins, confidence="positive")
    for norm, key in (("l1", "ece"), ("max", "mce")):
        reference = BinaryCalibrationError(n_bins=n_bins, norm=norm)
        reference.update(q, y.long())
        assert abs(reference.compute().item() - ours[key].item()) < 1e-12, key


# ----------------------------------------------------------------------------- losses

logit_maps = st.builds(
    lambda n, h, seed: torch.randn(n, 1, h, h, dtype=torch.float64,
                                   generator=torch.Generator().manual_seed(seed)) * 4,
    st.integers(1, 3), st.integers(1, 4), st.integers(0, 2**31 - 1))
unit = st.floats(0.0, 1.0, allow_nan=False)


def _bce64(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Independent float64 BCE-with-logits: softplus(l) - t l, per pixel."""
    return torch.log1p(torch.exp(-logits.abs())) + logits.clamp(min=0) - t * logits


def _soft_target(logits: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.rand(logits.shape, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(seed))


@FAST
@given(logit_maps, unit, st.floats(0.0, 2.0), st.integers(0, 1000))
def test_scbce_expectation_is_bce_on_the_mixed_target(logits: torch.Tensor, alpha: float,
                                                      beta: float, seed: int) -> None:
    """E_Z[SC-BCE] = (1 - a) BCE(y) + a BCE(p(y, b)) = BCE((1 - a) y + a p(y, b)) (BCE is
    affine in its target), with p(y, b) = (1 - b) y + b / 2 (ASLP Eq. 2-3)."""
    y = _soft_target(logits, seed)
    got = sc_bce_loss(logits, y, alpha, beta, expected=True, reduction="none")
    mix = (1 - alpha) * _bce64(logits, y) + alpha * _bce64(logits, perturbed_target(y, beta))
    torch.testing.assert_close(got, mix, rtol=0, atol=1e-12)
    target = (1 - alpha) * y + alpha * ((1 - beta) * y + beta / 2)
    torch.testing.assert_close(got, _bce64(logits, target), rtol=0, atol=1e-12)


@FAST
@given(logit_maps, st.floats(0.0, 2.0), st.integers(0, 1000))
def test_scbce_alpha_one_is_deterministic_and_alpha_zero_is_bce(logits: torch.Tensor,
                                                                beta: float, seed: int) -> None:
    y = _soft_target(logits, seed)
    torch.testing.assert_close(sc_bce_loss(logits, y, 0.0, beta, reduction="none"),
                               _bce64(logits, y), rtol=0, atol=1e-12)
    torch.testing.assert_close(sc_bce_loss(logits, y, 1.0, beta, reduction="none"),
                               sc_bce_loss(logits, y, 1.0, beta, expected=True,
                                           reduction="none"), rtol=0, atol=0)


@FAST
@given(logit_maps, unit, st.integers(0, 1000))
def test_binary_label_smoothing_equals_scbce_alpha_one(logits: torch.Tensor, eps: float,
                                                       seed: int) -> None:
    y = (_soft_target(logits, seed) > 0.5).double()
    ls = label_smoothing_loss(logits, y, eps)
    torch.testing.assert_close(ls, sc_bce_loss(logits, y, 1.0, eps), rtol=0, atol=1e-12)
    torch.testing.assert_close(ls, _bce64(logits, (1 - eps) * y + eps / 2).mean(), rtol=0,
                               atol=1e-12)


@FAST
@given(st.integers(1, 3), st.integers(2, 5), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_focal_gamma_zero_is_cross_entropy(n: int, c: int, h: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, h, dtype=torch.float64, generator=g) * 3
    index = torch.randint(0, c, (n, h, h), generator=g)
    torch.testing.assert_close(focal_loss(logits, index, 0.0), F.cross_entropy(logits, index),
                               rtol=0, atol=1e-12)
    binary, y = logits[:, :1], (torch.rand(n, 1, h, h, generator=g) > 0.5).double()
    torch.testing.assert_close(focal_loss(binary, y, 0.0, task="binary"),
                               F.binary_cross_entropy_with_logits(binary, y), rtol=0, atol=1e-12)


@FAST
@given(st.integers(1, 3), st.sampled_from([3, 5, 7]), st.floats(0.1, 5.0))
def test_svls_kernel_sums_to_one_with_centre_half(dims: int, size: int, sigma: float) -> None:
    kernel = svls_kernel(dims, size, sigma)
    assert kernel.shape == (size,) * dims
    assert math.isclose(kernel.sum().item(), 1.0, abs_tol=1e-12)
    assert math.isclose(kernel[(size // 2,) * dims].item(), 0.5, abs_tol=1e-12)
    assert kernel.min().item() >= 0.0
    torch.testing.assert_close(kernel, kernel.flip(list(range(dims))), rtol=0, atol=0)


@FAST
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_paln_zero_cases(n: int, c: int, seed: int) -> None:
    scores = torch.randn(n, c, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    assert paln_loss(scores, torch.zeros(n, c)).item() == 0.0  # no positive anywhere
    assert abs(paln_loss(scores, torch.ones(n, c)).item()) < 1e-12  # no negative: -log 1


@FAST
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**31 - 1),
       st.floats(0.5, 5.0))
def test_pdd_zero_when_student_equals_teacher(n: int, c: int, seed: int, t: float) -> None:
    g = torch.Generator().manual_seed(seed)
    logits, scores = (torch.randn(n, c, dtype=torch.float64, generator=g) * 3 for _ in range(2))
    assert abs(pdd_loss(logits, scores, logits.clone(), scores.clone(), t).item()) < 1e-12
    other = logits + 1.0
    assert pdd_loss(other, scores, logits, scores, t).item() > 0.0
