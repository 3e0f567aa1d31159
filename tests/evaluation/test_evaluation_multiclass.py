"""Multi-class evaluation: foreground, soft-truth and per-volume metrics against float64
references written here, invariances, bad input and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.cli.main import main
from densecal.data import read_distribution
from densecal.errors import DensecalInputError
from densecal.evaluation import EVALUATE_MULTICLASS_SCHEMA, MulticlassEvaluator, MulticlassOptions
from densecal.evaluation.multiclass import volume_of

K = 3
# every distribution over 3 classes with quarter probabilities: exact in float32 and on the
# bin edges of 10 and 15 bins
QUARTERS = np.array([(a, b, 4 - a - b) for a in range(5) for b in range(5 - a)]) / 4.0
NAMES = ("v1__s0", "v1__s1", "v2__s0", "solo")


def _maps(seed: int, shape: tuple[int, int] = (4, 5)) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Quarter-valued probabilities (K, H, W), labels (H, W), soft truth (K, H, W)."""
    rng = np.random.default_rng(seed)
    probs = QUARTERS[rng.integers(0, len(QUARTERS), shape)].transpose(2, 0, 1)
    soft = QUARTERS[rng.integers(0, len(QUARTERS), shape)].transpose(2, 0, 1)
    labels = soft.argmax(0)
    return probs.astype(np.float32), labels.astype(np.int64), soft.astype(np.float32)


@pytest.fixture(scope="module")
def images() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return {name: _maps(i) for i, name in enumerate(NAMES)}


# ---------------------------------------------------------------- float64 references

def ref_bins(conf: np.ndarray, acc: np.ndarray, n_bins: int) -> tuple[float, float, float]:
    """ECE, MCE, OE of equal-width bins (lo, hi] (0 in the first bin), pooled."""
    conf, acc = conf.astype(np.float64), acc.astype(np.float64)
    index = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = mce = oe = 0.0
    for b in range(n_bins):
        m = index == b
        if m.any():
            gap = conf[m].mean() - acc[m].mean()
            weight = m.sum() / conf.size
            ece += weight * abs(gap)
            mce = max(mce, abs(gap))
            oe += weight * conf[m].mean() * max(gap, 0.0)
    return ece, mce, oe


def ref_metrics(p: np.ndarray, truth: np.ndarray, n_bins: int, classes: range) -> dict[str, float]:
    """Top-label ECE/MCE/OE, class-wise ECE, Brier, NLL of pixels ``p`` (K, N) against a
    distribution ``truth`` (K, N) (one-hot for hard labels)."""
    p, truth = p.astype(np.float64), truth.astype(np.float64)
    pred = p.argmax(0)
    expected = truth[pred, np.arange(p.shape[1])]
    ece, mce, oe = ref_bins(p.max(0), expected, n_bins)
    classwise = np.mean([ref_bins(p[k], truth[k], n_bins)[0] for k in classes])
    brier = ((p - truth) ** 2).sum(0).mean()
    nll = -(truth * np.log(np.maximum(p, 1e-7))).sum(0).mean()
    return {"ece": ece, "mce": mce, "oe": oe, "classwise_ece": classwise, "brier": brier,
            "nll": nll}


