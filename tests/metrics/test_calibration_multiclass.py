"""Multi-class and multi-label pixel calibration (task="multiclass" / "multilabel").

1. A hand-computed case on exactly representable numbers.
2. An independent float64 numpy reference (explicit loops over classes and bins, np.digitize on
   the edges k/n, np.interp for the equal-mass bins) for every key, pooled and per image, with
   index / one-hot / soft targets, ignore_index, include_background=False, logits; and for
   multi-label maps.
3. Oracles: torchmetrics' MulticlassCalibrationError (top-label ECE) and MONAI's
   CalibrationErrorMetric (per-image class-wise ECE).
4. Invariances: batch split, image order, merge_state, chunking; and input errors.

Test maps have confidences spread so that each fine bin of ACE holds at most one pixel: the
fine-histogram ACE then equals the equal-mass ACE of the sorted pixels (a pixel straddling a
group boundary split in proportion), which the reference computes with np.interp.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecal.metrics.functional._calibration.class_state as classwise
from densecal.errors import DensecalInputError
from densecal.metrics import PixelCalibration
from densecal.metrics.functional import pixel_calibration, reliability_bins

KEYS = ("ece", "mce", "oe", "ace", "brier", "nll", "accuracy")
CLASS_KEYS = ("ece_class", "classwise_ece", "marginal_ece")
FAILURE_KEYS = ("aurc", "eaurc", "auroc", "fpr95")  # tested in test_failure_detection.py
FINE = 1 << 16  # fine bins: far narrower than the spacing of the test confidences
TOL = 1e-12
IGNORE = 255


# --------------------------------------------------------------------------- reference


def bin_errors(conf: np.ndarray, acc: np.ndarray, n_bins: int) -> tuple[float, float, float]:
    """ECE, MCE, OE of positive-mode pairs over bins (k/n, (k+1)/n] (0 in bin 0)."""
    n = len(conf)
    if n == 0:
        return (np.nan,) * 3
    bins = np.digitize(conf, np.arange(1, n_bins) / n_bins, right=True)
    ece = mce = oe = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            mean_conf, mean_acc = conf[inside].mean(), acc[inside].mean()
            gap = mean_conf - mean_acc
            ece += inside.sum() / n * abs(gap)
            mce = max(mce, abs(gap))
            oe += inside.sum() / n * mean_conf * max(gap, 0.0)
    return ece, mce, oe


def equal_mass_ace(conf: np.ndarray, acc: np.ndarray, n_bins: int) -> float:
    """Equal-mass ACE of the sorted pixels, fractional pixels at the group boundaries."""
    n = len(conf)
    if n == 0:
        return np.nan
    order = np.argsort(conf, kind="stable")
    cum_n = np.arange(n + 1, dtype=np.float64)
    marks = n * np.arange(n_bins + 1) / n_bins
    at = [np.interp(marks, cum_n, np.concatenate([[0.0], np.cumsum(v[order])]))
          for v in (conf, acc)]
    return float(np.abs(np.diff(at[0]) - np.diff(at[1])).sum() / n)


def top_keys(conf, correct, brier, nll, n_bins) -> dict[str, float]:
    ece, mce, oe = bin_errors(conf, correct, n_bins)
    mean = (lambda v: v.mean()) if len(conf) else (lambda v: np.nan)
    return {"ece": ece, "mce": mce, "oe": oe, "ace": equal_mass_ace(conf, correct, n_bins),
            "brier": mean(brier), "nll": mean(nll), "accuracy": mean(correct)}


def multiclass_ref(p, y, valid, *, n_bins, target_type="hard", include_background=True):
    """Every key for one set of pixels. p, y: (C, M) float64 (y one-hot for index targets)."""
    c = p.shape[0]
    conf, pred, cls = p.max(0), p.argmax(0), y.argmax(0)
    cols = np.arange(p.shape[1])
    correct = (pred == cls).astype(float) if target_type == "hard" else y[pred, cols]
    keep = valid & ((cls != 0) | include_background)
    brier = ((p - y) ** 2).sum(0)
    nll = -(y * np.log(np.maximum(p, 1e-7))).sum(0)
    out = top_keys(conf[keep], correct[keep], brier[keep], nll[keep], n_bins)
    freq = (cls == np.arange(c)[:, None]).astype(float) if target_type == "hard" else y
    out["ece_class"] = np.array([bin_errors(p[k, valid], freq[k, valid], n_bins)[0]
                                 for k in range(c)])
    first = 0 if include_background else 1
    out["marginal_ece"] = bin_errors(p[first:, valid].ravel(), freq[first:, valid].ravel(),
                                     n_bins)[0]
    return out


def multilabel_ref(q, y, valid, *, n_bins, target_type="hard", include_background=True):
    """Every key for one set of pixels. q, y, valid: (C, M) (valid element-wise)."""
    first = 0 if include_background else 1
    qs, ys, vs = q[first:][valid[first:]], y[first:][valid[first:]], valid[first:]
    pred = qs >= 0.5
    if target_type == "hard":
        correct = (pred == (ys >= 0.5)).astype(float)
    else:
        correct = np.where(pred, ys, 1.0 - ys)
    qc = np.clip(qs, 1e-7, 1 - 1e-7)
    nll = -(ys * np.log(qc) + (1 - ys) * np.log(1 - qc))
    out = top_keys(np.maximum(qs, 1 - qs), correct, (qs - ys) ** 2, nll, n_bins)
    freq = (y >= 0.5).astype(float) if target_type == "hard" else y
    out["ece_class"] = np.array([bin_errors(q[k][valid[k]], freq[k][valid[k]], n_bins)[0]
                                 for k in range(q.shape[0])])
    out["marginal_ece"] = bin_errors(q[first:][vs], freq[first:][vs], n_bins)[0]
    return out


def reference(task, p, y, valid, *, per_image, include_background=True, **kw):
    """Pooled: one set of all pixels; per-image: mean over images of each image's keys
    (top-label keys over images with kept pixels, class-wise over images with valid ones)."""
    ref = multiclass_ref if task == "multiclass" else multilabel_ref
    flat = lambda a: np.moveaxis(a, 0, -2).reshape(*a.shape[1:-1], -1)  # noqa: E731
    first = 0 if include_background else 1
    if not per_image:
        out = ref(flat(p), flat(y), flat(valid), include_background=include_background, **kw)
    else:
        images = [ref(p[i], y[i], valid[i], include_background=include_background, **kw)
                  for i in range(p.shape[0])]
        out = {k: np.nanmean([im[k] for im in images]) for k in (*KEYS, "marginal_ece")}
        out["ece_class"] = np.nanmean(np.stack([im["ece_class"] for im in images]), axis=0)
    out["classwise_ece"] = np.nanmean(out["ece_class"][first:])
    return out


def assert_matches(got: dict, want: dict, tol: float = TOL) -> None:
    assert set(got) == set(KEYS + FAILURE_KEYS + CLASS_KEYS)
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k], atol=tol, rtol=0, err_msg=k)


# --------------------------------------------------------------------------- data


def spaced_probs(n: int, c: int, p: int, seed: int) -> np.ndarray:
    """(n, c, p) float64 softmax-like maps whose top-label confidences are all distinct,
    spaced by more than a fine bin, in (0.5, 0.95); the other classes share the rest."""
    rng = np.random.default_rng(seed)
    m = n * p
    conf = 0.5 + 0.45 * (rng.permutation(m) + rng.uniform(0.2, 0.8, m)) / m
    pred = rng.integers(0, c, m)
    probs = rng.uniform(0.5, 1.5, (c, m))
    probs[pred, np.arange(m)] = 0.0
    probs *= (1.0 - conf) / probs.sum(0)
    probs[pred, np.arange(m)] = conf
    return probs.reshape(c, n, p).transpose(1, 0, 2).copy()


def class_targets(probs: np.ndarray, seed: int, ignore: bool = False) -> np.ndarray:
    """(n, p) class indices: the predicted class with probability = its confidence."""
    rng = np.random.default_rng(seed)
    n, c, p = probs.shape
    pred = probs.argmax(1)
    right = rng.uniform(size=(n, p)) < probs.max(1)
    t = np.where(right, pred, (pred + rng.integers(1, c, (n, p))) % c)
    if ignore:
        t[rng.uniform(size=(n, p)) < 0.2] = IGNORE
    return t


def soft_targets(t: np.ndarray, c: int, seed: int) -> np.ndarray:
    """(n, c, p) soft maps: mostly the one-hot of t, blended with a random distribution."""
    rng = np.random.default_rng(seed)
    one_hot = (t[:, None] == np.arange(c)[:, None]).astype(float)
    noise = rng.dirichlet(np.ones(c), size=t.shape).transpose(0, 2, 1)
    blended = rng.uniform(size=(1, 1, t.shape[1])) < 0.5
    w = rng.uniform(0, 1, (t.shape[0], 1, t.shape[1])) * blended
    return (1 - w) * one_hot + w * noise


def one_hot(t: np.ndarray, c: int) -> np.ndarray:
    return (t[:, None] == np.arange(c)[:, None]).astype(float)


# --------------------------------------------------------------------------- 1. by hand


def test_hand_computed_three_classes():
    # 4 pixels, 3 classes, n_bins = 4: bins (0, .25], (.25, .5], (.5, .75], (.75, 1]
    p = torch.tensor([[[0.50, 0.25, 0.75, 0.25],   # p_0
                       [0.25, 0.50, 0.25, 0.25],   # p_1
                       [0.25, 0.25, 0.00, 0.50]]])  # p_2
    t = torch.tensor([[0, 0, 0, 2]])
    m = pixel_calibration(p, t, n_bins=4, task="multiclass", num_classes=3, fine_bins=4)
    # top-label: conf .5 (pred 0, right), .5 (pred 1, wrong), .75 (pred 0, right),
    # .5 (pred 2, right). Bin (.25,.5]: 3 px, conf 1.5, acc 2; bin (.5,.75]: 1 px, conf .75,
    # acc 1. ECE = (|1.5 - 2| + |.75 - 1|) / 4 = .1875; MCE = max(.5/3, .25) = .25; OE = 0.
    assert m["ece"].item() == 0.1875
    assert m["mce"].item() == 0.25
    assert m["oe"].item() == 0.0
    assert m["accuracy"].item() == 0.75
    # Brier: sum_k (p_k - y_k)^2 per px: .375, .375+... = [.25+.0625+.0625, .5625+.25+.0625,
    # .0625+.0625+0, .0625+.0625+.25] = [.375, .875, .125, .375] -> mean .4375
    assert m["brier"].item() == 0.4375
    # NLL: -log p_y = [log 2, log 4, log 4/3, log 2] / 4
    assert m["nll"].item() == pytest.approx(np.log(2 * 4 * 4 / 3 * 2) / 4, abs=1e-15)
    # class 0: (p, y) = (.5,1) (.25,1) (.75,1) (.25,0): bin0 conf .5 acc 1; bin1 .5 vs 1;
    # bin2 .75 vs 1 -> (.5 + .5 + .25) / 4 = .3125
    # class 1: (.25,0) (.5,0) (.25,0) (.25,0): bin0 .75 vs 0; bin1 .5 vs 0 -> 1.25 / 4 = .3125
    # class 2: (.25,0) (.25,0) (0,0) (.5,1): bin0 .5 vs 0; bin1 .5 vs 1 -> 1 / 4 = .25
    assert m["ece_class"].tolist() == [0.3125, 0.3125, 0.25]
    assert m["classwise_ece"].item() == pytest.approx((0.3125 + 0.3125 + 0.25) / 3, abs=1e-16)
    # marginal: 12 pairs; bin0 (.25 x7, 0 x1): conf 1.75, acc 1; bin1 (.5 x3): conf 1.5,
    # acc 2; bin2 (.75): conf .75, acc 1 -> (.75 + .5 + .25) / 12 = .125
    assert m["marginal_ece"].item() == 0.125
    # without the background: pixels with target 0 leave the top-label keys (only px 4:
    # conf .5 right -> ECE .5); class 0 leaves the mean and the marginal histogram
    fg = pixel_calibration(p, t, n_bins=4, task="multiclass", num_classes=3, fine_bins=4,
                           include_background=False)
    assert fg["ece"].item() == 0.5 and fg["accuracy"].item() == 1.0
    assert fg["ece_class"].tolist() == [0.3125, 0.3125, 0.25]
    assert fg["classwise_ece"].item() == 0.28125
    # classes 1, 2: bin0 (.25 x5 + 0): conf 1.25, acc 0; bin1 (.5 x2): conf 1, acc 1 -> 1.25/8
    assert fg["marginal_ece"].item() == 0.15625


def test_values_on_edges_go_to_the_lower_bin():
    # p_0 = .5 sits on the edge between (.25, .5] and (.5, .75]: it goes to the lower bin, as
    # in the binary metrics
    p = torch.tensor([[[0.5], [0.5]]], dtype=torch.float64)
    table = reliability_bins(p, torch.tensor([[0]]), n_bins=4, task="multiclass",
                             num_classes=2, per_class=True)
    assert table["count"].tolist() == [[0.0, 1.0, 0.0, 0.0]] * 2


# --------------------------------------------------------------------------- 2. reference

MC_CASES = {
    "index": {},
    "index-per-image": {"aggregate": "per-image"},
    "ignore": {"ignore_index": IGNORE},
    "ignore-per-image-fg": {"ignore_index": IGNORE, "aggregate": "per-image",
                            "include_background": False},
    "fg-only": {"include_background": False, "n_bins": 15},
    "one-hot": {"target": "one-hot"},
    "soft": {"target": "soft", "target_type": "soft"},
    "soft-hard": {"target": "soft"},
    "soft-per-image-fg": {"target": "soft", "target_type": "soft", "aggregate": "per-image",
                          "include_background": False},
    "logits": {"input": "logits", "aggregate": "per-image"},
}  # fmt: skip


@pytest.mark.parametrize("case", MC_CASES, ids=list(MC_CASES))
def test_multiclass_matches_reference(case):
    opts = dict(MC_CASES[case])
    kind = opts.pop("target", "index")
    c, n, p_len = 4, 5, 60  # 60 px per image: equal-mass groups of whole pixels
    probs = spaced_probs(n, c, p_len, seed=1)
    t = class_targets(probs, seed=2, ignore="ignore_index" in opts)
    valid = t != IGNORE
    if kind == "index":
        y, target = one_hot(t, c), torch.from_numpy(t)
    elif kind == "one-hot":
        y = one_hot(t, c)
        target = torch.from_numpy(y).to(torch.uint8)
    else:
        y = soft_targets(t, c, seed=3)
        target = torch.from_numpy(y)
    preds = torch.from_numpy(probs)
    if opts.get("input") == "logits":
        preds = torch.from_numpy(np.log(probs) + 0.7)  # softmax gives back probs (to ~1 ulp)
    got = pixel_calibration(preds, target, task="multiclass", num_classes=c, fine_bins=FINE,
                            **opts)
    want = reference(
        "multiclass", probs, y, valid, per_image=opts.get("aggregate") == "per-image",
        n_bins=opts.get("n_bins", 10), target_type=opts.get("target_type", "hard"),
        include_background=opts.get("include_background", True),
    )  # fmt: skip
    assert_matches(got, want, tol=1e-9 if "input" in opts else TOL)


ML_CASES = {
    "hard": {},
    "hard-per-image": {"aggregate": "per-image"},
    "soft-ignore": {"target_type": "soft", "ignore_index": IGNORE},
    "no-background-per-image": {"include_background": False, "aggregate": "per-image",
                                "ignore_index": IGNORE},
}  # fmt: skip


@pytest.mark.parametrize("case", ML_CASES, ids=list(ML_CASES))
def test_multilabel_matches_reference(case):
    opts = ML_CASES[case]
    rng = np.random.default_rng(7)
    c, n, p_len = 3, 4, 50
    m = n * c * p_len
    conf = 0.5 + 0.45 * (rng.permutation(m) + rng.uniform(0.2, 0.8, m)) / m  # distinct
    q = np.where(rng.uniform(size=m) < 0.5, conf, 1.0 - conf).reshape(n, c, p_len)
    y = (rng.uniform(size=q.shape) < q).astype(float)
    if opts.get("target_type") == "soft":
        y = np.where(rng.uniform(size=q.shape) < 0.4, rng.uniform(size=q.shape), y)
    if "ignore_index" in opts:
        y[rng.uniform(size=q.shape) < 0.2] = IGNORE
        y[0, 2] = IGNORE  # class 2 of image 0 has no valid element
    valid = y != IGNORE
    got = pixel_calibration(torch.from_numpy(q), torch.from_numpy(y), task="multilabel",
                            num_classes=c, fine_bins=FINE, **opts)
    want = reference(
        "multilabel", q, y, valid, per_image=opts.get("aggregate") == "per-image",
        n_bins=10, target_type=opts.get("target_type", "hard"),
        include_background=opts.get("include_background", True),
    )  # fmt: skip
    assert_matches(got, want)


def test_multilabel_top_label_keys_are_binary_keys_of_the_elements():
    rng = np.random.default_rng(3)
    q = torch.from_numpy(rng.uniform(size=(3, 5, 8, 8)))
    y = (torch.rand(3, 5, 8, 8, generator=torch.Generator().manual_seed(0)) < q).double()
    got = pixel_calibration(q, y, task="multilabel", num_classes=5)
    binary = pixel_calibration(q.reshape(3, -1), y.reshape(3, -1))
    for k in KEYS:
        assert got[k].item() == binary[k].item(), k


def test_per_image_class_entries_average_every_image_with_pixels():
    # class 2 is absent from image 1's target and class 1 from image 0's: their ECE there
    # (the mean of p_k) still counts, as in MONAI's mean_batch reduction; image 2 is fully
    # ignored and counts nowhere. n_bins = 4.
    p = torch.tensor([[[0.50, 0.25], [0.25, 0.25], [0.25, 0.50]],   # image 0 (C, 2 px)
                      [[0.25, 0.25], [0.50, 0.50], [0.25, 0.25]],   # image 1
                      [[0.50, 0.50], [0.25, 0.25], [0.25, 0.25]]])  # image 2
    t = torch.tensor([[2, 0], [0, 1], [IGNORE, IGNORE]])
    m = pixel_calibration(p, t, task="multiclass", num_classes=3, n_bins=4,
                          aggregate="per-image", ignore_index=IGNORE)
    # class 0: image 0 p (.5, .25) y (0, 1): (.5 + .75) / 2 = .625; image 1 p (.25, .25)
    # y (1, 0): |.5 - 1| / 2 = .25 -> .4375
    # class 1: image 0 p (.25, .25) y (0, 0): .5 / 2 = .25; image 1 p (.5, .5) y (0, 1): 0
    # class 2: image 0 p (.25, .5) y (1, 0): (.75 + .5) / 2 = .625; image 1 (.25, .25) y 0: .25
    assert m["ece_class"].tolist() == [0.4375, 0.125, 0.4375]
    assert m["classwise_ece"].item() == 1 / 3


# --------------------------------------------------------------------------- 3. oracles


def test_torchmetrics_multiclass_oracle():
    tm = pytest.importorskip("torchmetrics.classification")
    c, n_bins = 5, 15
    probs = spaced_probs(6, c, 80, seed=11)
    t = class_targets(probs, seed=12)
    preds = torch.from_numpy(probs).float()  # torchmetrics bins float32 confidences
    conf = preds.max(1).values.double()
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    assert (conf[..., None] - edges).abs().min() > 1e-6  # no value near an edge
    oracle = tm.MulticlassCalibrationError(num_classes=c, n_bins=n_bins, norm="l1")
    oracle.update(preds.permute(0, 2, 1).reshape(-1, c), torch.from_numpy(t).reshape(-1))
    ours = pixel_calibration(preds, torch.from_numpy(t), task="multiclass", num_classes=c,
                             n_bins=n_bins)
    diff = abs(ours["ece"].item() - oracle.compute().item())
    print(f"max |ECE - torchmetrics MulticlassCalibrationError| = {diff:.2e}")
    assert diff < 1e-6  # torchmetrics sums in float32


@pytest.mark.parametrize("include_background", [True, False])
def test_monai_classwise_oracle(include_background):
    monai_metrics = pytest.importorskip("monai.metrics")
    c, n_bins = 4, 10
    probs = spaced_probs(3, c, 100, seed=21)
    t = class_targets(probs, seed=22)
    preds = torch.from_numpy(probs).float()
    edges = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    assert (preds.double()[..., None] - edges).abs().min() > 1e-6
    y = torch.from_numpy(one_hot(t, c)).float()

    def monai(p, target, reduction):
        metric = monai_metrics.CalibrationErrorMetric(
            num_bins=n_bins, include_background=include_background,
            calibration_reduction="expected", metric_reduction=reduction, right=True,
        )  # fmt: skip
        metric(y_pred=p, y=target)
        return metric.aggregate().double()

    opts = dict(task="multiclass", num_classes=c, n_bins=n_bins,
                include_background=include_background)
    target = torch.from_numpy(t)
    per_image = pixel_calibration(preds, target, aggregate="per-image", **opts)
    pooled = pixel_calibration(preds, target, **opts)
    first = 0 if include_background else 1
    flat_p = preds.permute(1, 0, 2).reshape(1, c, -1)  # every pixel as one "image"
    flat_y = y.permute(1, 0, 2).reshape(1, c, -1)
    diffs = [
        (per_image["ece_class"][first:] - monai(preds, y, "mean_batch")).abs().max(),
        (per_image["classwise_ece"] - monai(preds, y, "mean")).abs(),
        (pooled["ece_class"][first:] - monai(flat_p, flat_y, "mean_batch")).abs().max(),
        (pooled["classwise_ece"] - monai(flat_p, flat_y, "mean")).abs(),
    ]
    worst = max(d.item() for d in diffs)
    print(f"max |class-wise ECE - MONAI CalibrationErrorMetric| = {worst:.2e}")
    assert worst < 1e-6  # MONAI sums in float32


# --------------------------------------------------------------------------- reliability


def test_reliability_tables():
    c = 4
    probs = spaced_probs(3, c, 40, seed=31)
    t = torch.from_numpy(class_targets(probs, seed=32, ignore=True))
    preds = torch.from_numpy(probs)
    opts = dict(task="multiclass", num_classes=c, ignore_index=IGNORE)
    metric = PixelCalibration(**opts)
    metric.update(preds, t)
    table = metric.reliability_classwise()
    assert table["count"].shape == (c, 10) and table["bin_lower"].shape == (10,)
    valid = int((t != IGNORE).sum())
    assert table["count"].sum(-1).tolist() == [valid] * c
    # ece_class from the table alone
    count = table["count"]
    gap = torch.nan_to_num((table["confidence"] - table["accuracy"]).abs()) * count
    torch.testing.assert_close(gap.sum(-1) / count.sum(-1), metric.compute()["ece_class"],
                               atol=1e-15, rtol=0)
    functional = reliability_bins(preds, t, per_class=True, **opts)
    for k in table:
        torch.testing.assert_close(functional[k], table[k], equal_nan=True, atol=0, rtol=0)
    top = reliability_bins(preds, t, **opts)
    assert top["count"].sum().item() == valid and top["count"].shape == (10,)
    with pytest.raises(DensecalInputError, match="per_class"):
        reliability_bins(preds[:, 0], preds[:, 0], per_class=True)
    with pytest.raises(DensecalInputError, match="task"):
        PixelCalibration().reliability_classwise()


# --------------------------------------------------------------------------- 4. invariances


@pytest.mark.parametrize("mode", [{}, {"aggregate": "per-image", "ignore_index": IGNORE},
                                  {"task": "multilabel", "aggregate": "per-image"}])
def test_batches_order_and_merge(mode):
    mode = {"task": "multiclass", "num_classes": 3, **mode}
    probs = spaced_probs(6, 3, 30, seed=41)
    if mode["task"] == "multiclass":
        target = torch.from_numpy(class_targets(probs, seed=42, ignore="ignore_index" in mode))
    else:
        target = torch.from_numpy(np.random.default_rng(43).uniform(size=probs.shape) < probs)
    preds = torch.from_numpy(probs)
    whole = pixel_calibration(preds, target, **mode)
    perm = torch.tensor([4, 1, 5, 0, 3, 2])
    a, b = PixelCalibration(**mode), PixelCalibration(**mode)
    a.update(preds[perm[:2]], target[perm[:2]])
    a.update(preds[perm[2:3]], target[perm[2:3]])
    b.update(preds[perm[3:]], target[perm[3:]])
    a.merge_state(b)
    merged = a.compute()
    for k in whole:
        torch.testing.assert_close(merged[k], whole[k], atol=1e-14, rtol=0, equal_nan=True)


@pytest.mark.parametrize("aggregate", ["pooled", "per-image"])
def test_chunked_blocks_equal_one_block(monkeypatch, aggregate):
    c = 5
    probs = spaced_probs(3, c, 48, seed=51)
    t = torch.from_numpy(class_targets(probs, seed=52, ignore=True))
    opts = dict(task="multiclass", num_classes=c, ignore_index=IGNORE, aggregate=aggregate)
    whole = pixel_calibration(torch.from_numpy(probs), t, **opts)
    monkeypatch.setattr(classwise, "_CHUNK_ELEMENTS_CPU", 7 * c)  # 7-pixel pieces of an image
    chunked = pixel_calibration(torch.from_numpy(probs), t, **opts)
    for k in whole:
        torch.testing.assert_close(chunked[k], whole[k], atol=1e-14, rtol=0, equal_nan=True)


def test_state_is_constant_and_binary_state_unchanged():
    binary = PixelCalibration(n_bins=15)
    mc = PixelCalibration(task="multiclass", num_classes=19, n_bins=15)
    assert set(mc.metric_state) - set(binary.metric_state) == set(
        classwise.ClasswiseState._fields
    )
    assert all(mc._reductions[k].__name__ == "dim_zero_sum" for k in mc.metric_state)
    size = mc.state_size()
    mc.update(torch.softmax(torch.randn(2, 19, 16, 16), 1), torch.randint(0, 19, (2, 16, 16)))
    assert mc.state_size() == size == binary.state_size() + 3 * 19 * 15 + 2 * 19 + 2
    assert set(pixel_calibration(torch.rand(2, 4), torch.rand(2, 4))) == set(KEYS + FAILURE_KEYS)


def test_float32_half_probabilities():
    probs = torch.softmax(torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(5)), 1)
    t = torch.randint(0, 3, (2, 9, 9), generator=torch.Generator().manual_seed(6))
    opts = dict(task="multiclass", num_classes=3)
    m32 = pixel_calibration(probs, t, **opts)
    m16 = pixel_calibration(probs.half(), t, **opts)
    assert m32["ece"].isfinite() and m16["ece"].isfinite()
    assert abs(m32["ece"].item() - m16["ece"].item()) < 5e-3


# --------------------------------------------------------------------------- errors


def _p(c=3):
    return torch.full((2, c, 4, 4), 1.0 / c)


BASE = {"task": "multiclass", "num_classes": 3}
BINARY = {"task": "binary", "num_classes": None}
INDEX = torch.zeros(2, 4, 4, dtype=torch.long)
ERRORS = [
    ({"num_classes": None}, _p(), INDEX, "num_classes: task='multiclass' needs an integer >= 2"),
    ({**BINARY, "num_classes": 3}, _p(), INDEX, "num_classes: only used with"),
    ({**BINARY, "include_background": False}, _p()[:, 0], INDEX, "include_background"),
    ({"confidence": "positive"}, _p(), INDEX, "confidence: task='multiclass' bins"),
    ({"task": "multiclas"}, _p(), INDEX, "task: expected one of"),
    ({}, _p(4), INDEX, "preds: channel dim has 4 channels but num_classes=3"),
    ({}, _p(), torch.full((2, 4, 4), 3), "target: class index 3 >= num_classes=3"),
    ({}, _p(), torch.full((2, 4, 4), -1), "target: negative class index -1"),
    ({"ignore_index": 255}, _p(), torch.full((2, 4, 4), 7), "target: class index 7 >= "),
    ({}, _p(), torch.zeros(2, 4, 4), "target: a class-index map needs an integer dtype"),
    ({}, _p(), torch.zeros(2, 5, 4, dtype=torch.long), "target: shape"),
    ({}, _p() * 3.3, INDEX, "preds: values outside"),
    ({}, _p() * 0.9, INDEX, "preds: probabilities do not sum to 1.*input='logits'"),
    ({}, _p(), torch.full((2, 3, 4, 4), 0.5), "target: class probabilities do not sum to 1"),
    ({}, _p().index_fill(3, torch.tensor([1]), float("nan")), INDEX, "preds: contains NaN"),
    ({}, _p(), torch.full((2, 3, 4, 4), float("nan")), "target: contains NaN"),
    ({"task": "multilabel"}, _p(), torch.full((2, 3, 4, 4), 2.0), "target: values outside"),
    ({"task": "multilabel"}, _p(), INDEX, "target: shape"),
]


@pytest.mark.parametrize(("opts", "preds", "target", "message"), ERRORS)
def test_errors(opts, preds, target, message):
    opts = {k: v for k, v in {**BASE, **opts}.items() if v is not None}
    with pytest.raises(DensecalInputError, match=message.replace("(", r"\(")):
        pixel_calibration(preds, target, **opts)


def test_logits_need_no_normalisation_and_ignored_soft_pixels():
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(9)) * 3
    t = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(8))
    opts = dict(task="multiclass", num_classes=3)
    got = pixel_calibration(logits, t, input="logits", **opts)
    want = pixel_calibration(torch.softmax(logits.double(), 1), t, **opts)
    for k in got:
        torch.testing.assert_close(got[k], want[k], atol=0, rtol=0)
    # a probability-map target whose pixel holds ignore_index in every channel is void
    y = torch.nn.functional.one_hot(t, 3).permute(0, 3, 1, 2).double()
    y[0, :, 0, 0] = IGNORE
    t_void = t.clone()
    t_void[0, 0, 0] = IGNORE
    a = pixel_calibration(logits, y, input="logits", ignore_index=IGNORE, **opts)
    b = pixel_calibration(logits, t_void, input="logits", ignore_index=IGNORE, **opts)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-15, rtol=0)
