"""Tests of ASLP's alpha controller (densecal.losses.aslp) on hand-worked update steps."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.losses import AdaptivePerturbation, Objective, sc_bce_loss

LN3 = math.log(3.0)


def margin_batch(margins: list[float], pixels: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits/targets whose per-image C - 2 BCE equals ``margins`` (all-foreground images).

    For y = 1: C - 2 BCE = -ln q - ln(1 - q) + 2 ln q = ln(q / (1 - q)) = logit.
    """
    logits = torch.tensor(margins)[:, None, None].expand(-1, 1, pixels).contiguous()
    return logits, torch.ones_like(logits)


def controller(n: int = 3, alpha: float = 0.1, acc: float | None = 0.5,
               **kwargs: object) -> AdaptivePerturbation:
    ctrl = AdaptivePerturbation(n, warmup_epochs=0, **kwargs)  # type: ignore[arg-type]
    ctrl.alpha.fill_(alpha)
    if acc is not None:
        ctrl.set_validation_accuracy(acc)
    return ctrl


def test_initial_state_and_buffers() -> None:
    ctrl = AdaptivePerturbation(5)
    assert ctrl.alpha.dtype == torch.float32 and bool((ctrl.alpha == 0).all())
    assert ctrl.num_updates.dtype == torch.int64 and bool((ctrl.num_updates == 0).all())
    assert math.isnan(ctrl.val_accuracy.item()) and math.isnan(ctrl.best_val_accuracy.item())
    assert set(ctrl.state_dict()) == {"alpha", "num_updates", "val_accuracy", "best_val_accuracy"}
    assert ctrl.beta == 2.0 and ctrl.max_alpha == pytest.approx(0.49)
    assert ctrl.lr == 0.002 and ctrl.penalty == 2000.0 and ctrl.warmup_epochs == 5
    assert ctrl.objective is Objective.CALIBRATION
    ctrl.alpha.copy_(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4]))
    out = ctrl(torch.tensor([4, 1, 1]))
    torch.testing.assert_close(out, torch.tensor([0.4, 0.1, 0.1]))
    assert not out.requires_grad
    torch.testing.assert_close(ctrl.expected_confidence,
                               torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6]))  # 1 - 2 a / 2
    assert "num_images=5" in repr(ctrl) and "objective=calibration" in repr(ctrl)


def test_zero_margin_penalty_step() -> None:
    # logit 0: BCE = ln 2, C = 2 ln 2, so C - 2 BCE = 0 and only the penalty acts.
    ctrl = controller(2, alpha=0.1, acc=0.91)
    logits, y = margin_batch([0.0, 0.0])
    ctrl.update(torch.tensor([0, 1]), logits, y, epoch=0)
    # gap = (1 - 0.91) - 2 * 0.1 / 2 = -0.01; step = 2000 * -0.01 = -20
    # alpha = 0.1 + 0.002 * -20 = 0.06
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.06, 0.06]), rtol=0, atol=1e-6)
    # A_val = 0.85: gap = 0.15 - 0.06 > 0 -> no penalty, zero margin -> unchanged
    ctrl.set_validation_accuracy(0.85)
    ctrl.update(torch.tensor([0, 1]), logits, y, epoch=0)
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.06, 0.06]), rtol=0, atol=1e-6)
    assert ctrl.num_updates.tolist() == [2, 2]


def test_margin_steps_vectorised() -> None:
    ctrl = controller(4, alpha=0.1, acc=0.5)
    ctrl.alpha[3] = 0.3
    logits, y = margin_batch([2.0, -1.0, 0.5])
    y[2, 0, 2:] = 0.0  # image 2: two fg pixels at logit 0.5, two bg pixels at logit 0.5
    ctrl.update(torch.tensor([0, 1, 2]), logits, y, epoch=7)
    # beta = 2 -> 2/beta = 1; gap = 0.5 - 0.1 > 0 so no penalty.
    # image 0: margin 2 -> 0.1 + 0.002 * 2 = 0.104
    # image 1: margin -1 -> 0.1 - 0.002 = 0.098
    # image 2: margin (0.5 + 0.5 - 0.5 - 0.5) / 4 = 0 -> 0.1; image 3 not in the batch
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.104, 0.098, 0.1, 0.3]),
                               rtol=0, atol=1e-6)
    assert ctrl.num_updates.tolist() == [1, 1, 1, 0]


