"""Multi-class training path: K-class objectives, module, CLI train / predict on synthetic data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densecal.cli.main import main
from densecal.errors import DensecalInputError
from densecal.methods import TrainConfig, build_objective, load_module
from densecal.methods.segmentation.module import SegmentationModule

SIZE = 32
IGNORE = 255


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mid-grey noisy background (0), a bright square (1), a dark disc (2), a few 255 pixels."""
    image = np.full((SIZE, SIZE), 128.0) + rng.normal(0, 8, (SIZE, SIZE))
    label = np.zeros((SIZE, SIZE), np.uint8)
    x, y, s = rng.integers(1, 14), rng.integers(1, 14), rng.integers(8, 13)
    label[y:y + s, x:x + s] = 1
    cy, cx, r = rng.integers(20, 27), rng.integers(20, 27), rng.integers(4, 6)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
    image[label == 1], image[label == 2] = 230.0, 25.0
    label[rng.integers(0, SIZE, 3), rng.integers(0, SIZE, 3)] = IGNORE
    rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return rgb, label


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mc")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        rgb, label = _scene(rng)
        Image.fromarray(rgb).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "masks" / f"s{i}.png")
    return root


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    (path,) = sorted(run_dir.glob("logs/version_*/metrics.csv"))
    with path.open() as f:
        return [row for row in csv.DictReader(f) if row.get("val_accuracy")]


@pytest.fixture(scope="module")
def mc_run(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ce"
    main_args = ["train", "--num-classes", "3", "--method", "ce", "--ignore-index", "255",
                 "--epochs", "2", "--image-size", "32", "--batch-size", "4", "--data",
                 str(scenes), "--out", str(out)]
    try:
        main(main_args)
    except SystemExit as exc:  # typer's standalone mode exits 0 on success
        assert exc.code in (0, None)
    return out


def test_cli_train_writes_three_channel_checkpoint(mc_run: Path) -> None:
    ckpt = mc_run / "checkpoints" / "last.ckpt"
    module = load_module(ckpt)
    assert module.config.num_classes == 3 and module.config.ignore_index == IGNORE
    assert module.task == "multiclass"
    assert module(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 3, SIZE, SIZE)
    assert int(module.temperature.task_code) == 2  # multi-class scaler
    rows = _metrics(mc_run)
    assert len(rows) == 2 and all(0.0 <= float(r["val_accuracy"]) <= 1.0 for r in rows)


def test_cli_predict_labels_and_probabilities(mc_run: Path, scenes: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(mc_run / "checkpoints" / "last.ckpt")
    code, err = run(["predict", "--checkpoint", ckpt, "--data", str(scenes / "images"),
                     "--out", str(tmp_path / "png")], capsys)
    assert code == 0, err
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 10
    code, err = run(["predict", "--checkpoint", ckpt, "--data", str(scenes / "images"),
                     "--out", str(tmp_path / "npy"), "--format", "npy"], capsys)
    assert code == 0, err
    for png in pngs:
        label = np.asarray(Image.open(png))
        prob = np.load(tmp_path / "npy" / f"{png.stem}.npy")
        assert label.dtype == np.uint8 and label.shape == (SIZE, SIZE)
        assert set(np.unique(label)) <= {0, 1, 2}
        assert prob.dtype == np.float32 and prob.shape == (3, SIZE, SIZE)
        np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)
        assert (prob >= 0).all()
        np.testing.assert_array_equal(prob.argmax(axis=0), label)


def test_predict_class_probabilities_apply_temperature(mc_run: Path, scenes: Path) -> None:
    from densecal.data import read_image
    from densecal.methods import predict_class_probabilities, predict_images, predict_logits

    module = load_module(mc_run / "checkpoints" / "last.ckpt")
    image = read_image(scenes / "images" / "s0.png")
    (logits,) = predict_logits(module, [image])
    assert logits.shape == (3, SIZE, SIZE)
    module.temperature.log_t.fill_(np.log(2.0))
    (prob,) = predict_class_probabilities(module, [image])
    ref = torch.softmax(logits.double() / 2.0, dim=0).numpy()
    np.testing.assert_allclose(prob, ref, atol=1e-6)
    with pytest.raises(DensecalInputError, match="3-class"):
        next(predict_images(module, [image]))


@pytest.mark.slow
def test_ce_learns_the_easy_task(scenes: Path, tmp_path: Path) -> None:
    from densecal.methods import train

    config = TrainConfig(method="ce", num_classes=3, ignore_index=IGNORE, data=str(scenes),
                         epochs=15, image_size=32, batch_size=4, augment=False, lr=3e-3)
    train(config, tmp_path / "run", progress=False)
    assert float(_metrics(tmp_path / "run")[-1]["val_accuracy"]) > 0.8


@pytest.mark.parametrize("method", ["ce", "ls", "focal", "ecp", "mbls", "svls"])
def test_multiclass_objectives_one_step(method: str) -> None:
    torch.manual_seed(0)
    config = TrainConfig(method=method, num_classes=3, ignore_index=IGNORE, model="unet-small")
    module = SegmentationModule(config.to_dict(), num_train_images=2)
    target = torch.randint(0, 3, (2, 16, 16))
    target[0, 0, :4] = IGNORE
    batch = {"image": torch.rand(2, 3, 16, 16), "mask": target, "index": torch.arange(2)}
    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer attached
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in module.net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_ce_is_cross_entropy_skipping_ignored_pixels() -> None:
    logits = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 5, 5))
    target[1, 2] = IGNORE
    loss = build_objective(TrainConfig(method="ce", num_classes=4, ignore_index=IGNORE), 2).loss
    ref = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE)
    assert float(loss(logits, target)) == pytest.approx(float(ref), abs=1e-12)
    # binary ce is bce
    x, y = torch.randn(2, 1, 3, 3, dtype=torch.float64), torch.rand(2, 1, 3, 3).round().double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    assert float(build_objective(TrainConfig(method="ce"), 2).loss(x, y)) == pytest.approx(
        float(bce), abs=1e-12)


