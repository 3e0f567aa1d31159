"""Tests of the calibration baselines (label smoothing, focal, entropy penalty, MbLS, SVLS):
hand-computed values, independent float64 references, and the shared input contract."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from densecal.errors import DensecalInputError
from densecal.losses import (
    EntropyPenaltyLoss,
    FocalLoss,
    LabelSmoothingLoss,
    MbLSLoss,
    SCBCELoss,
    SVLSLoss,
    entropy_penalty_loss,
    focal_loss,
    label_smoothing_loss,
    margin_penalty,
    mbls_loss,
    svls_loss,
)

LN2, LN3, LN4 = math.log(2.0), math.log(3.0), math.log(4.0)
D = torch.float64
IGNORE = 255

FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "ls": label_smoothing_loss,
    "focal": focal_loss,
    "ecp": entropy_penalty_loss,
    "mbls": mbls_loss,
    "svls": svls_loss,
}
MODULES = {
    "ls": LabelSmoothingLoss,
    "focal": FocalLoss,
    "ecp": EntropyPenaltyLoss,
    "mbls": MbLSLoss,
    "svls": SVLSLoss,
}
# options that make every term active on logits of order 1
ACTIVE = {"ls": {"eps": 0.2}, "focal": {"gamma": 2.0}, "ecp": {"beta_h": 0.3},
          "mbls": {"margin": 0.5, "lam": 0.7}, "svls": {}}


# --------------------------------------------------------------------- float64 references


def ref_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log p_c = l_c - m - log sum_j exp(l_j - m) over axis 1, written out."""
    m = logits.max(1, keepdim=True).values
    return logits - m - torch.log(torch.exp(logits - m).sum(1, keepdim=True))