def test_margin_and_penalty_together() -> None:
    ctrl = controller(1, alpha=0.1, acc=0.905)
    ctrl.update(torch.tensor([0]), *margin_batch([2.0]), epoch=0)
    # gap = 0.095 - 0.1 = -0.005 -> 2000 * -0.005 = -10; step = 2 - 10 = -8
    # alpha = 0.1 + 0.002 * -8 = 0.084
    assert ctrl.alpha.item() == pytest.approx(0.084, abs=1e-6)


def test_soft_inversion_beta_scaling() -> None:
    ctrl = controller(1, alpha=0.1, acc=0.5, beta=1.5)
    ctrl.update(torch.tensor([0]), *margin_batch([2.0]), epoch=0)
    # (2 / 1.5) * 2 = 8/3; gap = 0.5 - 1.5 * 0.1 / 2 = 0.425 > 0
    # alpha = 0.1 + 0.002 * 8/3 = 0.10533333
    assert ctrl.alpha.item() == pytest.approx(0.1 + 0.002 * 8 / 3, abs=1e-6)


def test_clip_bounds() -> None:
    ctrl = controller(2, alpha=0.48, acc=0.0)  # acc 0: gap = 1 - alpha > 0, no penalty
    ctrl.update(torch.tensor([0, 1]), *margin_batch([10.0, -30.0]), epoch=0)
    # image 0: 0.48 + 0.002 * 10 = 0.5 -> clipped to 1/2 - 0.01 = 0.49
    # image 1: q = sigmoid(-30) is clamped to 1e-7, so its margin is ln(1e-7 / (1 - 1e-7))
    # = -16.118 (not -30): 0.48 - 0.002 * 16.118 = 0.44776
    assert ctrl.alpha[0].item() == pytest.approx(0.49, abs=1e-6)
    assert ctrl.alpha[1].item() == pytest.approx(0.48 + 0.002 * math.log(1e-7 / (1 - 1e-7)),
                                                 abs=1e-6)
    ctrl.alpha[1] = 0.01
    ctrl.update(torch.tensor([1]), *margin_batch([-16.0]), epoch=0)
    assert ctrl.alpha[1].item() == 0.0  # 0.01 - 0.032 < 0 -> 0
    si = controller(1, alpha=0.64, acc=0.0, beta=1.5)  # 0.64 + 0.043 > 0.657
    si.update(torch.tensor([0]), *margin_batch([30.0]), epoch=0)
    assert si.alpha.item() == pytest.approx(1 / 1.5 - 0.01, abs=1e-6)  # 0.6566667
    custom = controller(1, alpha=0.29, acc=0.0, max_alpha=0.3)
    custom.update(torch.tensor([0]), *margin_batch([10.0]), epoch=0)
    assert custom.alpha.item() == pytest.approx(0.3, abs=1e-7)
    assert AdaptivePerturbation(1, beta=0.5).max_alpha == 1.0  # 1/beta - 0.01 > 1: capped


def test_warmup_is_noop() -> None:
    ctrl = AdaptivePerturbation(2, warmup_epochs=5)
    ctrl.set_validation_accuracy(0.5)
    logits, y = margin_batch([2.0, 2.0])
    for epoch in range(5):
        ctrl.update(torch.tensor([0, 1]), logits, y, epoch=epoch)
        ctrl.apply_update(torch.tensor([0, 1]), torch.zeros(2), torch.ones(2), epoch=epoch)
    assert ctrl.alpha.tolist() == [0.0, 0.0] and ctrl.num_updates.tolist() == [0, 0]
    ctrl.update(torch.tensor([0, 1]), logits, y, epoch=5)  # 0 + 0.002 * 2
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.004, 0.004]), rtol=0, atol=1e-6)


