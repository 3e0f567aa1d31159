"""Tests of SC-BCE (densecal.losses.scbce) against hand-computed values and float64 references."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from densecal.errors import DensecalInputError
from densecal.losses import (
    SCBCELoss,
    Technique,
    per_image_statistics,
    perturbed_target,
    sc_bce_loss,
    technique_beta,
)

LN2 = math.log(2.0)
LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4


def ref_bce(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Independent float64 BCE on probabilities: -t log q - (1 - t) log(1 - q)."""
    q = 1.0 / (1.0 + torch.exp(-logits.double()))
    t = t.double()
    return -t * torch.log(q) - (1.0 - t) * torch.log(1.0 - q)


def recovered_target(loss: torch.Tensor, logit: float) -> torch.Tensor:
    """Invert BCE-with-logits at a known logit l != 0: loss = softplus(l) - t l."""
    return (math.log1p(math.exp(logit)) - loss) / logit


# ---------------------------------------------------------------------------------- values


def test_hand_values_plain_bce() -> None:
    logits = torch.tensor([[0.0, LN3, LN3, -LN3]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    out = sc_bce_loss(logits, target, reduction="none")
    # q = 1/2, 3/4, 3/4, 1/4  ->  ln 2, -ln(3/4), -ln(1/4), -ln(3/4)
    expected = torch.tensor([[LN2, math.log(4 / 3), math.log(4), math.log(4 / 3)]],
                            dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
    mean = (LN2 + 2 * math.log(4 / 3) + math.log(4)) / 4
    assert sc_bce_loss(logits, target).item() == pytest.approx(mean, abs=1e-14)


def test_logit_zero_gives_ln2_for_any_target() -> None:
    target = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    for tech in Technique:
        out = sc_bce_loss(torch.zeros(1, 4), target, alpha=1.0, technique=tech,
                          reduction="none")
        torch.testing.assert_close(out, torch.full((1, 4), LN2), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("technique", "fg", "bg"), [
    ("hard_inversion", 0.0, 1.0),
    ("soft_inversion", 0.25, 0.75),
    ("moderation", 0.5, 0.5),
    (Technique.MODERATION, 0.5, 0.5),
])
def test_technique_targets_hand_values(technique: str, fg: float, bg: float) -> None:
    logits = torch.tensor([[LN3, LN3]], dtype=torch.float64)  # q = 3/4
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    out = sc_bce_loss(logits, target, alpha=1.0, technique=technique, reduction="none")
    # BCE(3/4, t) = -t ln(3/4) - (1 - t) ln(1/4)
    exp = [-fg * math.log(0.75) - (1 - fg) * math.log(0.25),
           -bg * math.log(0.75) - (1 - bg) * math.log(0.25)]
    torch.testing.assert_close(out, torch.tensor([exp], dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(perturbed_target(target, technique_beta(technique)),
                               torch.tensor([[fg, bg]], dtype=torch.float64), rtol=0, atol=0)


def test_technique_beta_table_and_enum() -> None:
    assert [technique_beta(t) for t in Technique] == [2.0, 1.5, 1.0, 1.0]
    assert technique_beta("moderation_noise") == 1.0
    assert Technique("soft_inversion") is Technique.SOFT_INVERSION
    assert str(Technique.HARD_INVERSION) == "hard_inversion"
    with pytest.raises(DensecalInputError, match="technique"):
        technique_beta("flip")


def test_label_smoothing_hand_value() -> None:
    # eps = 0.2: target 1 -> 0.9; at q = 3/4: -0.9 ln(3/4) - 0.1 ln(1/4)
    out = SCBCELoss.label_smoothing(0.2)(torch.tensor([[LN3]], dtype=torch.float64),
                                         torch.ones(1, 1, dtype=torch.float64))
    assert out.item() == pytest.approx(-0.9 * math.log(0.75) - 0.1 * math.log(0.25), abs=1e-14)


@pytest.mark.parametrize("eps", [0.1, 0.3, 1.0])
def test_label_smoothing_equivalence_float64(eps: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 6, generator=g, dtype=torch.float64) * 3
    y = torch.rand(3, 5, 6, generator=g, dtype=torch.float64)  # soft labels
    ref = ref_bce(logits, (1 - eps) * y + eps / 2).mean()
    for expected in (False, True):
        out = sc_bce_loss(logits, y, alpha=1.0, beta=eps, expected=expected)
        assert out.item() == pytest.approx(ref.item(), rel=1e-13)
    assert SCBCELoss.label_smoothing(eps)(logits, y).item() == pytest.approx(ref.item(), rel=1e-13)


def test_plain_bce_matches_torch_and_leaves_rng_alone() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 4, 4, generator=g)
    y = (torch.rand(2, 1, 4, 4, generator=g) > 0.5).float()
    state = torch.get_rng_state()
    out = SCBCELoss.bce()(logits, y)
    assert torch.equal(torch.get_rng_state(), state)  # alpha = 0 draws nothing
    torch.testing.assert_close(out, F.binary_cross_entropy_with_logits(logits, y))


# ---------------------------------------------------------------------------- stochastic


def test_per_image_switch_any_generator() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    y = (torch.rand(2, 3, 3, generator=g) > 0.5).double()
    alpha = torch.tensor([0.0, 1.0])
    for seed in range(20):
        out = sc_bce_loss(logits, y, alpha, reduction="none",
                          generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(out[0], ref_bce(logits[0], y[0]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out[1], ref_bce(logits[1], 1 - y[1]), rtol=1e-12, atol=1e-12)


def test_one_coin_per_image_not_per_pixel() -> None:
    n = 4000
    logits = torch.full((n, 8), LN3, dtype=torch.float64)
    y = torch.ones(n, 8, dtype=torch.float64)
    out = sc_bce_loss(logits, y, torch.full((n,), 0.3), reduction="none",
                      generator=torch.Generator().manual_seed(3))
    clean, flipped = math.log(4 / 3), math.log(4)
    is_flipped = (out - flipped).abs() < 1e-12
    is_clean = (out - clean).abs() < 1e-12
    assert bool((is_flipped | is_clean).all())
    rows = is_flipped.all(1) | is_clean.all(1)  # every image entirely clean or entirely flipped
    assert bool(rows.all())
    # fraction flipped ~ Bernoulli(0.3) mean over 4000 images: sd = sqrt(.21/4000) = 0.0072
    assert is_flipped.all(1).double().mean().item() == pytest.approx(0.3, abs=5 * 0.0072)


def test_generator_reproducible() -> None:
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(4))
    y = torch.ones(16, 4)
    a = sc_bce_loss(logits, y, 0.5, generator=torch.Generator().manual_seed(7))
    b = sc_bce_loss(logits, y, 0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_monte_carlo_mean_approaches_expectation() -> None:
    g = torch.Generator().manual_seed(5)
    n_img, n_pix, k = 4, 3, 5000
    logits = torch.randn(n_img, n_pix, generator=g, dtype=torch.float64) * 2
    y = torch.rand(n_img, n_pix, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64)
    beta = 1.5
    exp = sc_bce_loss(logits, y, alpha, beta, expected=True)
    # expected=True equals BCE(q, (1 - ab) y + ab/2) computed independently
    ab = (alpha * beta)[:, None]
    ref = ref_bce(logits, (1 - ab) * y + ab / 2).mean()
    assert exp.item() == pytest.approx(ref.item(), rel=1e-13)
    # Monte Carlo: k copies of the batch in one call = k independent coin draws per image.
    mc = sc_bce_loss(logits.repeat(k, 1), y.repeat(k, 1), alpha.repeat(k), beta,
                     generator=torch.Generator().manual_seed(6))
    # Per image, loss = B_i + Z_i (A_i - B_i): var of the batch mean is
    # sum_i a_i (1 - a_i) (A_i - B_i)^2 / (k n_img^2). Tolerance: 5 standard deviations.
    a_i = ref_bce(logits, (1 - beta) * y + beta / 2).mean(1)
    b_i = ref_bce(logits, y).mean(1)
    sd = math.sqrt((alpha * (1 - alpha) * (a_i - b_i) ** 2).sum().item() / (k * n_img**2))
    assert sd > 1e-4  # the check has teeth: the draws do vary
    assert abs(mc.item() - exp.item()) < 5 * sd


def test_expected_minimiser_is_one_minus_alpha_beta_over_two() -> None:
    alpha, beta = 0.3, 1.5
    q_star = 1 - alpha * beta / 2  # 0.775
    for q, sign in ((q_star, 0), (q_star - 0.05, -1), (q_star + 0.05, 1)):
        logit = torch.tensor([[math.log(q / (1 - q))]], dtype=torch.float64, requires_grad=True)
        loss = sc_bce_loss(logit, torch.ones(1, 1, dtype=torch.float64), alpha, beta,
                           technique="soft_inversion", expected=True)
        (grad,) = torch.autograd.grad(loss, logit)
        # d/dl BCE(sigmoid(l), t) = q - t with t = 1 - alpha beta / 2
        assert grad.item() == pytest.approx(q - q_star, abs=1e-14)
        if sign == 0:
            assert abs(grad.item()) < 1e-14
        else:
            assert math.copysign(1, grad.item()) == sign


def test_moderation_noise_clipped() -> None:
    n, pix = 200, 100
    logits = torch.ones(2 * n, pix, dtype=torch.float64)  # logit 1: target recoverable
    y = (torch.rand(2 * n, pix, generator=torch.Generator().manual_seed(8)) > 0.5).double()
    alpha = torch.cat([torch.ones(n), torch.zeros(n)])
    out = sc_bce_loss(logits, y, alpha, technique="moderation_noise", reduction="none",
                      generator=torch.Generator().manual_seed(9))
    t = recovered_target(out, 1.0)
    noise = t[:n] - 0.5
    assert noise.abs().max().item() <= 0.25 + 1e-12
    at_edge = (noise.abs() - 0.25).abs() < 1e-12
    # P(|N(0,1)| >= 0.25) = erfc(0.25/sqrt 2) = 0.8026; sd over 20000 pixels = 0.0028
    assert at_edge.double().mean().item() == pytest.approx(math.erfc(0.25 / math.sqrt(2)),
                                                           abs=0.015)
    assert bool((noise > 0.2499).any()) and bool((noise < -0.2499).any())
    assert abs(noise.mean().item()) < 0.01  # symmetric, zero mean
    torch.testing.assert_close(t[n:], y[n:], rtol=0, atol=1e-12)  # clean images: no noise
    narrow = sc_bce_loss(logits, y, 1.0, technique="moderation_noise", noise_clip=0.1,
                         reduction="none", generator=torch.Generator().manual_seed(9))
    assert (recovered_target(narrow, 1.0) - 0.5).abs().max().item() <= 0.1 + 1e-12
    # expectation: the noise has zero mean, so expected=True equals plain moderation
    e1 = sc_bce_loss(logits, y, 0.6, technique="moderation_noise", expected=True)
    e2 = sc_bce_loss(logits, y, 0.6, technique="moderation", expected=True)
    assert e1.item() == e2.item()


# --------------------------------------------------------------------- beta conventions


def test_code_convention_b2_warns_and_leaves_unit_interval() -> None:
    logits = torch.ones(1, 2, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    with pytest.warns(UserWarning, match="outside"):
        out = sc_bce_loss(logits, y, 1.0, 2.0, beta_convention="code", reduction="none")
    # b = 2: (1 - 2b) y + b = -3 y + 2 -> -1 (fg), 2 (bg)
    torch.testing.assert_close(recovered_target(out, 1.0),
                               torch.tensor([[-1.0, 2.0]], dtype=torch.float64))


def test_code_convention_half_is_moderation_without_warning() -> None:
    logits = torch.randn(2, 5, generator=torch.Generator().manual_seed(10))
    y = torch.rand(2, 5, generator=torch.Generator().manual_seed(11))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = sc_bce_loss(logits, y, 1.0, 0.5, beta_convention="code")
    assert a.item() == sc_bce_loss(logits, y, 1.0, technique="moderation").item()


@pytest.mark.parametrize(("beta", "convention"), [(3.0, "paper"), (-0.1, "paper"),
                                                  (2.5, "code"), (math.nan, "paper")])
def test_beta_out_of_range_raises(beta: float, convention: str) -> None:
    with pytest.raises(DensecalInputError, match="beta"):
        sc_bce_loss(torch.zeros(1, 2), torch.ones(1, 2), 1.0, beta, beta_convention=convention)


# ---------------------------------------------------------------- reductions, ignore, shapes


def test_reductions_and_channel_axis() -> None:
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(2, 1, 3, 4, generator=g, dtype=torch.float64)
    y = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)  # no channel axis
    none = sc_bce_loss(logits, y, reduction="none")
    assert none.shape == (2, 1, 3, 4)
    torch.testing.assert_close(none[:, 0], ref_bce(logits[:, 0], y))
    assert sc_bce_loss(logits, y, reduction="sum").item() == pytest.approx(none.sum().item())
    assert sc_bce_loss(logits, y).item() == pytest.approx(none.sum().item() / 24)


def test_ignore_index() -> None:
    logits = torch.tensor([[0.0, LN3, 5.0], [LN3, -2.0, 1.0]], dtype=torch.float64,
                          requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 255.0], [255.0, 255.0, 1.0]], dtype=torch.float64)
    none = sc_bce_loss(logits, y, ignore_index=255, reduction="none")
    keep = y != 255
    assert bool((none[~keep] == 0).all())
    # kept: ln 2, -ln(1/4), -ln sigmoid(1)
    kept = [LN2, math.log(4), math.log1p(math.exp(-1.0))]
    torch.testing.assert_close(none[keep], torch.tensor(kept, dtype=torch.float64))
    mean = sc_bce_loss(logits, y, ignore_index=255)
    assert mean.item() == pytest.approx(sum(kept) / 3, abs=1e-14)
    (grad,) = torch.autograd.grad(mean, logits)
    assert bool((grad[~keep] == 0).all()) and bool((grad[keep] != 0).all())
    assert sc_bce_loss(logits, y, ignore_index=255, reduction="sum").item() == pytest.approx(
        sum(kept), abs=1e-14)
    all_ignored = sc_bce_loss(logits, torch.full_like(y, 255.0), ignore_index=255)
    assert all_ignored.item() == 0.0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reduction": "max"}, "reduction"),
    ({"alpha": 1.5}, "alpha"),
    ({"alpha": torch.tensor([0.1, 0.2, 0.3])}, "alpha"),
    ({"alpha": torch.tensor([0.1, -0.2])}, "alpha"),
    ({"technique": "flip"}, "technique"),
    ({"beta_convention": "matlab", "beta": 1.0}, "beta_convention"),
    ({"noise_clip": -1.0}, "noise_clip"),
])
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(DensecalInputError, match=match):
        sc_bce_loss(torch.zeros(2, 3), torch.ones(2, 3), **kwargs)


def test_bad_inputs_raise() -> None:
    with pytest.raises(DensecalInputError, match="target"):
        sc_bce_loss(torch.zeros(2, 3), torch.full((2, 3), 255.0))  # 8-bit mask not rescaled
    with pytest.raises(DensecalInputError, match="shape"):
        sc_bce_loss(torch.zeros(2, 3), torch.ones(2, 4))
    with pytest.raises(DensecalInputError, match="logits"):
        sc_bce_loss(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3))
    with pytest.raises(DensecalInputError, match="beta"):
        SCBCELoss(beta=2.5)


# ------------------------------------------------------------------------------- gradients


def test_gradcheck_expected() -> None:
    g = torch.Generator().manual_seed(13)
    logits = torch.randn(2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = (0.1 + 0.8 * torch.rand(2, 3, 2, generator=g, dtype=torch.float64)).requires_grad_()
    alpha = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda lg, t, a: sc_bce_loss(lg, t, a, 1.5, expected=True), (logits, y, alpha))


@pytest.mark.parametrize("technique", ["hard_inversion", "moderation_noise"])
def test_gradcheck_sampled(technique: str) -> None:
    g = torch.Generator().manual_seed(14)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = (0.1 + 0.8 * torch.rand(4, 3, generator=g, dtype=torch.float64)).requires_grad_()

    def fn(lg: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return sc_bce_loss(lg, t, 0.5, technique=technique, reduction="none",
                           generator=torch.Generator().manual_seed(15))

    assert torch.autograd.gradcheck(fn, (logits, y))


# ------------------------------------------------------------------- per-image statistics


def test_per_image_statistics_hand_values() -> None:
    logits = torch.zeros(2, 1, 2, 2)
    logits[1] = LN3
    y = torch.ones(2, 1, 2, 2)
    bce, c = per_image_statistics(logits, y)
    assert bce.dtype == torch.float32 and bce.shape == (2,)
    # image 0: q = 1/2 -> BCE = ln 2, C = 2 ln 2; image 1: q = 3/4 -> BCE = ln(4/3),
    # C = -ln(3/16) and C - 2 BCE = ln 3 (the logit margin)
    torch.testing.assert_close(bce, torch.tensor([LN2, math.log(4 / 3)]))
    torch.testing.assert_close(c, torch.tensor([2 * LN2, math.log(16 / 3)]))
    torch.testing.assert_close(c - 2 * bce, torch.tensor([0.0, LN3]))


def test_per_image_statistics_float64_reference_with_clamp() -> None:
    g = torch.Generator().manual_seed(16)
    logits = torch.randn(3, 7, 5, generator=g) * 4
    logits[0, 0, :2] = torch.tensor([30.0, -30.0])  # q clamped to 1 - 1e-7 and 1e-7
    y = torch.rand(3, 7, 5, generator=g)
    y[0, 0, :2] = torch.tensor([0.0, 1.0])  # confidently wrong: BCE = -ln(1e-7) = 16.118
    bce, c = per_image_statistics(logits.requires_grad_(), y)
    assert not bce.requires_grad
    q = torch.sigmoid(logits.detach().double()).clamp(1e-7, 1 - 1e-7)
    yd = y.double()
    ref_b = (-yd * torch.log(q) - (1 - yd) * torch.log(1 - q)).flatten(1).mean(1)
    ref_c = (-torch.log(q * (1 - q))).flatten(1).mean(1)
    torch.testing.assert_close(bce.double(), ref_b, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(c.double(), ref_c, rtol=2e-6, atol=1e-6)


def test_per_image_statistics_ignore_index() -> None:
    logits = torch.tensor([[0.0, LN3, 9.0], [1.0, 2.0, 3.0]])
    y = torch.tensor([[1.0, 0.0, 255.0], [255.0, 255.0, 255.0]])
    bce, c = per_image_statistics(logits, y, ignore_index=255)
    assert bce[0].item() == pytest.approx((LN2 + math.log(4)) / 2, abs=1e-6)
    assert c[0].item() == pytest.approx((2 * LN2 + math.log(16 / 3)) / 2, abs=1e-6)
    assert math.isnan(bce[1].item()) and math.isnan(c[1].item())  # nothing to average


def test_module_with_code_convention_and_alpha_override() -> None:
    logits = torch.ones(2, 2, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    with pytest.warns(UserWarning):
        loss = SCBCELoss(beta=2.0, beta_convention="code", reduction="none")
    assert loss.beta == 4.0
    out = loss(logits, y, alpha=torch.tensor([1.0, 0.0]))  # no new warning, no error
    torch.testing.assert_close(recovered_target(out, 1.0),
                               torch.tensor([[-1.0, 2.0], [1.0, 0.0]], dtype=torch.float64))
    slp = SCBCELoss.slp(0.25, technique="moderation", expected=True, reduction="none")
    # expected target (1 - 0.25 * 1) y + 0.25 * 1 / 2: 0.875 (fg) / 0.125 (bg)
    torch.testing.assert_close(recovered_target(slp(logits, y), 1.0),
                               torch.tensor([[0.875, 0.125]] * 2, dtype=torch.float64))
    assert "technique=moderation" in repr(slp)
