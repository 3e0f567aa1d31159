"""Uncertainty-distillation losses (METHODS.md section 5) on hand values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

from densecal.errors import DensecalInputError
from densecal.losses.distillation import (
    kd_loss,
    label_uncertainty,
    paln_loss,
    pdd_loss,
    teacher_loss,
    uad_loss,
    uncertainty_attention,
)

# image A: s = log[1, 2, 3, 4], positives {0, 1}: terms log(8/1) and log(9/2) -> mean log 6
# image B: s = log[1, 1, 1, 1], positive {0}: term log 4
S = torch.log(torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64))
Y = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])


def _buggy_paln(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official code's two bugs: `~` on uint8 and the last image's positive count."""
    t = target.to(torch.uint8)
    neg = (~t).bool()  # bitwise NOT: 1 -> 254, 0 -> 255, every label "negative"
    total = 0.0
    for i in range(scores.shape[0]):
        for lab in torch.nonzero(t[i]).flatten():
            den = scores[i, lab].exp() + (scores[i].exp() * neg[i]).sum()
            total = total - torch.log(scores[i, lab].exp() / den)
    return total / t[-1].sum()


def test_paln_hand_value_per_image_normalisation() -> None:
    assert paln_loss(S[:1], Y[:1]).item() == pytest.approx(math.log(6), abs=1e-12)
    assert paln_loss(S[1:], Y[1:]).item() == pytest.approx(math.log(4), abs=1e-12)
    expected = (math.log(6) + math.log(4)) / 2
    assert paln_loss(S, Y).item() == pytest.approx(expected, abs=1e-12)
    # the last-image normaliser would give (log 8 + log 4.5 + log 4) / 1
    assert _buggy_paln(S, Y).item() != pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool, torch.int64, torch.float32])
def test_paln_mask_dtype_independent(dtype: torch.dtype) -> None:
    expected = (math.log(6) + math.log(4)) / 2
    assert paln_loss(S, Y.to(dtype)).item() == pytest.approx(expected, abs=1e-12)


def test_paln_no_positive_is_zero_with_zero_grad() -> None:
    s = torch.randn(3, 5, requires_grad=True)
    loss = paln_loss(s, torch.zeros(3, 5))
    loss.backward()
    assert loss.item() == 0.0
    assert s.grad is not None and torch.equal(s.grad, torch.zeros(3, 5))


def test_paln_image_without_positive_is_left_out_and_all_positive_is_zero() -> None:
    s = torch.cat([S[:1], torch.randn(1, 4, dtype=torch.float64)])
    y = torch.cat([Y[:1], torch.zeros(1, 4, dtype=torch.long)])
    assert paln_loss(s, y).item() == pytest.approx(math.log(6), abs=1e-12)
    # no negatives: each positive competes with nothing -> -log 1 = 0
    assert paln_loss(S, torch.ones(2, 4)).item() == pytest.approx(0.0, abs=1e-12)


def test_teacher_loss_hand_value() -> None:
    o = torch.zeros(2, 4, dtype=torch.float64)  # BCE(σ(0), y) = log 2 for every label
    expected = 0.5 * (math.log(2) + (math.log(6) + math.log(4)) / 2)
    assert teacher_loss(o, S, Y).item() == pytest.approx(expected, abs=1e-12)


def test_gradchecks() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    o = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 1, 0], [1, 1, 1, 1, 0]], dtype=torch.float64)
    assert gradcheck(lambda a: paln_loss(a, y), (s,))
    assert gradcheck(lambda a, b: teacher_loss(a, b, y), (o, s))
    assert gradcheck(label_uncertainty, (o, s))
    t_o, t_s = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    assert gradcheck(lambda a, b: pdd_loss(a, b, t_o, t_s), (o, s))


def _pdd_reference(o_s, s_s, o_t, s_t, t):  # float64, straight from the formula
    c = o_s.shape[1]
    pt, ps = torch.softmax(s_t / t, 1), torch.softmax(s_s / t, 1)
    kl = (pt * torch.log(pt / ps)).sum(1)
    a, b = torch.sigmoid(o_t / t), torch.sigmoid(o_s / t)
    bern = (a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b))).sum(1)
    return (0.5 * (t**2 * kl + t**2 / (2 * c) * bern)).mean()


