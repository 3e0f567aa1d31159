"""Tests of SVLS (densecal.losses.svls): kernel values, smoothing with replicate padding,
multi-rater averaging, binary form, ignored pixels, against hand values and float64 references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from densecal.errors import DensecalInputError
from densecal.losses import SVLSLoss, svls_kernel, svls_loss, svls_smooth

D = torch.float64
E5, E10, E15 = math.exp(-0.5), math.exp(-1.0), math.exp(-1.5)
SIDE = 0.5 * E5 / (4 * E5 + 4 * E10)  # 2-D, sigma 1: side neighbour
DIAG = 0.5 * E10 / (4 * E5 + 4 * E10)  # 2-D, sigma 1: diagonal neighbour
IGNORE = 255


def ref_smooth(probs: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Replicate-padded correlation written as a sum of clamped shifts (independent of conv)."""
    half = kernel.shape[0] // 2
    out = torch.zeros_like(probs)
    spatial = probs.shape[2:]
    for offset in itertools.product(range(-half, half + 1), repeat=len(spatial)):
        shifted = probs
        for axis, (off, size) in enumerate(zip(offset, spatial, strict=True)):
            idx = (torch.arange(size) + off).clamp(0, size - 1)
            shifted = shifted.index_select(axis + 2, idx)
        out = out + kernel[tuple(o + half for o in offset)] * shifted
    return out