def test_unset_validation_accuracy_is_noop() -> None:
    ctrl = controller(2, alpha=0.1, acc=None)
    ctrl.update(torch.tensor([0, 1]), *margin_batch([2.0, -2.0]), epoch=10)
    assert ctrl.alpha.tolist() == pytest.approx([0.1, 0.1])
    assert ctrl.num_updates.tolist() == [0, 0]


def test_conservative_objective() -> None:
    ctrl = controller(2, alpha=0.1, acc=0.9, objective="conservative", penalty=100.0)
    ctrl.set_validation_accuracy(0.85)
    assert ctrl.best_val_accuracy.item() == pytest.approx(0.9)
    assert ctrl.val_accuracy.item() == pytest.approx(0.85)
    ctrl.alpha[1] = 0.3
    ctrl.update(torch.tensor([0, 1]), *margin_batch([0.0, 0.0]), epoch=0)
    # penalty = 100 * min(0.85 - 0.9, 0) = -5, the same for every alpha:
    # 0.1 + 0.002 * -5 = 0.09, 0.3 - 0.01 = 0.29
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.09, 0.29]), rtol=0, atol=1e-6)
    ctrl.set_validation_accuracy(0.95)  # new best -> gap 0, margin 2 only
    ctrl.update(torch.tensor([0, 1]), *margin_batch([2.0, 2.0]), epoch=0)
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.094, 0.294]), rtol=0, atol=1e-6)


def test_code_convention_matches_official_rule() -> None:
    with pytest.warns(UserWarning, match="outside"):
        ctrl = controller(2, alpha=0.1, acc=0.81, beta=2.0, beta_convention="code")
    assert ctrl.beta == 4.0 and ctrl.max_alpha == pytest.approx(0.24)
    ctrl.update(torch.tensor([0, 1]), *margin_batch([2.0, 2.0]), epoch=0)
    # official: al + eta * ((C - 2 BCE) / b + lbd * min((1 - acc) - b al, 0)), b = 2
    # = 0.1 + 0.002 * (2 / 2 + 2000 * min(0.19 - 0.2, 0)) = 0.1 + 0.002 * (1 - 20) = 0.062
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.062, 0.062]), rtol=0, atol=1e-6)


def test_duplicates_nonfinite_and_apply_update_shapes() -> None:
    ctrl = controller(3, alpha=0.1, acc=0.5)
    # id 0 twice with margins 2 and 4: mean of 0.104 and 0.108; id 2 has NaN stats: skipped
    bce = torch.tensor([0.5, 0.5, math.nan])
    c = torch.tensor([3.0, 5.0, math.nan])  # C - 2 BCE = 2, 4
    ctrl.apply_update(torch.tensor([0, 0, 2]), bce, c, epoch=0)
    torch.testing.assert_close(ctrl.alpha, torch.tensor([0.106, 0.1, 0.1]), rtol=0, atol=1e-6)
    assert ctrl.num_updates.tolist() == [1, 0, 0]
    with pytest.raises(DensecalInputError, match="shape"):
        ctrl.apply_update(torch.tensor([0, 1]), bce, c, epoch=0)


def test_update_equals_statistics_plus_apply() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 1, 6, 6, generator=g) * 2
    y = torch.rand(4, 1, 6, 6, generator=g)
    idx = torch.tensor([3, 0, 5, 1])
    a, b = controller(6, acc=0.8), controller(6, acc=0.8)
    a.update(idx, logits, y, epoch=0)
    b.apply_update(idx, *b.compute_statistics(logits, y), epoch=0)
    assert torch.equal(a.alpha, b.alpha)
    assert not torch.equal(a.alpha, torch.full((6,), 0.1))


