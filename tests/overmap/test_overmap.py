"""Over-MAP: Grad-CAM vs a hand computation, overlap scores, AUROC / AURC / precision@k, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densecal.errors import DensecalInputError
from densecal.overmap import (
    accuracy_by_bin,
    analyse_images,
    attention_mass,
    aurc,
    combine_confidence,
    grad_cam,
    misclassification_auroc,
    overlap_scores,
    peak_in_mask,
    precision_at_k,
    risk_coverage,
    threshold_iou,
)

pytest.importorskip("captum")


class LinearConvNet(nn.Module):
    """conv (stride s) -> global mean -> linear: Grad-CAM is known in closed form."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, kernel_size=stride, stride=stride)
        self.head = nn.Linear(3, 4)

    @property
    def target_layer(self) -> nn.Module:
        return self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def _reference_cam(net: LinearConvNet, x: torch.Tensor, target: list[int]) -> torch.Tensor:
    """dy_c/dA_k[i,j] = W[c,k] / (h*w) everywhere, so w_k = W[c,k] / (h*w) (float64)."""
    with torch.no_grad():
        a = net.conv.double()(x.double())
        net.float()
    h, w = a.shape[-2:]
    weights = net.head.weight.double()[target] / (h * w)  # (N, K)
    return torch.relu((weights[:, :, None, None] * a).sum(1))


def test_grad_cam_matches_hand_computation() -> None:
    net = LinearConvNet().eval()
    x = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 2, 3])
    got = grad_cam(net, x, target, normalise=False)
    ref = _reference_cam(net, x, target.tolist())
    assert got.shape == (3, 5, 5)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    normed = grad_cam(net, x, target)
    flat = ref.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    expect = (ref - lo[:, None, None]) / (hi - lo)[:, None, None]
    torch.testing.assert_close(normed.double(), expect, rtol=1e-5, atol=1e-6)