def official_kernel_3d(kernel_size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """The official get_svls_filter_3d steps, re-derived: normalised Gaussian, centre replaced by
    the neighbours' sum, divided by it, then (in the loss) divided by the kernel sum."""
    ax = torch.arange(kernel_size, dtype=D) - (kernel_size - 1) / 2
    zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
    g = torch.exp(-(xx**2 + yy**2 + zz**2) / (2 * sigma**2))
    g = g / g.sum()
    c = kernel_size // 2
    neighbours = 1 - g[c, c, c]
    g[c, c, c] = neighbours
    k = g / neighbours
    return k / k.sum()


def onehot(index: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(index, c).movedim(-1, 1).to(D)


# ---------------------------------------------------------------------------------- kernel


def test_kernel_2d_values() -> None:
    k = svls_kernel(2)
    assert k.shape == (3, 3) and k.dtype == D
    assert k[1, 1].item() == 0.5
    assert round(k[0, 1].item(), 4) == 0.0778 and round(k[0, 0].item(), 4) == 0.0472
    expected = torch.tensor([[DIAG, SIDE, DIAG], [SIDE, 0.5, SIDE], [DIAG, SIDE, DIAG]], dtype=D)
    torch.testing.assert_close(k, expected, rtol=0, atol=1e-15)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-15)


def test_kernel_3d_values_and_official_construction() -> None:
    k = svls_kernel(3)
    assert k.shape == (3, 3, 3) and k[1, 1, 1].item() == 0.5
    assert k.sum().item() == pytest.approx(1.0, abs=1e-15)
    z = 6 * E5 + 12 * E10 + 8 * E15
    assert k[0, 1, 1].item() == pytest.approx(0.5 * E5 / z, abs=1e-15)  # face
    assert k[0, 0, 1].item() == pytest.approx(0.5 * E10 / z, abs=1e-15)  # edge
    assert k[0, 0, 0].item() == pytest.approx(0.5 * E15 / z, abs=1e-15)  # corner
    torch.testing.assert_close(k, official_kernel_3d(), rtol=0, atol=1e-15)
    torch.testing.assert_close(svls_kernel(3, sigma=0.7), official_kernel_3d(sigma=0.7), rtol=0,
                               atol=1e-15)


def test_kernel_1d_and_larger() -> None:
    torch.testing.assert_close(svls_kernel(1), torch.tensor([0.25, 0.5, 0.25], dtype=D))
    k5 = svls_kernel(2, kernel_size=5, sigma=2.0, dtype=torch.float32)
    assert k5.shape == (5, 5) and k5.dtype == torch.float32 and k5[2, 2].item() == 0.5
    assert k5.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert k5[0, 0] < k5[0, 2] < k5[1, 2]  # Gaussian falloff among the neighbours
    with pytest.raises(DensecalInputError, match=r"^spatial_dims: "):
        svls_kernel(4)


# ------------------------------------------------------------------------------- smoothing


def test_single_foreground_pixel_in_background() -> None:
    index = torch.zeros(1, 5, 5, dtype=torch.long)
    index[0, 2, 2] = 1
    soft = svls_smooth(onehot(index, 2))
    fg = torch.zeros(5, 5, dtype=D)
    fg[1:4, 1:4] = svls_kernel(2)
    torch.testing.assert_close(soft[0, 1], fg, rtol=0, atol=1e-15)
    torch.testing.assert_close(soft[0, 0], 1 - fg, rtol=0, atol=1e-15)
    # the loss is the cross-entropy against that target
    logits = torch.randn(1, 2, 5, 5, dtype=D, generator=torch.Generator().manual_seed(0))
    ref = -(soft * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(svls_loss(logits, index), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(7,), (4, 5), (3, 4, 2)])
def test_constant_image_unchanged(shape: tuple[int, ...]) -> None:
    index = torch.full((2, *shape), 2, dtype=torch.long)
    one = onehot(index, 3)
    torch.testing.assert_close(svls_smooth(one), one, rtol=0, atol=1e-15)


def test_replicate_padding_at_border() -> None:
    index = torch.zeros(1, 4, 4, dtype=torch.long)
    index[0, 0, 0] = 1  # foreground in the corner: the padding copies it outwards
    fg = svls_smooth(onehot(index, 2))[0, 1]
    assert fg[0, 0].item() == pytest.approx(0.5 + 2 * SIDE + DIAG, abs=1e-15)
    assert fg[0, 1].item() == pytest.approx(SIDE + DIAG, abs=1e-15)  # zero padding: SIDE
    assert fg[1, 0].item() == pytest.approx(SIDE + DIAG, abs=1e-15)
    assert fg[1, 1].item() == pytest.approx(DIAG, abs=1e-15)
    assert fg[2:].abs().max().item() == 0.0


@pytest.mark.parametrize("shape", [(9,), (5, 6), (3, 4, 5)])
def test_smoothing_matches_independent_reference(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(len(shape))
    index = torch.randint(0, 3, (2, *shape), generator=g)
    logits = torch.randn(2, 3, *shape, generator=g, dtype=D)
    q = ref_smooth(onehot(index, 3), svls_kernel(len(shape)))
    torch.testing.assert_close(svls_smooth(onehot(index, 3)), q, rtol=0, atol=1e-14)
    ref = -(q * torch.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(svls_loss(logits, index, reduction="none"), ref, rtol=0,
                               atol=1e-12)
    q5 = ref_smooth(onehot(index, 3), svls_kernel(len(shape), 5, 1.5))
    torch.testing.assert_close(SVLSLoss(5, 1.5)(logits, index),
                               -(q5 * torch.log_softmax(logits, 1)).sum(1).mean(), rtol=0,
                               atol=1e-12)


def test_official_3d_loss_reproduced() -> None:
    """CELossWithSVLS of the official svls.py, re-derived: replicate pad, conv3d, / kernel sum."""
    g = torch.Generator().manual_seed(3)
    index = torch.randint(0, 4, (2, 4, 5, 6), generator=g)
    logits = torch.randn(2, 4, 4, 5, 6, generator=g, dtype=D)
    k = official_kernel_3d()
    x = F.pad(onehot(index, 4), (1, 1, 1, 1, 1, 1), mode="replicate")
    q = F.conv3d(x, k.expand(4, 1, 3, 3, 3), groups=4)
    ref = (-q * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(svls_loss(logits, index), ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- multi-rater


def test_multi_rater_average() -> None:
    g = torch.Generator().manual_seed(4)
    raters = torch.randint(0, 3, (2, 3, 5, 6), generator=g)  # (N, R, H, W)
    logits = torch.randn(2, 3, 5, 6, generator=g, dtype=D)
    mean_onehot = torch.stack([onehot(raters[:, r], 3) for r in range(3)]).mean(0)
    q = ref_smooth(mean_onehot, svls_kernel(2))
    ref = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(svls_loss(logits, raters), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(svls_loss(logits, list(raters.unbind(1))), ref, rtol=0, atol=0)
    torch.testing.assert_close(svls_loss(logits, mean_onehot), ref, rtol=0, atol=1e-12)
    # two raters disagreeing everywhere: target (1/2, 1/2) -> -(log p0 + log p1) / 2
    split = torch.stack((torch.zeros(1, 4, 4), torch.ones(1, 4, 4)), 1).long()
    x = torch.tensor([math.log(3.0), 0.0], dtype=D).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    expected = -(math.log(3 / 4) + math.log(1 / 4)) / 2
    assert svls_loss(x, split).item() == pytest.approx(expected, abs=1e-14)


def test_multi_rater_with_ignored_labels() -> None:
    # rater 1 ignores pixel (0, 0); rater 0 labels it 1 -> that pixel's average is rater 0's
    r0 = torch.zeros(1, 3, 3, dtype=torch.long)
    r0[0, 0, 0] = 1
    r1 = torch.zeros(1, 3, 3, dtype=torch.long)
    r1[0, 0, 0] = IGNORE
    logits = torch.zeros(1, 2, 3, 3, dtype=D)
    both = svls_loss(logits, [r0, r1], ignore_index=IGNORE, reduction="none")
    alone = svls_loss(logits, r0, ignore_index=IGNORE, reduction="none")
    torch.testing.assert_close(both, alone, rtol=0, atol=1e-15)
    r0[0, 0, 0] = IGNORE  # nobody labels it: ignored
    out = svls_loss(logits, [r0, r1], ignore_index=IGNORE, reduction="none")
    assert out[0, 0, 0] == 0 and bool((out.flatten()[1:] > 0).all())


# --------------------------------------------------------------------------------- binary


def test_binary_is_bce_against_smoothed_foreground() -> None:
    g = torch.Generator().manual_seed(6)
    y = torch.rand(2, 1, 5, 6, generator=g, dtype=D)
    logits = torch.randn(2, 1, 5, 6, generator=g, dtype=D)
    fg = ref_smooth(y, svls_kernel(2))
    ref = F.binary_cross_entropy_with_logits(logits, fg, reduction="none")[:, 0]
    torch.testing.assert_close(svls_loss(logits, y, reduction="none"), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(svls_loss(logits[:, 0], y[:, 0], task="binary"), ref.mean(),
                               rtol=0, atol=1e-12)
    # hard labels: the same as multi-class SVLS on the two-class logits [0, l]
    hard = (y > 0.5).long()[:, 0]
    two = torch.cat((torch.zeros_like(logits), logits), 1)
    torch.testing.assert_close(svls_loss(logits, hard.to(D).unsqueeze(1)), svls_loss(two, hard),
                               rtol=0, atol=1e-12)
    # a list of binary rater maps is averaged
    y2 = torch.rand(2, 1, 5, 6, generator=g, dtype=D)
    torch.testing.assert_close(svls_loss(logits, [y, y2]), svls_loss(logits, (y + y2) / 2),
                               rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- ignored


def test_ignored_pixels_are_left_out_of_the_smoothing() -> None:
    # 1-D kernel [1/4, 1/2, 1/4]; labels 0 1 ignored 1 0
    index = torch.tensor([[0, 1, IGNORE, 1, 0]])
    valid = index != IGNORE
    q = svls_smooth(onehot(torch.where(valid, index, 0), 2), valid)
    expected_fg = torch.tensor([0.25, 2 / 3, 0.0, 2 / 3, 0.25], dtype=D)
    expected_fg[2] = q[0, 1, 2]  # the ignored pixel's own value is not used
    torch.testing.assert_close(q[0, 1], expected_fg, rtol=0, atol=1e-15)
    torch.testing.assert_close(q[0, 0, valid[0]], 1 - expected_fg[valid[0]], rtol=0, atol=1e-15)
    # loss with p = (3/4, 1/4) everywhere: -(q0 ln 3/4 + q1 ln 1/4), 0 at the ignored pixel
    x = torch.tensor([math.log(3.0), 0.0], dtype=D).view(1, 2, 1).expand(1, 2, 5)
    out = svls_loss(x, index, ignore_index=IGNORE, reduction="none")
    fg = expected_fg.clone()
    ref = -((1 - fg) * math.log(3 / 4) + fg * math.log(1 / 4))
    ref[2] = 0.0
    torch.testing.assert_close(out[0], ref, rtol=0, atol=1e-14)
    assert svls_loss(x, index, ignore_index=IGNORE).item() == pytest.approx(ref.sum().item() / 4,
                                                                           abs=1e-14)


# ------------------------------------------------------------------------------- errors


def test_svls_input_errors() -> None:
    logits = torch.zeros(2, 3, 4, 4)
    cases = [
        ("logits", lambda: svls_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))),
        ("logits", lambda: svls_loss(torch.zeros(1, 2, 2, 2, 2, 2),
                                     torch.zeros(1, 2, 2, 2, 2, dtype=torch.long))),
        ("target", lambda: svls_loss(logits, [])),
        ("target", lambda: svls_loss(logits, [torch.zeros(2, 4, 3, dtype=torch.long)])),
        ("target", lambda: svls_loss(logits, torch.zeros(2, 5, 4, 3, dtype=torch.long))),
        ("target", lambda: svls_loss(logits, torch.zeros(2, 2, 4, 4))),  # float rater stack
        ("target", lambda: svls_loss(torch.zeros(2, 1, 4, 4), [torch.zeros(2, 4, 5)])),
        ("probs", lambda: svls_smooth(torch.zeros(2, 3))),
        ("valid", lambda: svls_smooth(torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 3, dtype=bool))),
    ]
    for where, call in cases:
        with pytest.raises(DensecalInputError, match=f"^{where}: "):
            call()