def test_pdd_zero_at_equality_and_matches_reference() -> None:
    g = torch.Generator().manual_seed(1)
    o, s = (torch.randn(4, 6, dtype=torch.float64, generator=g) for _ in range(2))
    o_s = o.clone().requires_grad_(True)
    loss = pdd_loss(o_s, s, o, s)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert o_s.grad is not None and o_s.grad.abs().max().item() < 1e-12
    o2, s2 = (torch.randn(4, 6, dtype=torch.float64, generator=g) for _ in range(2))
    for t in (1.0, 3.0):
        got = pdd_loss(o2, s2, o, s, temperature=t).item()
        assert got == pytest.approx(_pdd_reference(o2, s2, o, s, t).item(), rel=1e-10)
        assert got > 0
    with pytest.raises(DensecalInputError, match="temperature"):
        pdd_loss(o2, s2, o, s, temperature=0.0)


def test_pdd_teacher_is_detached() -> None:
    o_t = torch.randn(2, 3, requires_grad=True)
    pdd_loss(torch.randn(2, 3, requires_grad=True), torch.randn(2, 3), o_t,
             torch.randn(2, 3)).backward()
    assert o_t.grad is None


def test_label_uncertainty_values() -> None:
    o = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    # a constant shift leaves the softmax unchanged: U = 0
    assert label_uncertainty(o, o + 5.0).item() == pytest.approx(0.0, abs=1e-12)
    s = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    q = torch.softmax(o, 1)
    expected = (torch.full((3,), 1 / 3, dtype=torch.float64) * torch.log((1 / 3) / q[0])).sum()
    assert label_uncertainty(o, s).item() == pytest.approx(expected.item(), abs=1e-12)


def test_uncertainty_attention_weights_and_gradient_path() -> None:
    g = torch.Generator().manual_seed(2)
    f = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    # U_n = Σ_k a_k Σ_hw F²/2 -> G = a_k F_k, w = softmax_k(a_k Σ_hw F_k)
    u = (a[None, :, None, None] * f.pow(2) / 2).sum((1, 2, 3))
    amap = uncertainty_attention(f, u)
    w = torch.softmax(a * f.detach().sum((2, 3)), 1)
    expected = (w[:, :, None, None] * f.detach()).sum(1)
    assert torch.allclose(amap, expected, atol=1e-12)
    # weights detached: d(Σ A)/dF_k = w_k exactly (no second-order term through G)
    (grad,) = torch.autograd.grad(amap.sum(), f)
    assert torch.allclose(grad, w[:, :, None, None].expand_as(grad), atol=1e-12)


def test_uad_loss_value_and_detached_teacher() -> None:
    student = torch.ones(2, 3, 3, requires_grad=True)
    teacher = torch.zeros(2, 3, 3, requires_grad=True)
    loss = uad_loss(student, teacher)
    loss.backward()
    assert loss.item() == pytest.approx(0.1)
    assert teacher.grad is None
    assert student.grad is not None
    assert torch.allclose(student.grad, torch.full((2, 3, 3), 0.2 / 18))
    # another spatial size is resized to the teacher's: a constant map stays constant
    assert uad_loss(torch.ones(2, 6, 6), torch.zeros(2, 3, 3), 1.0).item() == pytest.approx(1.0)
    with pytest.raises(DensecalInputError, match="uad_loss"):
        uad_loss(torch.ones(2, 3), torch.ones(2, 3))


def test_shape_errors() -> None:
    with pytest.raises(DensecalInputError, match="paln_loss"):
        paln_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(DensecalInputError, match="uncertainty_attention"):
        uncertainty_attention(torch.zeros(2, 3, requires_grad=True), torch.zeros(2))


def test_kd_loss_hand_computed_and_float64() -> None:
    """One image, two labels, T = 2: (T^2 / C) * sum_c KL_Bern(sigma(o_T/T) || sigma(o_S/T))."""
    o_s, o_t = torch.tensor([[0.0, 2.0]]), torch.tensor([[2.0, -2.0]])

    def kl(p: float, q: float) -> float:
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    def sig(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    expected = 4.0 / 2 * (kl(sig(1.0), sig(0.0)) + kl(sig(-1.0), sig(1.0)))
    assert kd_loss(o_s, o_t, 2.0).item() == pytest.approx(expected, rel=1e-6)
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64)
    assert gradcheck(lambda x: kd_loss(x, b), (a,))
    assert kd_loss(b, b).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DensecalInputError, match="kd_loss"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