@pytest.mark.parametrize("method", ["bce", "slp", "aslp"])
def test_binary_only_methods_refused(method: str) -> None:
    with pytest.raises(DensecalInputError, match=f"method {method} is binary-only; use ce for "
                                                 "--num-classes 3"):
        build_objective(TrainConfig(method=method, num_classes=3), 1)


@pytest.mark.parametrize(("k", "ignore", "fragment"), [
    (0, None, "--num-classes"), (1, 255, "--ignore-index"), (3, 2, "--ignore-index")])
def test_bad_class_options(k: int, ignore: int | None, fragment: str) -> None:
    with pytest.raises(DensecalInputError, match=fragment):
        build_objective(TrainConfig(method="ce", num_classes=k, ignore_index=ignore), 1)


def test_cli_aslp_multiclass_exits_2_one_line(scenes: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["train", "--num-classes", "3", "--method", "aslp", "--data", str(scenes),
                     "--out", str(tmp_path / "r")], capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1, err
    assert "aslp is binary-only" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def _with_bad_label(scenes: Path, root: Path, n: int, bad: int) -> Path:
    """The first ``n`` scenes, with label value 7 (not a class) in scene ``bad``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.open(scenes / "images" / f"s{i}.png").save(root / "images" / f"s{i}.png")
        label = np.asarray(Image.open(scenes / "masks" / f"s{i}.png")).copy()
        if i == bad:
            label[5, 5] = 7
        Image.fromarray(label).save(root / "masks" / f"s{i}.png")
    return root


def test_label_out_of_range_names_the_file(scenes: Path, tmp_path: Path) -> None:
    from densecal.methods import train

    root = _with_bad_label(scenes, tmp_path / "bad", n=4, bad=2)
    config = TrainConfig(method="ce", num_classes=3, ignore_index=IGNORE, data=str(root),
                         val_fraction=0.25, epochs=1, image_size=32, batch_size=4)
    with pytest.raises(DensecalInputError, match=r"s2\.png: label value 7 is not a class"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_evaluate_multiclass_checkpoint(mc_run: Path, scenes: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "eval"
    code, err = run(["evaluate", "--checkpoint", str(mc_run / "checkpoints" / "last.ckpt"),
                     "--data", str(scenes), "--out", str(out)], capsys)
    assert code == 0, err
    result = json.loads((out / "metrics.json").read_text())
    assert result["schema"] == "densecal.evaluate-multiclass/3"
    assert result["protocol"]["num_classes"] == 3 and result["protocol"]["ignore_index"] == 255
    assert len(result["calibration"]["ece_class"]) == 3
    assert len(result["segmentation"]["dice_class"]) == 3
    # 10 images of 32x32, 3 ignored pixels each (positions may repeat, so at most 30)
    assert 10 * SIZE * SIZE - 30 <= result["dataset"]["n_pixels"] < 10 * SIZE * SIZE
    assert "cw-ECE %" in (out / "report.md").read_text()


def test_multiclass_evaluator_hand_computed() -> None:
    from densecal.evaluation import MulticlassEvaluator, MulticlassOptions

    probs = np.zeros((3, 1, 4), np.float32)
    probs[:, 0, 0] = [0.5, 0.25, 0.25]  # predicts 0, truth 0
    probs[:, 0, 1] = [0.25, 0.5, 0.25]  # predicts 1, truth 1
    probs[:, 0, 2] = [0.25, 0.25, 0.5]  # predicts 2, truth 1
    probs[:, 0, 3] = [0.5, 0.25, 0.25]  # ignored
    labels = np.array([[0, 1, 1, 255]])
    ev = MulticlassEvaluator(MulticlassOptions(num_classes=3, ignore_index=255))
    ev.add("a", probs, labels)
    result = ev.evaluation().result
    seg = result["segmentation"]
    # class 0: TP 1 -> Dice 1; class 1: TP 1, FN 1 -> 2/3, IoU 1/2; class 2: FP 1 -> 0
    np.testing.assert_allclose(seg["dice_class"], [1.0, 2 / 3, 0.0])
    np.testing.assert_allclose(seg["iou_class"], [1.0, 0.5, 0.0])
    assert seg["dice"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    # top-label: 3 pixels at confidence 0.5, 2 correct -> |0.5 - 2/3| = 1/6
    assert result["calibration"]["ece"] == pytest.approx(1 / 6)
    assert result["dataset"]["n_pixels"] == 3


def test_calibrate_label_out_of_range_names_the_files(mc_run: Path, scenes: Path,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # the temperature fit knows its inputs only as batches[i]; the error names the files
    root = _with_bad_label(scenes, tmp_path / "bad", n=2, bad=1)
    with pytest.raises(SystemExit) as info:
        main(["calibrate", "--checkpoint", str(mc_run / "checkpoints" / "last.ckpt"), "--data",
              str(root), "--out", str(tmp_path / "cal.ckpt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert f"{root / 'images' / 's1.png'} (mask {root / 'masks' / 's1.png'}):" in err[0], err
    assert not (tmp_path / "cal.ckpt").exists()