def ref_ce(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return -ref_log_softmax(logits).gather(1, index.unsqueeze(1)).squeeze(1)


def ref_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    q = 1.0 / (1.0 + torch.exp(-logits))
    return -y * torch.log(q) - (1.0 - y) * torch.log(1.0 - q)


def multiclass_batch(seed: int = 0, c: int = 4, shape: tuple[int, ...] = (5, 6),
                     ignore: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, c, *shape, generator=g, dtype=D) * 2
    index = torch.randint(0, c, (2, *shape), generator=g)
    if ignore:
        index[0, 0] = IGNORE
        index[1, -1, :2] = IGNORE
    return logits, index


def binary_batch(seed: int = 0, shape: tuple[int, ...] = (5, 6),
                 ignore: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, *shape, generator=g, dtype=D) * 2
    y = torch.rand(2, 1, *shape, generator=g, dtype=D)
    y[0, 0, 0, :3] = 1.0
    y[1, 0, 1, :3] = 0.0
    if ignore:
        y[0, 0, -1] = IGNORE
    return logits, y


# ------------------------------------------------------------------------------- focal


def test_focal_gamma0_equals_cross_entropy_with_ignore_index() -> None:
    logits, index = multiclass_batch()
    for reduction in ("mean", "sum", "none"):
        ours = focal_loss(logits, index, 0.0, reduction=reduction, ignore_index=IGNORE)
        ref = F.cross_entropy(logits, index, reduction=reduction, ignore_index=IGNORE)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


def test_focal_gamma0_equals_bce() -> None:
    logits, y = binary_batch(ignore=False)
    ref = F.binary_cross_entropy_with_logits(logits, y, reduction="none")[:, 0]
    for x, t in ((logits, y), (logits[:, 0], y[:, 0]), (logits, y[:, 0]), (logits[:, 0], y)):
        none = focal_loss(x, t, 0.0, task="binary", reduction="none")
        assert none.shape == (2, 5, 6)  # per pixel, channel axis gone
        torch.testing.assert_close(none, ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(focal_loss(x, t, 0.0, task="binary"), ref.mean(), rtol=0,
                                   atol=1e-12)


def test_focal_hand_values() -> None:
    # binary, q = 3/4 (logit ln 3): foreground (1/4)^g ln(4/3); background (3/4)^g ln 4
    lg = torch.full((1, 3), LN3, dtype=D)
    y = torch.tensor([[1.0, 0.0, 0.25]], dtype=D)
    out = focal_loss(lg, y, 3.0, task="binary", reduction="none")
    fg, bg = (1 / 4) ** 3 * math.log(4 / 3), (3 / 4) ** 3 * LN4
    expected = torch.tensor([[fg, bg, 0.25 * fg + 0.75 * bg]], dtype=D)  # soft: target-weighted
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
    # multi-class, p = (1/2, 1/4, 1/4) (logits ln 2, 0, 0), target class 1: (3/4)^2 ln 4
    x = torch.tensor([[LN2, 0.0, 0.0]], dtype=D)
    assert focal_loss(x, torch.tensor([1]), 2.0).item() == pytest.approx((3 / 4) ** 2 * LN4,
                                                                          abs=1e-14)
    assert FocalLoss()(x, torch.tensor([0])).item() == pytest.approx((1 / 2) ** 3 * LN2,
                                                                     abs=1e-14)


def test_focal_multiclass_reference_and_probability_target() -> None:
    logits, index = multiclass_batch(ignore=False)
    logp = ref_log_softmax(logits)
    p_t = logp.exp().gather(1, index.unsqueeze(1)).squeeze(1)
    ref = -((1 - p_t) ** 3) * torch.log(p_t)
    torch.testing.assert_close(focal_loss(logits, index, reduction="none"), ref, rtol=0,
                               atol=1e-12)
    onehot = F.one_hot(index, 4).movedim(-1, 1).to(D)
    torch.testing.assert_close(focal_loss(logits, onehot, reduction="none"), ref, rtol=0,
                               atol=1e-12)
    # a soft target is the target-weighted sum of the per-class focal terms
    soft = torch.softmax(torch.randn_like(logits), 1)
    ref_soft = -(soft * (1 - logp.exp()) ** 3 * logp).sum(1)
    torch.testing.assert_close(focal_loss(logits, soft, reduction="none"), ref_soft, rtol=0,
                               atol=1e-12)


def test_focal_finite_for_extreme_logits() -> None:
    x = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    loss = focal_loss(x, torch.tensor([1]))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(x.grad).all()
    assert loss.item() == pytest.approx(160.0, rel=1e-6)  # (1 - ~0)^3 * 160


# ------------------------------------------------------------------------ label smoothing


def test_ls_eps0_equals_cross_entropy() -> None:
    logits, index = multiclass_batch()
    ref = F.cross_entropy(logits, index, ignore_index=IGNORE, reduction="none")
    out = label_smoothing_loss(logits, index, 0.0, ignore_index=IGNORE, reduction="none")
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_ls_multiclass_hand_pixel() -> None:
    # p = (1/2, 1/4, 1/4), class 0, eps = 0.3: t = (0.8, 0.1, 0.1)
    # loss = 0.8 ln 2 + 0.1 ln 4 + 0.1 ln 4 = 1.2 ln 2
    x = torch.tensor([[LN2, 0.0, 0.0]], dtype=D)
    assert label_smoothing_loss(x, torch.tensor([0]), 0.3).item() == pytest.approx(1.2 * LN2,
                                                                                  abs=1e-14)
    # default eps = 0.1, class 1: t = (0.1/3, 0.9 + 0.1/3, 0.1/3)
    expected = (0.1 / 3) * LN2 + (0.9 + 0.1 / 3) * LN4 + (0.1 / 3) * LN4
    assert LabelSmoothingLoss()(x, torch.tensor([1])).item() == pytest.approx(expected,
                                                                              abs=1e-14)


def test_ls_probability_target_reference() -> None:
    logits, _ = multiclass_batch(ignore=False)
    soft = torch.softmax(torch.randn_like(logits), 1)
    ref = -(((1 - 0.2) * soft + 0.2 / 4) * ref_log_softmax(logits)).sum(1)
    torch.testing.assert_close(label_smoothing_loss(logits, soft, 0.2, reduction="none"), ref,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.35, 1.0])
def test_binary_ls_equals_scbce_alpha1_beta_eps(eps: float) -> None:
    logits, y = binary_batch()
    for reduction in ("mean", "sum", "none"):
        ours = label_smoothing_loss(logits, y, eps, reduction=reduction, ignore_index=IGNORE)
        ref = SCBCELoss(alpha=1.0, beta=eps, reduction=reduction, ignore_index=IGNORE)(logits, y)
        torch.testing.assert_close(ours, ref.squeeze(1) if reduction == "none" else ref,
                                   rtol=0, atol=1e-12)
    hand = ref_bce(logits, (1 - eps) * y + eps / 2)[:, 0]
    mask = y[:, 0] != IGNORE
    torch.testing.assert_close(label_smoothing_loss(logits, y, eps, ignore_index=IGNORE),
                               hand[mask].mean(), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------ entropy penalty


def test_ecp_hand_values() -> None:
    x = torch.zeros(1, 2, dtype=D)  # p = 1/2, 1/2: CE = H = ln 2
    assert entropy_penalty_loss(x, torch.tensor([0])).item() == pytest.approx(0.9 * LN2,
                                                                              abs=1e-15)
    b = torch.zeros(1, 1, dtype=D)  # binary, q = 1/2: BCE = Bernoulli entropy = ln 2
    assert EntropyPenaltyLoss()(b, torch.ones(1, 1, dtype=D)).item() == pytest.approx(
        0.9 * LN2, abs=1e-15)
    # p = (3/4, 1/4), class 1: CE = ln 4, H = (3/4) ln(4/3) + (1/4) ln 4
    x = torch.tensor([[LN3, 0.0]], dtype=D)
    h = 0.75 * math.log(4 / 3) + 0.25 * LN4
    assert entropy_penalty_loss(x, torch.tensor([1]), 0.5).item() == pytest.approx(
        LN4 - 0.5 * h, abs=1e-14)


def test_ecp_reference_multiclass_and_binary() -> None:
    logits, index = multiclass_batch(ignore=False)
    logp = ref_log_softmax(logits)
    ref = ref_ce(logits, index) - 0.1 * (-(logp.exp() * logp).sum(1))
    torch.testing.assert_close(entropy_penalty_loss(logits, index, reduction="none"), ref,
                               rtol=0, atol=1e-12)
    lb, y = binary_batch(ignore=False)
    q = torch.sigmoid(lb)
    ent = -q * torch.log(q) - (1 - q) * torch.log(1 - q)
    ref_b = (ref_bce(lb, y) - 0.1 * ent)[:, 0]
    torch.testing.assert_close(entropy_penalty_loss(lb, y, reduction="none"), ref_b, rtol=0,
                               atol=1e-12)


# ---------------------------------------------------------------------------------- MbLS


def test_mbls_hand_values() -> None:
    x = torch.tensor([[12.0, 0.0, 1.0]], dtype=D)  # hinge terms [0, 2, 1], class mean 1
    assert margin_penalty(x).tolist() == [1.0]
    ce = ref_ce(x, torch.tensor([0])).item()
    assert MbLSLoss()(x, torch.tensor([0])).item() == pytest.approx(ce + 0.1, abs=1e-14)
    # inside the margin: plain CE
    y = torch.tensor([[5.0, 0.0, 1.0]], dtype=D)
    assert mbls_loss(y, torch.tensor([2])).item() == pytest.approx(
        ref_ce(y, torch.tensor([2])).item(), abs=1e-14)


def test_mbls_binary_two_logit_forms() -> None:
    l13 = torch.tensor([[13.0, -13.0, 4.0]], dtype=D)
    y = torch.tensor([[1.0, 1.0, 0.0]], dtype=D)
    out = mbls_loss(l13, y, task="binary", reduction="none")
    pen = torch.tensor([[1.5, 1.5, 0.0]], dtype=D)  # max(0, |l| - 10) / 2
    torch.testing.assert_close(out, ref_bce(l13, y) + 0.1 * pen, rtol=0, atol=1e-12)
    lb, yb = binary_batch(ignore=False)
    hard = (yb > 0.5).long()[:, 0]
    zero_l = torch.cat((torch.zeros_like(lb), lb), 1)
    sym = torch.cat((-lb / 2, lb / 2), 1)
    ours = mbls_loss(lb, hard.to(D).unsqueeze(1), 1.0, reduction="none")
    for two in (zero_l, sym):
        torch.testing.assert_close(ours, mbls_loss(two, hard, 1.0, reduction="none"), rtol=0,
                                   atol=1e-12)


def official_logit_margin_l1(logits: torch.Tensor, target: torch.Tensor, margin: float,
                             alpha: float) -> torch.Tensor:
    """The official LogitMarginL1 forward (by-liu/MbLS), re-derived: flatten to (P, C),
    CE mean over pixels + alpha * relu(max - l - margin) mean over the whole (P, C) matrix."""
    flat = logits.flatten(2).transpose(1, 2).reshape(-1, logits.shape[1])
    t = target.reshape(-1)
    diff = flat.max(1, keepdim=True).values - flat
    return F.cross_entropy(flat, t) + alpha * torch.clamp(diff - margin, min=0).mean()


def test_mbls_matches_official_reduction() -> None:
    logits, index = multiclass_batch(ignore=False)
    ours = mbls_loss(logits * 4, index, margin=3.0, lam=0.25)
    ref = official_logit_margin_l1(logits * 4, index, 3.0, 0.25)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert margin_penalty(logits * 4, 3.0).mean() > 0.1  # the penalty is active here


def test_mbls_ignored_pixels_out_of_both_terms() -> None:
    logits, index = multiclass_batch()
    logits = logits * 3
    keep = index != IGNORE
    flat = logits.movedim(1, -1)[keep]  # (P, C), kept pixels only
    hinge = torch.clamp(flat.max(1, keepdim=True).values - flat - 1.0, min=0).mean()
    ref = F.cross_entropy(flat, index[keep]) + 0.1 * hinge
    torch.testing.assert_close(mbls_loss(logits, index, 1.0, ignore_index=IGNORE), ref, rtol=0,
                               atol=1e-12)
    assert hinge > 0.1


# ----------------------------------------------------------------- shared input contract


def make_input(task: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return multiclass_batch(seed, c=3, shape=(4, 5)) if task == "multiclass" else \
        binary_batch(seed, shape=(4, 5))


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_reductions_and_ignored_pixels(name: str, task: str) -> None:
    fn, opts = FUNCTIONS[name], ACTIVE[name]
    logits, target = make_input(task)
    none = fn(logits, target, **opts, reduction="none", ignore_index=IGNORE)
    assert none.shape == (2, 4, 5)
    keep = (target != IGNORE) if task == "multiclass" else (target[:, 0] != IGNORE)
    assert bool((none[~keep] == 0).all()) and bool((none[keep] != 0).all())
    total = fn(logits, target, **opts, reduction="sum", ignore_index=IGNORE)
    mean = fn(logits, target, **opts, ignore_index=IGNORE)
    torch.testing.assert_close(total, none.sum(), rtol=0, atol=1e-12)
    torch.testing.assert_close(mean, none.sum() / keep.sum(), rtol=0, atol=1e-12)
    assert keep.sum() < keep.numel()  # the denominator really excludes ignored pixels
    # the logits at ignored pixels do not matter
    noisy = logits.clone()
    noisy.movedim(1, -1)[~keep] += 7.0
    torch.testing.assert_close(fn(noisy, target, **opts, ignore_index=IGNORE), mean, rtol=0,
                               atol=1e-12)
    # everything ignored: mean 0
    all_ignored = torch.full_like(target, IGNORE)
    assert fn(logits, all_ignored, **opts, ignore_index=IGNORE).item() == 0.0
    # the module is the function
    module = MODULES[name](**opts, reduction="sum", ignore_index=IGNORE)
    torch.testing.assert_close(module(logits, target), total, rtol=0, atol=0)
    assert "reduction=sum" in repr(module)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradcheck(name: str, task: str) -> None:
    logits, target = make_input(task, seed=2)
    logits = logits[:1, :, :3, :3].clone().requires_grad_(True)
    target = target[:1, ..., :3, :3] if task == "binary" else target[:1, :3, :3]
    fn, opts = FUNCTIONS[name], ACTIVE[name]
    assert torch.autograd.gradcheck(
        lambda x: fn(x, target, **opts, ignore_index=IGNORE), (logits,), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_task_inference_and_explicit_binary(name: str) -> None:
    fn = FUNCTIONS[name]
    logits, y = binary_batch(ignore=False)
    ref = fn(logits, y)  # (N, 1, H, W): inferred binary
    torch.testing.assert_close(fn(logits[:, 0], y[:, 0], task="binary"), ref, rtol=0, atol=0)
    # (N, H, W) would be read as H classes: the probability check says what to do
    with pytest.raises(DensecalInputError, match=r"^target: .*task='binary'"):
        fn(logits[:, 0], y[:, 0])
    ml, index = multiclass_batch(ignore=False)
    torch.testing.assert_close(fn(ml, index), fn(ml, index, task="multiclass"), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_input_errors_name_the_argument(name: str) -> None:
    fn = FUNCTIONS[name]
    ml, index = multiclass_batch(c=3, ignore=False)
    lb, y = binary_batch(ignore=False)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("task", lambda: fn(ml, index, task="ternary")),
        ("reduction", lambda: fn(ml, index, reduction="avg")),
        ("logits", lambda: fn(ml.long(), index)),
        ("logits", lambda: fn(lb, y[:, 0], task="multiclass")),  # C = 1
        ("target", lambda: fn(ml, index[:, :-1])),  # wrong spatial shape
        ("target", lambda: fn(ml, index.to(D))),  # float index map
        ("target", lambda: fn(ml, torch.full_like(index, 3))),  # class out of range
        ("target", lambda: fn(ml, torch.full_like(index, IGNORE), ignore_index=-100)),
        ("target", lambda: fn(lb, y[:, :, :-1])),  # binary shape mismatch
        ("target", lambda: fn(lb, y * 2)),  # binary values out of [0, 1]
    ]
    for where, call in cases:
        with pytest.raises(DensecalInputError, match=f"^{where}: "):
            call()


@pytest.mark.parametrize(("fn", "kwargs", "where"), [
    (label_smoothing_loss, {"eps": -0.1}, "eps"),
    (label_smoothing_loss, {"eps": 1.5}, "eps"),
    (focal_loss, {"gamma": -1.0}, "gamma"),
    (focal_loss, {"gamma": float("nan")}, "gamma"),
    (entropy_penalty_loss, {"beta_h": -0.1}, "beta_h"),
    (mbls_loss, {"margin": -1.0}, "margin"),
    (mbls_loss, {"lam": True}, "lam"),
    (svls_loss, {"kernel_size": 4}, "kernel_size"),
    (svls_loss, {"sigma": 0.0}, "sigma"),
])
def test_option_errors(fn: Callable[..., torch.Tensor], kwargs: dict[str, object],
                       where: str) -> None:
    ml, index = multiclass_batch(ignore=False)
    with pytest.raises(DensecalInputError, match=f"^{where}: "):
        fn(ml, index, **kwargs)


@pytest.mark.parametrize(("cls", "kwargs", "where"), [
    (LabelSmoothingLoss, {"eps": 2.0}, "eps"),
    (FocalLoss, {"gamma": -0.5}, "gamma"),
    (EntropyPenaltyLoss, {"beta_h": float("inf")}, "beta_h"),
    (MbLSLoss, {"margin": -2.0}, "margin"),
    (SVLSLoss, {"kernel_size": 1}, "kernel_size"),
    (FocalLoss, {"reduction": "mean_"}, "reduction"),
    (MbLSLoss, {"task": "multi"}, "task"),
])
def test_module_option_errors(cls: type, kwargs: dict[str, object], where: str) -> None:
    with pytest.raises(DensecalInputError, match=f"^{where}: "):
        cls(**kwargs)


def test_probability_target_ignore_and_sum_check() -> None:
    logits, index = multiclass_batch(c=3, ignore=False)
    probs = F.one_hot(index, 3).movedim(-1, 1).to(D)
    probs[0, :, 0, 0] = IGNORE  # every channel = ignore_index -> ignored pixel
    out = label_smoothing_loss(logits, probs, 0.0, reduction="none", ignore_index=IGNORE)
    assert out[0, 0, 0] == 0
    ref = F.cross_entropy(logits, index, reduction="none")
    ref[0, 0, 0] = 0
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    bad = F.one_hot(index, 3).movedim(-1, 1).to(D) * 0.9
    with pytest.raises(DensecalInputError, match=r"^target: .*sum to 1"):
        focal_loss(logits, bad)


def test_float32_and_3d_inputs() -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(1, 3, 2, 3, 4, generator=g)
    index = torch.randint(0, 3, (1, 2, 3, 4), generator=g)
    for name, fn in FUNCTIONS.items():
        out = fn(logits, index, reduction="none")
        assert out.shape == (1, 2, 3, 4) and out.dtype == torch.float32, name
        ref = fn(logits.double(), index, reduction="none")
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