def ref_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over classes of pooled Dice (classes absent from both left out)."""
    dice = []
    for k in range(K):
        tp = np.sum((pred == k) & (truth == k))
        denominator = np.sum(pred == k) + np.sum(truth == k)
        if denominator:
            dice.append(2 * tp / denominator)
    return float(np.mean(dice))


def _flat(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    p = np.concatenate([i[0].reshape(K, -1) for i in items], 1)
    y = np.concatenate([i[1].ravel() for i in items])
    s = np.concatenate([i[2].reshape(K, -1) for i in items], 1)
    return p, y, s


def _evaluate(images: dict, names: tuple[str, ...] = NAMES, soft: bool = True,
              **options: object) -> dict:
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=K, **options), "toy", soft_truth=soft)
    for name in names:
        p, y, s = images[name]
        ev.add(name, p, y, s if soft else None)
    return ev.evaluation().__dict__


# ---------------------------------------------------------------- values

@pytest.mark.parametrize("n_bins", [10, 15])
def test_all_and_foreground_calibration_match_reference(images: dict, n_bins: int) -> None:
    out = _evaluate(images, soft=False, n_bins=n_bins)
    calibration = out["result"]["calibration"]
    p, y, _ = _flat(list(images.values()))
    onehot = np.eye(K)[y].T
    ref = ref_metrics(p, onehot, n_bins, range(K))
    for key in ("ece", "mce", "oe", "classwise_ece", "brier", "nll"):
        assert calibration[key] == pytest.approx(ref[key], abs=1e-12), key
    fg = y != 0
    assert 0 < fg.sum() < y.size
    ref_fg = ref_metrics(p[:, fg], onehot[:, fg], n_bins, range(1, K))
    for key in ("ece", "mce", "oe", "classwise_ece"):
        assert calibration[f"{key}_foreground"] == pytest.approx(ref_fg[key], abs=1e-12), key
    assert calibration["ece_foreground"] != pytest.approx(calibration["ece"], abs=1e-3)
    assert out["result"]["protocol"]["n_bins"] == n_bins


def test_foreground_hand_computed() -> None:
    # pixel 0: background, right at 0.75; pixels 1, 2: class 1 at 0.5, one right one wrong
    probs = np.array([[[0.75, 0.25, 0.5]], [[0.25, 0.5, 0.25]], [[0.0, 0.25, 0.25]]],
                     np.float32)
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=3))
    row = ev.add("x", probs, np.array([[0, 1, 1]]))
    calibration = ev.evaluation().result["calibration"]
    assert calibration["ece_foreground"] == 0.0  # confidence 0.5, accuracy 1/2
    assert calibration["ece"] == pytest.approx(0.25 / 3)  # + the 0.75 pixel, right
    assert row["ece_foreground"] == 0.0 and row["volume"] == "x"


def test_soft_truth_matches_reference(images: dict) -> None:
    result = _evaluate(images)["result"]
    p, _, s = _flat(list(images.values()))
    assert (p == 0).any()  # the NLL clamp is exercised
    ref = ref_metrics(p, s, 10, range(K))
    assert set(result["soft_truth"]) == {"ece", "mce", "oe", "classwise_ece", "brier", "nll"}
    for key, value in result["soft_truth"].items():
        assert value == pytest.approx(ref[key], abs=1e-12), key
    assert result["protocol"]["soft_truth"] is True


def test_one_hot_soft_truth_equals_hard_labels(images: dict) -> None:
    onehot = {n: (p, y, np.eye(K, dtype=np.float32)[y].transpose(2, 0, 1))
              for n, (p, y, _) in images.items()}
    result = _evaluate(onehot)["result"]
    for key, value in result["soft_truth"].items():
        assert value == pytest.approx(result["calibration"][key], abs=1e-12), key
    volumes = result["per_volume"]["volumes"]
    assert all(v["ece_soft"] == pytest.approx(v["ece"], abs=1e-12) for v in volumes)


def test_per_volume_matches_reference(images: dict) -> None:
    out = _evaluate(images)
    block = out["result"]["per_volume"]
    groups = {"v1": ["v1__s0", "v1__s1"], "v2": ["v2__s0"], "solo": ["solo"]}
    assert block["n_volumes"] == 3
    assert [v["name"] for v in block["volumes"]] == sorted(groups)
    expected = {}
    for name, members in groups.items():
        p, y, s = _flat([images[m] for m in members])
        fg = y != 0
        expected[name] = {
            "dice": ref_dice(p.argmax(0), y),
            "ece": ref_metrics(p, np.eye(K)[y].T, 10, range(K))["ece"],
            "ece_foreground": ref_metrics(p[:, fg], np.eye(K)[y[fg]].T, 10, range(1, K))["ece"],
            "ece_soft": ref_metrics(p, s, 10, range(K))["ece"],
            "brier_soft": ref_metrics(p, s, 10, range(K))["brier"],
        }
    for volume in block["volumes"]:
        assert volume["n_images"] == len(groups[volume["name"]])
        assert set(volume) == {"name", "n_images", *expected[volume["name"]]}
        for key, value in expected[volume["name"]].items():
            assert volume[key] == pytest.approx(value, abs=1e-12), (volume["name"], key)
    for key in block["mean"]:
        column = np.array([expected[n][key] for n in sorted(groups)])
        assert block["mean"][key] == pytest.approx(column.mean(), abs=1e-12)
        assert block["std"][key] == pytest.approx(column.std(ddof=0), abs=1e-12)
    assert [row["volume"] for row in out["per_image"]] == ["v1", "v1", "v2", "solo"]
    assert list(out["per_image"][0]) == [
        "name", "volume", "ece", "oe", "mce", "accuracy", "brier", "nll", "classwise_ece",
        "dice", "ece_foreground", "ece_soft", "brier_soft", "nll_soft"]


def test_dice_per_volume_hand_computed() -> None:
    one = np.zeros((3, 1, 2), np.float32)
    one[0] = 1.0  # predicts background everywhere
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=3))
    ev.add("a__0", one, np.array([[0, 0]]))  # class 0: TP 2 -> Dice 1
    ev.add("a__1", one, np.array([[0, 1]]))  # class 0: TP 1, FP 1; class 1: FN 1
    ev.add("b__0", one, np.array([[1, 2]]))  # class 0: FP 2; classes 1, 2: FN 1
    volumes = {v["name"]: v for v in ev.evaluation().result["per_volume"]["volumes"]}
    # volume a: class 0 Dice 2*3/(2*3+1) = 6/7, class 1 Dice 0, class 2 absent
    assert volumes["a"]["dice"] == pytest.approx((6 / 7 + 0.0) / 2)
    assert volumes["b"]["dice"] == 0.0
    assert volumes["b"]["ece_foreground"] == 1.0  # b: foreground only, all wrong at 1.0
    assert volumes["a"]["ece_foreground"] == 1.0  # confidence 1, never right on foreground


def test_volume_rule() -> None:
    assert volume_of("mni152-axial__z080") == "mni152-axial"
    assert volume_of("a__b__c") == "a" and volume_of("a_b") == "a_b"


def test_image_order_does_not_matter(images: dict) -> None:
    a = _evaluate(images)
    b = _evaluate(images, names=tuple(reversed(NAMES)))
    assert _close(a["result"], b["result"])
    by_name = {row["name"]: row for row in b["per_image"]}
    assert all(_close(row, by_name[row["name"]]) for row in a["per_image"])


def _close(x: object, y: object) -> bool:
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_close(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float):
        return (np.isnan(x) and np.isnan(y)) or x == pytest.approx(y, abs=1e-12)
    return x == y


def test_blocks_absent_without_volumes_or_soft_truth(images: dict) -> None:
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=K))
    for i, (p, y, _) in enumerate(images.values()):
        ev.add(f"img{i}", p, y)
    result = ev.evaluation().result
    assert result["schema"] == EVALUATE_MULTICLASS_SCHEMA == "densecal.evaluate-multiclass/3"
    assert "per_volume" not in result and "soft_truth" not in result


def test_per_image_aggregate_averages_foreground_over_images(images: dict) -> None:
    result = _evaluate(images, soft=False, aggregate="per-image")["result"]
    per_image = []
    for p, y, _ in images.values():
        fg = (y != 0).ravel()
        onehot = np.eye(K)[y.ravel()[fg]].T
        per_image.append(ref_metrics(p.reshape(K, -1)[:, fg], onehot, 10, range(1, K))["ece"])
    assert result["calibration"]["ece_foreground"] == pytest.approx(np.mean(per_image),
                                                                    abs=1e-12)


def test_ignore_index_pixels_left_out_everywhere(images: dict) -> None:
    p, y, s = images["v1__s0"]
    y_void = y.copy()
    y_void[0] = 255
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=K, ignore_index=255), soft_truth=True)
    row = ev.add("a", p, y_void, s)
    keep = y_void.ravel() != 255
    pf, yf, sf = p.reshape(K, -1)[:, keep], y.ravel()[keep], s.reshape(K, -1)[:, keep]
    assert row["ece"] == pytest.approx(ref_metrics(pf, np.eye(K)[yf].T, 10, range(K))["ece"])
    assert row["brier_soft"] == pytest.approx(ref_metrics(pf, sf, 10, range(K))["brier"])
    fg = yf != 0
    assert row["ece_foreground"] == pytest.approx(
        ref_metrics(pf[:, fg], np.eye(K)[yf[fg]].T, 10, range(1, K))["ece"])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(("array", "fragment"), [
    (np.full((2, 4, 5), 0.5, np.float32), r"shape \(3, 4, 5\)"),
    (np.full((3, 4, 6), 1 / 3, np.float32), r"shape \(3, 4, 5\)"),
    (np.full((3, 4, 5), 0.25, np.float32), "does not sum to 1"),
    (np.where(np.arange(60).reshape(3, 4, 5) == 7, np.nan, 1 / 3).astype(np.float32), "NaN"),
    (np.stack([np.full((4, 5), 1.5), np.full((4, 5), -0.5), np.zeros((4, 5))]), "outside"),
])
def test_bad_soft_file_names_the_file(tmp_path: Path, array: np.ndarray, fragment: str) -> None:
    path = tmp_path / "v1__s0.npy"
    np.save(path, array)
    with pytest.raises(DensecalInputError, match=fragment) as info:
        read_distribution(path, K, (4, 5))
    assert str(info.value).startswith(str(path))


def test_evaluator_refuses_missing_soft_truth_and_bad_labels(images: dict) -> None:
    p, y, _ = images["solo"]
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=K), soft_truth=True)
    with pytest.raises(DensecalInputError, match="solo: soft truth expected"):
        ev.add("solo", p, y)
    with pytest.raises(DensecalInputError, match="solo: label value 5 is not a class"):
        MulticlassEvaluator(MulticlassOptions(num_classes=K)).add("solo", p, np.full_like(y, 5))
    with pytest.raises(DensecalInputError, match="solo: does not sum to 1"):
        MulticlassEvaluator(MulticlassOptions(num_classes=K)).add("solo", p * 0.5, y)


# ---------------------------------------------------------------- CLI and folders

def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def folder(tmp_path: Path, images: dict) -> tuple[Path, Path]:
    """A multi-class split (images/, masks/, soft/) and a folder of npy predictions."""
    data, pred = tmp_path / "test", tmp_path / "pred"
    for sub in ("images", "masks", "soft"):
        (data / sub).mkdir(parents=True)
    pred.mkdir()
    for name, (p, y, s) in images.items():
        Image.fromarray((y * 100).astype(np.uint8)).convert("RGB").save(
            data / "images" / f"{name}.png")
        Image.fromarray(y.astype(np.uint8)).save(data / "masks" / f"{name}.png")
        np.save(data / "soft" / f"{name}.npy", s)
        np.save(pred / f"{name}.npy", p)
    return data, pred


def test_cli_pred_gt_end_to_end(folder: tuple[Path, Path], images: dict, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    data, pred = folder
    out = tmp_path / "eval"
    code, stdout, err = run(["evaluate", "--pred", str(pred), "--gt", str(data),
                             "--num-classes", "3", "--bins", "15", "--ood", str(pred),
                             "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "metrics.json").read_text())
    assert result["schema"] == "densecal.evaluate-multiclass/3"
    assert {"ece_foreground", "mce_foreground", "oe_foreground",
            "classwise_ece_foreground"} <= set(result["calibration"])
    assert set(result["soft_truth"]) == {"ece", "mce", "oe", "classwise_ece", "brier", "nll"}
    block = result["per_volume"]
    assert set(block) == {"n_volumes", "mean", "std", "volumes"}
    assert set(block["mean"]) == set(block["std"]) == {"dice", "ece", "ece_foreground",
                                                       "ece_soft", "brier_soft"}
    assert result["protocol"]["n_bins"] == 15
    direct = _evaluate(images, n_bins=15)["result"]
    assert result["soft_truth"]["ece"] == pytest.approx(direct["soft_truth"]["ece"], abs=1e-12)
    assert result["per_volume"]["mean"]["dice"] == pytest.approx(
        direct["per_volume"]["mean"]["dice"], abs=1e-12)
    header = (out / "per_image.csv").read_text().splitlines()[0].split(",")
    assert {"volume", "ece_foreground", "ece_soft", "brier_soft", "nll_soft"} <= set(header)
    report = (out / "report.md").read_text()
    assert all(s in report for s in ("fg-ECE %", "## Soft truth", "## Per volume", " ± "))
    assert "fg-ECE" in stdout and "per-volume Dice" in stdout
    # the OOD split: the same maps against all-background labels, no soft truth
    ood = json.loads((out / "metrics_ood.json").read_text())
    assert ood["schema"] == result["schema"] and "soft_truth" not in ood
    assert ood["calibration"]["ece_foreground"] is None  # no foreground pixel: NaN -> null
    assert ood["segmentation"]["dice_class"][0] == pytest.approx(
        2 * np.mean([(p.argmax(0) == 0).mean() for p, _, _ in images.values()])
        / (1 + np.mean([(p.argmax(0) == 0).mean() for p, _, _ in images.values()])))
    assert "| ood " in report


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--protocol", "official"], "--protocol"),
    (["--ignore-index", "255"], None),  # valid with --num-classes
])
def test_cli_multiclass_options(folder: tuple[Path, Path], tmp_path: Path, extra: list[str],
                                fragment: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    data, pred = folder
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(data), "--num-classes", "3",
                        "--out", str(tmp_path / "o"), *extra], capsys)
    if fragment is None:
        assert code == 0, err
    else:
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_cli_bad_soft_file_exits_2_naming_it(folder: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data, pred = folder
    np.save(data / "soft" / "v2__s0.npy", np.full((3, 4, 5), 0.5, np.float32))
    out = tmp_path / "eval"
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(data / "masks"),
                        "--num-classes", "3", "--out", str(out)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "v2__s0.npy" in lines[0] and "does not sum to 1" in lines[0]
    assert not out.exists()
    (data / "soft" / "v2__s0.npy").unlink()
    code, _, err = run(["evaluate", "--pred", str(pred), "--gt", str(data),
                        "--num-classes", "3", "--out", str(out)], capsys)
    assert code == 2 and "v2__s0.npy: missing file" in err


def test_evaluate_checkpoint_multiclass_with_soft_truth(folder: tuple[Path, Path]) -> None:
    import torch

    from densecal.apps.evaluate_checkpoint import evaluate_checkpoint
    from densecal.methods import TrainConfig
    from densecal.methods.segmentation.module import SegmentationModule

    torch.manual_seed(0)
    config = TrainConfig(method="ce", num_classes=3, model="unet-small")
    module = SegmentationModule(config.to_dict(), num_train_images=1).eval()
    data, _ = folder
    result = evaluate_checkpoint(module, data)["test"].result
    assert result["schema"] == "densecal.evaluate-multiclass/3"
    assert result["dataset"]["n_images"] == 4 and result["per_volume"]["n_volumes"] == 3
    assert 0.0 <= result["soft_truth"]["ece"] <= 1.0
    assert 0.0 <= result["calibration"]["ece_foreground"] <= 1.0