def test_grad_cam_default_target_is_prediction_and_upsamples() -> None:
    net = LinearConvNet(stride=2).eval()
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    pred = net(x).argmax(1)
    ref = _reference_cam(net, x, pred.tolist())  # (2, 4, 4)
    up = F.interpolate(ref[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(grad_cam(net, x, normalise=False).double(), up,
                               rtol=1e-5, atol=1e-6)


def test_grad_cam_bad_input() -> None:
    net = LinearConvNet().eval()
    with pytest.raises(DensecalInputError, match="target"):
        grad_cam(net, torch.zeros(2, 2, 4, 4), torch.tensor([0]))
    with pytest.raises(DensecalInputError, match="layer"):
        grad_cam(net, torch.zeros(1, 2, 4, 4), layer="nope")
    assert grad_cam(net, torch.zeros(1, 2, 4, 4), layer="conv").shape == (1, 4, 4)


H = torch.tensor([[[1.0, 0.5, 0.0], [0.25, 0.25, 0.0]]])
M = torch.tensor([[[False, True, True], [True, False, False]]])


def test_overlap_scores_exact_fractions() -> None:
    # mass inside: 0.5 + 0.25 = 0.75 of total 2.0
    assert attention_mass(H, M).tolist() == [0.375]
    # {H >= 0.5} = {(0,0), (0,1)}; M = {(0,1), (0,2), (1,0)}: 1 / 4
    assert threshold_iou(H, M).tolist() == [0.25]
    # {H >= 0.25} has 4 pixels, 2 of them in M: 2 / (4 + 3 - 2)
    assert threshold_iou(H, M, tau=0.25).tolist() == [0.4]
    assert peak_in_mask(H, M).tolist() == [0.0]
    assert peak_in_mask(H, ~M).tolist() == [1.0]
    soft = M.double() * 0.75  # binarised at 0.5
    assert overlap_scores(H, soft)["attention_mass"].tolist() == [0.375]


def test_overlap_scores_degenerate_cases() -> None:
    zero = torch.zeros(1, 2, 3)
    assert attention_mass(zero, M).tolist() == [0.0]
    assert peak_in_mask(zero, M).tolist() == [0.0]
    assert threshold_iou(zero, torch.zeros(1, 2, 3, dtype=torch.bool)).tolist() == [0.0]
    assert attention_mass(H, torch.ones(1, 2, 3, dtype=torch.bool)).tolist() == [1.0]
    with pytest.raises(DensecalInputError, match="shape"):
        attention_mass(H, M[0])
    with pytest.raises(DensecalInputError, match="non-negative"):
        attention_mass(-H, M)


def _auroc_reference(conf: np.ndarray, correct: np.ndarray) -> float:
    """Pairwise definition in float64: P(conf_right > conf_wrong) + P(tie) / 2."""
    total = 0.0
    pairs = list(itertools.product(conf[correct], conf[~correct]))
    for a, b in pairs:
        total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / len(pairs)


def test_auroc_matches_reference_and_torchmetrics() -> None:
    from torchmetrics.classification import BinaryAUROC

    rng = np.random.default_rng(0)
    conf = np.round(rng.uniform(size=200), 2)  # many ties
    correct = rng.uniform(size=200) < conf
    got = misclassification_auroc(conf, correct)
    assert got == pytest.approx(_auroc_reference(conf, correct), abs=1e-12)
    oracle = BinaryAUROC()(torch.tensor(-conf), torch.tensor(~correct, dtype=torch.long))
    assert got == pytest.approx(float(oracle), abs=1e-6)
    assert misclassification_auroc([0.9, 0.8, 0.8, 0.1], [1, 1, 0, 0]) == 0.875
    assert np.isnan(misclassification_auroc([0.2, 0.3], [1, 1]))


def test_aurc_hand_cases() -> None:
    coverage, risk = risk_coverage([0.6, 0.9, 0.7, 0.8], [0, 1, 1, 0])
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == [0.0, 0.5, 1 / 3, 0.5]
    assert aurc([0.6, 0.9, 0.7, 0.8], [0, 1, 1, 0]) == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    # ties cannot be split by a threshold: both coverages get the group's risk 1/2
    assert risk_coverage([0.5, 0.5], [1, 0])[1].tolist() == [0.5, 0.5]
    assert aurc([1.0, 0.5, 0.5], [1, 0, 1]) == pytest.approx((0 + 1 / 3 + 1 / 3) / 3)
    assert aurc([0.9, 0.1], [1, 1]) == 0.0


def test_accuracy_by_bin_and_combination() -> None:
    bins = accuracy_by_bin([0.0, 0.1, 0.3, 0.30001, 1.0], [1, 0, 1, 0, 1], n_bins=10)
    assert bins[0] == (0.0, 2, 0.5)  # 0 and 0.1 in [0, 0.1]
    assert bins[1] == (0.1, 0, None)
    assert bins[2] == (0.2, 1, 1.0)  # 0.3 closes (0.2, 0.3]
    assert bins[3] == (0.3, 1, 0.0)
    assert bins[9] == (0.9, 1, 1.0)
    with pytest.raises(DensecalInputError, match="scores"):
        accuracy_by_bin([1.5], [1])
    assert combine_confidence([0.5, 1.0], [0.5, 0.25]).tolist() == [0.25, 0.25]


def test_precision_at_k() -> None:
    scores, flags = [0.1, 0.9, 0.2, 0.3, 0.0], [1, 0, 0, 1, 1]
    assert precision_at_k(scores, flags, 1) == 1.0  # 0.0 first
    assert precision_at_k(scores, flags, 3) == pytest.approx(2 / 3)
    assert precision_at_k(scores, flags, 5) == 0.6
    with pytest.raises(DensecalInputError, match="k"):
        precision_at_k(scores, flags, 0)


def test_audit_ties_broken_by_max_softmax(tmp_path: Path) -> None:
    """Three images tied at overlap 0 (two all-zero CAMs): the least confident comes first, not
    the first file; audit.csv says which overlaps are undefined."""
    from densecal.overmap import OvermapResult, audit_order, write_overmap_outputs

    overlap = np.array([0.0, 0.0, 0.4, 0.0])
    msp = np.array([0.9, 0.6, 0.3, 0.7])
    assert audit_order(overlap, msp).tolist() == [1, 3, 0, 2]
    assert audit_order(overlap).tolist() == [0, 1, 3, 2]  # position only
    assert audit_order([0.0, 0.0], [0.5, 0.5]).tolist() == [0, 1]
    assert precision_at_k(overlap, [0, 1, 0, 0], 1, msp) == 1.0
    assert precision_at_k(overlap, [0, 1, 0, 0], 1) == 0.0
    with pytest.raises(DensecalInputError, match="secondary"):
        audit_order(overlap, msp[:2])
    probs = np.stack([msp, 1 - msp], 1)
    scores = {"attention_mass": overlap}
    result = OvermapResult(probs=probs, prediction=np.zeros(4, np.int64), msp=msp,
                           scores=scores, label_scores=scores, maps=[],
                           cam_empty=np.array([True, False, False, True]),
                           label_cam_empty=np.array([True, False, False, True]))
    write_overmap_outputs(tmp_path / "o", ["a", "b", "c", "d"], ["x", "y"], np.zeros(4, int),
                          result, images=[], masks=[], manifest={"b": "no object"})
    import csv

    rows = list(csv.DictReader((tmp_path / "o" / "audit.csv").open()))
    assert [r["name"] for r in rows] == ["b", "d", "a", "c"]
    assert [r["cam_empty"] for r in rows] == ["0", "1", "1", "0"]
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["audit_precision_at_k"]["precision"] == 1.0


def test_analyse_images_matches_direct_scores() -> None:
    net = LinearConvNet(stride=2).eval()
    net.conv = nn.Conv2d(3, 3, kernel_size=2, stride=2)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in range(3)]
    masks = [rng.uniform(size=(8, 8)) < 0.5 for _ in range(3)]
    res = analyse_images(net, images, masks, 8, [0, 1, 2], batch_size=2, keep_maps=2)
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
    pred = net(x).argmax(1)
    h = grad_cam(net, x, pred)
    m = torch.as_tensor(np.stack(masks))
    np.testing.assert_allclose(res.scores["attention_mass"], attention_mass(h, m).numpy())
    hl = grad_cam(net, x, torch.tensor([0, 1, 2]))
    np.testing.assert_allclose(res.label_scores["threshold_iou"], threshold_iou(hl, m).numpy())
    assert res.probs.shape == (3, 4) and len(res.maps) == 2
    np.testing.assert_allclose(res.probs.sum(1), 1.0)
    with pytest.raises(DensecalInputError, match="masks"):
        analyse_images(net, images, masks[:2], 8)


def test_overmap_cli_end_to_end(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from densecal.cli.data import finegrained_data
    from densecal.cli.overmap import overmap
    from densecal.methods.classify import train_classifier
    from densecal.methods.config import TrainConfig

    app = typer.Typer()
    app.command("overmap")(overmap)
    app.command("finegrained")(finegrained_data)
    runner = CliRunner()
    data = tmp_path / "fg"
    r = runner.invoke(app, ["finegrained", "--out", str(data), "--size", "32", "--n-train", "10",
                            "--n-val", "2", "--n-test", "2", "--misleading", "0.3"])
    assert r.exit_code == 0, r.output
    config = TrainConfig(data=str(data / "train"), val_data=str(data / "val"),
                         model="resnet-tiny", epochs=1, batch_size=5, image_size=32)
    ckpt = train_classifier(config, tmp_path / "run", progress=False)
    out = tmp_path / "om"
    r = runner.invoke(app, ["overmap", "--classifier", str(ckpt), "--data", str(data / "train"),
                            "--out", str(out), "--figure-rows", "2"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["accuracy_by_overlap_bin"]) == 10
    assert sum(b[1] for b in metrics["accuracy_by_overlap_bin"]) == 10
    assert set(metrics["auroc"]) == set(metrics["aurc"]) == {"overmap", "msp", "combined"}
    assert metrics["audit_precision_at_k"]["k"] == 3  # round(10 * 0.3) misleading images
    per_image = (out / "per_image.csv").read_text().splitlines()
    assert per_image[0].startswith("name,label,prediction,correct,msp,attention_mass")
    assert len(per_image) == 11
    audit = (out / "audit.csv").read_text().splitlines()
    overlaps = [float(line.split(",")[3]) for line in audit[1:]]
    assert overlaps == sorted(overlaps)
    assert (out / "overmap_grid.png").stat().st_size > 0
    r = runner.invoke(app, ["overmap", "--classifier", str(ckpt), "--data", str(data / "train"),
                            "--out", str(out), "--score", "bogus"])
    assert isinstance(r.exception, DensecalInputError)