def test_state_dict_round_trip() -> None:
    ctrl = controller(4, alpha=0.1, acc=0.5)
    ctrl.update(torch.tensor([1, 2]), *margin_batch([2.0, -1.0]), epoch=0)
    buf = io.BytesIO()
    torch.save(ctrl.state_dict(), buf)
    buf.seek(0)
    fresh = AdaptivePerturbation(4)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh.alpha, ctrl.alpha) and torch.equal(fresh.num_updates,
                                                                ctrl.num_updates)
    assert fresh.val_accuracy.item() == pytest.approx(0.5)
    assert fresh.best_val_accuracy.item() == pytest.approx(0.5)
    with pytest.raises(RuntimeError):
        AdaptivePerturbation(5).load_state_dict(ctrl.state_dict())


def test_table_and_csv(tmp_path: Path) -> None:
    ctrl = controller(3, alpha=0.0, acc=0.5)
    ctrl.update(torch.tensor([1]), *margin_batch([2.0]), epoch=0)  # alpha[1] = 0.004
    rows = ctrl.table()
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert rows[1][1] == pytest.approx(0.004, abs=1e-9) and rows[0][1] == 0.0
    path = tmp_path / "sub" / "alpha.csv"
    ctrl.write_table(path, names=["img_a", "b,c", "d"])
    # float32(0.004) = 0.004000000189989805 -> 9 significant digits
    assert path.read_text() == 'name,alpha,updates\nimg_a,0,0\n"b,c",0.00400000019,1\nd,0,0\n'
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left
    with pytest.raises(DensecalInputError, match="names"):
        ctrl.table(["x"])


def test_alpha_feeds_the_loss() -> None:
    ctrl = controller(3, alpha=0.0, acc=0.5)
    ctrl.alpha.copy_(torch.tensor([0.0, 0.49, 0.2]))
    idx = torch.tensor([1, 0])
    logits = torch.full((2, 1, 2, 2), LN3, dtype=torch.float64)
    y = torch.ones_like(logits)
    out = sc_bce_loss(logits, y, ctrl(idx), ctrl.beta, expected=True, reduction="none")
    # image 1 -> alpha 0.49: target 1 - 0.49 = 0.51; image 0 -> alpha 0: target 1
    t = torch.tensor([0.51, 1.0], dtype=torch.float64)[:, None, None, None]
    ref = -t * math.log(0.75) - (1 - t) * math.log(0.25)
    torch.testing.assert_close(out, ref.expand_as(out), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_images": 0}, "num_images"),
    ({"beta": 0.0}, "beta"),
    ({"beta": 2.5}, "beta"),
    ({"lr": -1.0}, "lr"),
    ({"warmup_epochs": -1}, "warmup_epochs"),
    ({"objective": "entropy"}, "objective"),
    ({"max_alpha": 1.5}, "max_alpha"),
])
def test_bad_options_raise(kwargs: dict, match: str) -> None:
    args = {"num_images": 3, **kwargs}
    with pytest.raises(DensecalInputError, match=match):
        AdaptivePerturbation(**args)


def test_bad_index_and_accuracy_raise() -> None:
    ctrl = AdaptivePerturbation(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DensecalInputError, match="index"):
            ctrl(torch.tensor([0, 3]))
        with pytest.raises(DensecalInputError, match="index"):
            ctrl(torch.tensor([0.0, 1.0]))
        with pytest.raises(DensecalInputError, match="accuracy"):
            ctrl.set_validation_accuracy(1.5)
        with pytest.raises(DensecalInputError, match="accuracy"):
            ctrl.set_validation_accuracy(math.nan)
    ctrl.set_validation_accuracy(torch.tensor(0.75))
    assert ctrl.val_accuracy.item() == 0.75
