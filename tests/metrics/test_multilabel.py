"""Multi-label metrics: AP/mAP with difficult ignored, CP/CR/CF1/OP/OR/OF1, streaming metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MultilabelAveragePrecision

from densecal.errors import DensecalInputError
from densecal.metrics import MultilabelMetrics
from densecal.metrics.functional.multilabel import (
    average_precision,
    label_counts,
    mean_average_precision,
    multilabel_metrics,
    scores_from_counts,
)


def _ap_reference(scores: list[float], labels: list[int]) -> float:
    """Float64 AP without ties: mean precision at the ranks of the positives (2 dropped)."""
    pairs = sorted(((s, y) for s, y in zip(scores, labels, strict=True) if y != 2),
                   key=lambda p: -p[0])
    hits, total = 0, 0.0
    for rank, (_, y) in enumerate(pairs, start=1):
        if y == 1:
            hits += 1
            total += hits / rank
    return total / hits if hits else float("nan")


def test_ap_hand_values_and_difficult_ignored() -> None:
    s = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    assert average_precision(s, torch.tensor([[1], [0], [1], [0]])).item() == \
        pytest.approx((1 + 2 / 3) / 2)
    # the negative at rank 2 marked difficult: both positives at precision 1
    assert average_precision(s, torch.tensor([[1], [2], [1], [0]])).item() == pytest.approx(1.0)
    # a difficult top score is not a positive either: ranks 1, 3 of the remaining -> (1 + 2/3)/2
    assert average_precision(s, torch.tensor([[2], [1], [0], [1]])).item() == \
        pytest.approx((1 + 2 / 3) / 2)


def test_ap_no_positive_is_nan_and_left_out_of_map() -> None:
    s = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    y = torch.tensor([[1, 0], [0, 2]])
    ap = average_precision(s, y)
    assert ap[0].item() == 1.0 and torch.isnan(ap[1])
    assert mean_average_precision(s, y).item() == 1.0


def test_ap_matches_float64_reference_without_ties() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.rand(50, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (50, 6), generator=g)
    got = average_precision(s, y)
    for c in range(6):
        assert got[c].item() == pytest.approx(_ap_reference(s[:, c].tolist(), y[:, c].tolist()),
                                              abs=1e-12)


def test_ap_matches_torchmetrics_with_ties() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, 5, (40, 4), generator=g).float() / 4  # many ties
    y = torch.randint(0, 2, (40, 4), generator=g)
    oracle = MultilabelAveragePrecision(num_labels=4, average=None, thresholds=None)(s, y)
    assert torch.allclose(average_precision(s, y), oracle.double(), atol=1e-6)
    # tie handling: order-independent
    perm = torch.randperm(40, generator=g)
    assert torch.allclose(average_precision(s[perm], y[perm]), average_precision(s, y))


def test_counts_and_f1_hand_case() -> None:
    s = torch.tensor([[0.9, 0.6, 0.2], [0.4, 0.7, 0.8], [0.5, 0.1, 0.3]])
    y = torch.tensor([[1, 0, 0], [1, 1, 2], [0, 0, 1]])
    counts = label_counts(s, y)
    # class 0: predicted rows 0, 2; positives rows 0, 1 -> Nc 1, Np 2, Ng 2
    # class 1: predicted rows 0, 1; positive row 1 -> 1, 2, 1
    # class 2: row 1 difficult (ignored); positive row 2 not predicted -> 0, 0, 1
    assert counts.tolist() == [[1, 1, 0], [2, 2, 0], [2, 1, 1]]
    got = scores_from_counts(counts)
    cp, cr = (0.5 + 0.5 + 0.0) / 3, (0.5 + 1.0 + 0.0) / 3
    op, or_ = 2 / 4, 2 / 4
    assert got["cp"].item() == pytest.approx(cp)
    assert got["cr"].item() == pytest.approx(cr)
    assert got["cf1"].item() == pytest.approx(2 * cp * cr / (cp + cr))
    assert got["op"].item() == pytest.approx(op)
    assert got["or"].item() == pytest.approx(or_)
    assert got["of1"].item() == pytest.approx(0.5)


def test_top_k_rule_requires_rank_and_threshold() -> None:
    s = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.1]])
    y = torch.tensor([[0, 0, 0, 1, 0]])
    # 0.6 is above the threshold but 4th: predicted by the threshold rule, not by top-3
    assert label_counts(s, y)[:, 3].tolist() == [1, 1, 1]
    assert label_counts(s, y, top_k=3)[:, 3].tolist() == [0, 0, 1]
    assert label_counts(s, y, top_k=3)[1].sum().item() == 3
    # below the threshold: not predicted even in the top 3
    low = torch.tensor([[0.55, 0.45, 0.35, 0.25, 0.1]])
    assert label_counts(low, y, top_k=3)[1].sum().item() == 1


def test_map_hard_uses_images_with_difficult_labels() -> None:
    s = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6]])
    y = torch.tensor([[1, 0], [1, 2], [0, 1]])
    out = multilabel_metrics(s, y)
    # hard subset = row 1 only: class 0 positive scored 0.1 alone -> AP 1; class 1 ignored
    assert out["map_hard"].item() == pytest.approx(1.0)
    assert out["map"].item() == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    assert set(out) >= {"cf1_top3", "of1_top3", "ap"}


def test_streaming_metric_equals_functional() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.rand(30, 5, generator=g)
    y = torch.randint(0, 3, (30, 5), generator=g)
    metric = MultilabelMetrics(5)
    for i in range(0, 30, 7):
        metric.update(s[i:i + 7], y[i:i + 7])
    got, ref = metric.compute(), multilabel_metrics(s, y)
    assert set(got) == set(ref)
    for key in ref:
        assert torch.allclose(got[key].double(), ref[key].double(), equal_nan=True), key


def test_bad_input() -> None:
    with pytest.raises(DensecalInputError, match="0 \\(absent\\)"):
        average_precision(torch.rand(2, 2), torch.tensor([[0, 3], [1, 1]]))
    with pytest.raises(DensecalInputError, match="target"):
        label_counts(torch.rand(2, 2), torch.zeros(2, 3))
    with pytest.raises(DensecalInputError, match="expected 5 classes"):
        MultilabelMetrics(5).update(torch.rand(2, 4), torch.zeros(2, 4))


def mlgcn_reference(scores: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
    """The ML-GCN evaluation code's counting, written here from its description
    (github.com/lsongx/ud, ``engine/util.py``): its targets are 1 present, -1 absent,
    0 difficult; -1 becomes 0; predicted where the logit is >= 0 (probability >= 0.5)."""
    t = np.where(target == 1, 1, np.where(target == 0, -1, 0)).astype(np.float64)
    t[t == -1] = 0
    predicted = scores >= 0.5
    ng = (t == 1).sum(0).astype(np.float64)
    np_ = predicted.sum(0).astype(np.float64)
    nc = (t * predicted).sum(0)
    np_[np_ == 0] = 1
    op, or_ = nc.sum() / np_.sum(), nc.sum() / ng.sum()
    cp, cr = float(np.sum(nc / np_) / len(nc)), float(np.sum(nc / ng) / len(nc))
    return op, or_, cp, cr


def test_mlgcn_convention_counts_predicted_difficult_labels_as_false_positives() -> None:
    scores = torch.tensor([[0.9, 0.8], [0.2, 0.7]], dtype=torch.float64)
    target = torch.tensor([[1, 2], [0, 1]])
    ours = multilabel_metrics(scores, target)
    assert float(ours["op"]) == 1.0 and float(ours["cp"]) == 1.0
    ref = multilabel_metrics(scores, target, convention="ml-gcn")
    assert float(ref["op"]) == pytest.approx(2 / 3) and float(ref["cp"]) == 0.75
    assert (float(ref["op"]), float(ref["or"]), float(ref["cp"]), float(ref["cr"])) == \
        pytest.approx(mlgcn_reference(scores.numpy(), target.numpy()), abs=1e-15)


def test_mlgcn_convention_on_random_labels_and_streaming() -> None:
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.random((60, 5)))
    target = torch.from_numpy(rng.choice([0, 1, 2], size=(60, 5), p=[0.6, 0.3, 0.1]))
    ref = multilabel_metrics(scores, target, convention="ml-gcn")
    expected = mlgcn_reference(scores.numpy(), target.numpy())
    got = (float(ref["op"]), float(ref["or"]), float(ref["cp"]), float(ref["cr"]))
    assert got == pytest.approx(expected, abs=1e-12)
    metric = MultilabelMetrics(5, convention="ml-gcn")
    metric.update(scores[:25].float(), target[:25])
    metric.update(scores[25:].float(), target[25:])
    streamed = metric.compute()
    for key in ("op", "or", "cp", "cr", "cf1", "of1_top3"):
        assert float(streamed[key]) == pytest.approx(float(ref[key]), abs=1e-6), key
    with pytest.raises(DensecalInputError, match="convention"):
        MultilabelMetrics(5, convention="voc")
