"""CALSeg's variational label smoothing (vls): formulas, CVAE, soft-label cache, stages, CLI."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densecal.cli.main import main
from densecal.errors import DensecalInputError
from densecal.losses.soft_label import SoftLabelKLLoss, one_hot_labels, soft_label_kl
from densecal.methods import TrainConfig, build_objective, load_module, train
from densecal.methods.vls import stage1 as vls_mod
from densecal.methods.vls.nets import (
    ConditionalVAE,
    CVAEOutput,
    cvae_loss,
    gaussian_kl,
    vls_soft_labels,
)

SIZE = 32
IGNORE = 255


# ---------------------------------------------------------------------------------------------
# formulas


def _kl_reference(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-pixel KL(t || softmax(logits)) in float64 numpy, axis 1 = classes, 0 log 0 = 0."""
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        tlogt = np.where(target > 0, target * np.log(target), 0.0)
    return (tlogt - target * logp).sum(1)


def test_soft_label_kl_hand_computed() -> None:
    # three pixels, K = 2, logits 0 -> p = (1/2, 1/2)
    logits = torch.zeros(1, 2, 1, 3, dtype=torch.float64)
    target = torch.tensor([[1.0, 0.5, 0.25], [0.0, 0.5, 0.75]], dtype=torch.float64)[None, :, None]
    pixel = soft_label_kl(logits, target, reduction="none")
    expected = [math.log(2), 0.0, 0.25 * math.log(0.5) + 0.75 * math.log(1.5)]
    np.testing.assert_allclose(pixel[0, 0].numpy(), expected, rtol=0, atol=1e-15)
    assert float(soft_label_kl(logits, target)) == pytest.approx(sum(expected) / 3, abs=1e-15)
    assert float(soft_label_kl(logits, target, reduction="sum")) == pytest.approx(sum(expected))
    # ignored pixel (every channel = ignore index) leaves the mean
    target[0, :, 0, 1] = IGNORE
    loss = SoftLabelKLLoss(ignore_index=IGNORE)(logits, target)
    assert float(loss) == pytest.approx((expected[0] + expected[2]) / 2, abs=1e-15)
    # KL is 0 when the prediction equals the target
    p = torch.tensor([0.25, 0.75], dtype=torch.float64).view(1, 2, 1, 1)
    assert float(soft_label_kl(p.log(), p)) == pytest.approx(0.0, abs=1e-15)


def test_soft_label_kl_float64_reference() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (2, 4, 5, 6))
    target = rng.dirichlet(np.full(4, 0.5), (2, 5, 6)).transpose(0, 3, 1, 2)
    target[0, :, 1, 2] = [0.0, 1.0, 0.0, 0.0]  # exact zeros: 0 log 0 = 0
    got = soft_label_kl(torch.from_numpy(logits), torch.from_numpy(target), reduction="none")
    np.testing.assert_allclose(got.numpy(), _kl_reference(logits, target), rtol=1e-12, atol=1e-13)
    # float32 logits with float32 targets agree with the float64 value
    got32 = soft_label_kl(torch.from_numpy(logits).float(), torch.from_numpy(target).float())
    assert float(got32) == pytest.approx(_kl_reference(logits, target).mean(), rel=1e-5)


def test_soft_label_kl_gradcheck() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(2, 3, 3, 4, dtype=torch.float64), 1)
    target[1, :, 0, 0] = IGNORE
    assert torch.autograd.gradcheck(
        lambda x: soft_label_kl(x, target, ignore_index=IGNORE), (logits,))
    # the gradient is the cross entropy's: (p - t) / n_pixels
    loss = soft_label_kl(logits, target, ignore_index=IGNORE)
    (grad,) = torch.autograd.grad(loss, logits)
    keep = torch.ones(2, 3, 4, dtype=torch.bool)
    keep[1, 0, 0] = False
    ref = (torch.softmax(logits.detach(), 1) - target) * keep[:, None] / keep.sum()
    torch.testing.assert_close(grad, ref, rtol=0, atol=1e-14)


def test_soft_label_kl_refuses_class_indices() -> None:
    with pytest.raises(DensecalInputError, match="vls trains on soft labels"):
        soft_label_kl(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(DensecalInputError, match="sum to 1"):
        soft_label_kl(torch.zeros(1, 2, 1, 1), torch.full((1, 2, 1, 1), 0.4))


def test_gaussian_kl_hand_and_float64_oracle() -> None:
    # mu = 1, sigma = 1: 1/2; mu = 0, sigma^2 = 2: (2 - 1 - ln 2) / 2
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(gaussian_kl(mu, logvar).numpy(),
                               [0.5, 0.5 * (1 - math.log(2.0))], rtol=0, atol=1e-15)
    rng = np.random.default_rng(2)
    mu_np, logvar_np = rng.normal(0, 1, (5, 3)), rng.normal(0, 1, (5, 3))
    sigma = np.exp(0.5 * logvar_np)
    # KL(N(m, s^2) || N(0, 1)) = ln(1/s) + (s^2 + m^2)/2 - 1/2 per dimension
    ref = (np.log(1.0 / sigma) + (sigma**2 + mu_np**2) / 2 - 0.5).sum(1)
    got = gaussian_kl(torch.from_numpy(mu_np), torch.from_numpy(logvar_np)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-13)
    oracle = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.from_numpy(mu_np), torch.from_numpy(sigma)),
        torch.distributions.Normal(0.0, 1.0)).sum(1).numpy()
    np.testing.assert_allclose(got, oracle, rtol=1e-12)


def test_cvae_loss_terms_kl_averaged_over_batch() -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[0, 0] = IGNORE
    image = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    recon = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    mu = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    out = CVAEOutput(logits, recon, mu, torch.zeros(2, 2, dtype=torch.float64))
    terms = cvae_loss(out, image, labels, IGNORE)
    ce = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE)
    assert float(terms["ce"]) == pytest.approx(float(ce), abs=1e-14)
    assert float(terms["mse"]) == pytest.approx(float(((recon - image) ** 2).mean()), abs=1e-14)
    assert float(terms["kl"]) == pytest.approx((0.5 + 2.0) / 2, abs=1e-15)  # mean, not sum
    assert float(terms["loss"]) == pytest.approx(float(terms["ce"] + terms["mse"] + 1.25))


def test_vls_soft_labels_hand_computed() -> None:
    # one pixel, K = 2, two samples, tau = 2: softmax((0,0)/2) = (1/2, 1/2),
    # softmax((2 ln 3, 0)/2) = (3/4, 1/4); mean (5/8, 3/8); label 1, a = 1/2 -> (5/16, 11/16)
    v = torch.tensor([[0.0, 0.0], [2 * math.log(3.0), 0.0]], dtype=torch.float64)
    out = vls_soft_labels(v.view(2, 1, 2, 1), torch.tensor([[1]]), tau=2.0, mix=0.5)
    np.testing.assert_allclose(out.flatten().numpy(), [5 / 16, 11 / 16], rtol=0, atol=1e-15)


def test_vls_soft_labels_limits() -> None:
    torch.manual_seed(4)
    logits = 3 * torch.randn(5, 2, 4, 6, 7, dtype=torch.float64)  # M=5, N=2, K=4
    labels = torch.randint(0, 4, (2, 6, 7))
    labels[1, 2, 3] = IGNORE
    onehot = one_hot_labels(labels, 4, IGNORE).double()
    hard = vls_soft_labels(logits, labels, tau=2.0, mix=0.0, ignore_index=IGNORE)
    keep = labels != IGNORE
    assert torch.equal(hard.movedim(1, -1)[keep], onehot.movedim(1, -1)[keep])
    lg = logits.numpy()
    e = np.exp(lg - lg.max(2, keepdims=True))
    mean_softmax = (e / e.sum(2, keepdims=True)).mean(0)
    full = vls_soft_labels(logits, labels, tau=1.0, mix=1.0, ignore_index=IGNORE)
    np.testing.assert_allclose(full.numpy(), mean_softmax, rtol=1e-13)
    for tau, mix in ((0.5, 0.3), (2.0, 0.7), (10.0, 1.0)):
        out = vls_soft_labels(logits, labels, tau=tau, mix=mix, ignore_index=IGNORE)
        np.testing.assert_allclose(out.sum(1).numpy(), 1.0, atol=1e-13)
        assert (out >= 0).all()
    # ignored pixel: the sampled distribution alone
    np.testing.assert_allclose(hard[1, :, 2, 3].numpy(),
                               vls_soft_labels(logits, labels, tau=2.0, mix=1.0,
                                               ignore_index=IGNORE)[1, :, 2, 3].numpy())
    with pytest.raises(DensecalInputError, match="--vls-tau"):
        vls_soft_labels(logits, labels, tau=0.0, ignore_index=IGNORE)
    with pytest.raises(DensecalInputError, match="--vls-mix"):
        vls_soft_labels(logits, labels, mix=1.5, ignore_index=IGNORE)


def test_cvae_shapes_and_latent_reaches_the_heads() -> None:
    torch.manual_seed(5)
    net = ConditionalVAE(num_classes=3, latent=2)
    labels = torch.randint(0, 3, (2, SIZE, SIZE))
    out = net(torch.rand(2, 3, SIZE, SIZE), one_hot_labels(labels, 3))
    assert out.logits.shape == (2, 3, SIZE, SIZE)
    assert out.reconstruction.shape == (2, 3, SIZE, SIZE)
    assert out.mu.shape == out.logvar.shape == (2, 2)
    assert ((out.reconstruction > 0) & (out.reconstruction < 1)).all()
    h = net.features(torch.rand(1, 3, SIZE, SIZE))
    a, b = net.segment(h, torch.zeros(1, 2)), net.segment(h, torch.full((1, 2), 3.0))
    assert (a - b).abs().mean() > 1e-3  # z changes the logits everywhere, not only at borders
    with pytest.raises(DensecalInputError, match="K >= 2"):
        ConditionalVAE(num_classes=1)


# ---------------------------------------------------------------------------------------------
# data: soft-label augmentation and dataset


def _blocky_label() -> torch.Tensor:
    label = torch.zeros(SIZE, SIZE, dtype=torch.long)
    label[4:20, 6:22] = 1
    label[18:30, 16:28] = 2
    return label


def test_augment_with_soft_moves_the_soft_map_with_the_labels() -> None:
    label = _blocky_label()
    soft = one_hot_labels(label[None], 3)[0]
    image = torch.rand(3, SIZE, SIZE)
    agree = []
    for seed in range(12):
        torch.manual_seed(seed)
        _, lab, sft = vls_mod.augment_with_soft(image, label, soft, fill=0)
        assert lab.shape == sft.shape[1:]
        np.testing.assert_allclose(sft.sum(0).numpy(), 1.0, atol=1e-5)
        assert sft.min() >= -1e-6 and sft.max() <= 1 + 1e-6
        agree.append(float((sft.argmax(0) == lab).float().mean()))
    assert min(agree) > 0.95  # bilinear vs nearest differ only on a few edge pixels


def test_soft_label_dataset_marks_ignored_pixels_and_checks_files(tmp_path: Path) -> None:
    from densecal.data import FolderDataset

    root = _write_scenes(tmp_path / "d", 2, with_ignore=True)
    base = FolderDataset(root, image_size=SIZE, labels=True, num_classes=3, ignore_index=IGNORE)
    soft_dir = tmp_path / "soft"
    soft_dir.mkdir()
    for name in base.names:
        np.save(soft_dir / f"{name}.npy", np.full((3, SIZE, SIZE), 1 / 3, np.float32))
    item = vls_mod.SoftLabelDataset(base, soft_dir)[0]
    soft, label = item["soft"], item["mask"]
    assert soft.shape == (3, SIZE, SIZE) and (label == IGNORE).any()
    assert (soft[:, label == IGNORE] == IGNORE).all()
    assert torch.allclose(soft[:, label != IGNORE], torch.tensor(1 / 3))
    np.save(soft_dir / f"{base.names[1]}.npy", np.zeros((2, SIZE, SIZE), np.float32))
    with pytest.raises(DensecalInputError, match=r"s1\.npy: soft label shape \(2, 32, 32\)"):
        vls_mod.SoftLabelDataset(base, soft_dir)[1]


# ---------------------------------------------------------------------------------------------
# soft-label cache


def _write_scenes(root: Path, n: int, *, with_ignore: bool = False, seed: int = 0) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        label = np.zeros((SIZE, SIZE), np.uint8)
        x, y, s = rng.integers(1, 14), rng.integers(1, 14), rng.integers(8, 13)
        label[y:y + s, x:x + s] = 1
        cy, cx, r = rng.integers(20, 27), rng.integers(20, 27), rng.integers(4, 6)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 2
        image = np.choose(label, [128, 230, 25]) + rng.normal(0, 8, (SIZE, SIZE))
        if with_ignore:
            label[0, :3] = IGNORE
        rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
        Image.fromarray(rgb).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "masks" / f"s{i}.png")
    return root


def _stage1_file(tmp_path: Path, config: TrainConfig) -> Path:
    torch.manual_seed(0)
    module = vls_mod.VLSStage1Module(config.to_dict())
    path = tmp_path / "stage1.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "epoch": 0}, path)
    return path


def test_write_soft_labels_deterministic_reused_and_invalidated(tmp_path: Path) -> None:
    from densecal.data import FolderDataset

    root = _write_scenes(tmp_path / "d", 3, with_ignore=True)
    config = TrainConfig(method="vls", num_classes=3, ignore_index=IGNORE, image_size=SIZE,
                         batch_size=2, vls_samples=3)
    stage1 = _stage1_file(tmp_path, config)
    cvae = vls_mod.load_stage1(stage1, 3)
    data = FolderDataset(root, image_size=SIZE, labels=True, num_classes=3, ignore_index=IGNORE)
    out = vls_mod.write_soft_labels(cvae, data, config, stage1, tmp_path / "a")
    first = {n: np.load(out / f"{n}.npy") for n in data.names}
    for name, soft in first.items():
        assert soft.shape == (3, SIZE, SIZE) and soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(0), 1.0, atol=1e-5)
        label = data[data.names.index(name)]["mask"].numpy()
        keep = label != IGNORE  # argmax of (1 - a) onehot + a y_s with a < 1/2 is the label
        np.testing.assert_array_equal(soft.argmax(0)[keep], label[keep])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["samples"] == 3 and manifest["tau"] == 2.0
    assert manifest["stage1"]["sha256"] == vls_mod.file_sha256(stage1)
    # batch size does not change the draws
    other = vls_mod.write_soft_labels(cvae, data, replace(config, batch_size=1), stage1,
                                      tmp_path / "b")
    for name, soft in first.items():
        np.testing.assert_allclose(np.load(other / f"{name}.npy"), soft, atol=1e-6)
    # a matching cache is reused untouched
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    vls_mod.write_soft_labels(cvae, data, config, stage1, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    # another tau recomputes; a = 0 gives the one-hot labels
    vls_mod.write_soft_labels(cvae, data, replace(config, vls_mix=0.0), stage1, out)
    assert json.loads((out / "manifest.json").read_text())["mix"] == 0.0
    label = data[0]["mask"]
    soft = torch.from_numpy(np.load(out / "s0.npy"))
    keep = label != IGNORE
    assert torch.equal(soft.movedim(0, -1)[keep],
                       one_hot_labels(label[None], 3, IGNORE)[0].movedim(0, -1)[keep])


def test_load_stage1_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="--vls-stage1: no such stage-1 checkpoint"):
        vls_mod.load_stage1(tmp_path / "missing.ckpt", 3)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DensecalInputError, match=r"junk\.ckpt: cannot be read"):
        vls_mod.load_stage1(tmp_path / "junk.ckpt", 3)
    stage1 = _stage1_file(tmp_path, TrainConfig(method="vls", num_classes=3))
    with pytest.raises(DensecalInputError, match="trained for 3 classes"):
        vls_mod.load_stage1(stage1, 4)


# ---------------------------------------------------------------------------------------------
# options and bad input


@pytest.mark.parametrize(("change", "fragment"), [
    ({"num_classes": 1}, "method vls needs a multi-class run"),
    ({"vls_samples": 0}, "--vls-samples"), ({"vls_latent": 0}, "--vls-latent"),
    ({"vls_tau": 0.0}, "--vls-tau"), ({"vls_mix": 1.5}, "--vls-mix"),
    ({"vls_stage1_epochs": 0}, "--vls-stage1-epochs"), ({"vls_stage1_lr": 0.0}, "--vls-stage1-lr"),
    ({"vls_variant": "x"}, "--vls-variant"), ({"vls_kl_warmup": -1}, "--vls-kl-warmup"),
    ({"vls_folds": 0}, "--vls-folds"), ({"vls_kl_weight": 0.0}, "--vls-kl-weight"),
    ({"vls_kl_weight": float("nan")}, "--vls-kl-weight")])
def test_bad_vls_options(change: dict[str, object], fragment: str) -> None:
    config = replace(TrainConfig(method="vls", num_classes=3), **change)
    with pytest.raises(DensecalInputError, match=fragment):
        build_objective(config, 1)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vls")
    _write_scenes(root / "train", 6)
    _write_scenes(root / "val", 2, seed=1)
    return root


def _train_args(scenes: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--method", "vls", "--num-classes", "3", "--data", str(scenes / "train"),
            "--val-data", str(scenes / "val"), "--epochs", "1", "--image-size", str(SIZE),
            "--batch-size", "6", "--vls-samples", "2", "--out", str(out), *extra]


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--num-classes", "1"], "--method: method vls needs a multi-class run"),
    (["--vls-stage1", "nowhere.ckpt"], "--vls-stage1: no such stage-1 checkpoint file")])
def test_cli_bad_input_exits_2_one_line(scenes: Path, tmp_path: Path, extra: list[str],
                                        fragment: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(_train_args(scenes, tmp_path / "r", *extra), capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# end to end


@pytest.fixture(scope="module")
def vls_run(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vls"
    try:
        main(_train_args(scenes, out, "--vls-stage1-epochs", "2", "--no-augment"))
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out


def test_cli_run_layout_and_stage1(vls_run: Path) -> None:
    config = json.loads((vls_run / "config.json").read_text())
    assert config["method"] == "vls" and config["vls_stage1_epochs"] == 2
    state = torch.load(vls_mod.stage1_checkpoint(vls_run), weights_only=False)
    assert state["hyper_parameters"]["kind"] == vls_mod.STAGE1_KIND
    assert vls_mod.stage1_finished(vls_mod.stage1_checkpoint(vls_run), 2)
    assert not vls_mod.stage1_finished(vls_mod.stage1_checkpoint(vls_run), 3)
    assert len(list((vls_run / "vls" / "stage1" / "logs").glob("version_*/metrics.csv"))) == 1
    soft = sorted(vls_mod.soft_label_dir(vls_run).glob("*.npy"))
    assert [p.stem for p in soft] == [f"s{i}" for i in range(6)]


def test_cli_checkpoint_loads_and_evaluates_without_cache(vls_run: Path, scenes: Path,
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    import shutil

    copy = tmp_path / "ckpt.ckpt"
    shutil.copy(vls_run / "checkpoints" / "last.ckpt", copy)  # away from the soft-label cache
    module = load_module(copy)
    assert module.config.method == "vls" and module.task == "multiclass"
    assert module(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 3, SIZE, SIZE)
    code, err = _run(["evaluate", "--checkpoint", str(copy), "--data", str(scenes / "val"),
                      "--out", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["dataset"]["n_images"] == 2
    assert 0.0 <= result["calibration"]["ece"] <= 1.0


def test_stage1_reuse_skips_training_and_augments(vls_run: Path, scenes: Path,
                                                 tmp_path: Path) -> None:
    """``vls_stage1`` skips stage 1; the same stage 1 and seed give the same soft labels; stage 2
    trains with augmentation (soft maps moved with the images)."""
    stage1 = vls_mod.stage1_checkpoint(vls_run)
    config = TrainConfig(method="vls", num_classes=3, data=str(scenes / "train"),
                         val_data=str(scenes / "val"), epochs=1, image_size=SIZE, batch_size=6,
                         vls_samples=2, augment=True, vls_stage1=str(stage1))
    out = tmp_path / "reuse"
    train(config, out, progress=False)
    assert not (out / "vls" / "stage1").exists()
    manifest = json.loads((vls_mod.soft_label_dir(out) / "manifest.json").read_text())
    assert manifest["stage1"]["path"] == str(stage1.resolve())
    for path in sorted(vls_mod.soft_label_dir(vls_run).glob("*.npy")):  # same draws
        np.testing.assert_array_equal(np.load(vls_mod.soft_label_dir(out) / path.name),
                                      np.load(path))


def test_resume_continues_the_interrupted_stage(vls_run: Path, scenes: Path,
                                               tmp_path: Path) -> None:
    """A run stopped after its soft labels resumes at stage 2 without redoing stage 1."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(vls_run, run)
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "logs")
    stage1 = vls_mod.stage1_checkpoint(run)
    manifest = vls_mod.soft_label_dir(run) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["stage1"]["path"] = str(stage1.resolve())  # the copy's own stage 1
    manifest.write_text(json.dumps(data, indent=2))
    soft0 = vls_mod.soft_label_dir(run) / "s0.npy"
    stamps = (stage1.stat().st_mtime_ns, soft0.stat().st_mtime_ns)
    base = TrainConfig(method="vls", num_classes=3, epochs=1)
    with pytest.raises(DensecalInputError, match="already holds a training run"):
        train(base, run, progress=False)
    ckpt = train(base, run, resume=True, progress=False)
    assert ckpt.is_file() and load_module(ckpt).config.method == "vls"
    assert (stage1.stat().st_mtime_ns, soft0.stat().st_mtime_ns) == stamps


def test_resume_continues_stage1(vls_run: Path, tmp_path: Path) -> None:
    """A run stopped inside stage 1 resumes it from its checkpoint, then redoes the soft labels
    (new stage-1 weights) and trains stage 2."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(vls_run, run)
    for name in ("checkpoints", "logs", "vls/soft_labels"):
        shutil.rmtree(run / name)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "vls_stage1_epochs": 3}))
    stage1 = vls_mod.stage1_checkpoint(run)
    before = vls_mod.file_sha256(stage1)
    assert not vls_mod.stage1_finished(stage1, 3)
    ckpt = train(TrainConfig(method="vls", num_classes=3, epochs=1), run, resume=True,
                 progress=False)
    assert ckpt.is_file() and vls_mod.stage1_finished(stage1, 3)
    assert len(list((run / "vls" / "stage1" / "logs").glob("version_*"))) == 2  # resumed
    manifest = json.loads((vls_mod.soft_label_dir(run) / "manifest.json").read_text())
    assert manifest["complete"] and manifest["stage1"]["sha256"] == vls_mod.file_sha256(stage1)
    assert manifest["stage1"]["sha256"] != before


# ---------------------------------------------------------------------------------------------
# issue 20: stage-1 optimiser, diagnostics, KL annealing, the bottleneck variant, cross-fitting


def test_cvae_loss_kl_weight_scales_only_the_kl() -> None:
    torch.manual_seed(0)
    net = ConditionalVAE(3)
    image, labels = torch.rand(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    out = net(image, one_hot_labels(labels, 3))
    full, half = cvae_loss(out, image, labels), cvae_loss(out, image, labels, kl_weight=0.5)
    assert torch.equal(full["kl"], half["kl"])
    torch.testing.assert_close(half["loss"], full["ce"] + full["mse"] + 0.5 * full["kl"])


def test_stage1_optimiser_and_kl_schedule() -> None:
    config = TrainConfig(method="vls", num_classes=3, lr=2e-3, lr_decay=0.5, vls_stage1_lr=3e-4,
                         vls_kl_warmup=4)
    module = vls_mod.VLSStage1Module(config.to_dict())
    optimiser = module.configure_optimizers()
    assert isinstance(optimiser, torch.optim.Adam)  # constant: no scheduler from lr_decay
    assert optimiser.param_groups[0]["lr"] == 3e-4
    weights = []
    for epoch in range(6):
        module.trainer = type("T", (), {"current_epoch": epoch})()  # what current_epoch reads
        weights.append(module.kl_weight())
    assert weights == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    plain = vls_mod.VLSStage1Module(TrainConfig(method="vls", num_classes=3).to_dict())
    assert plain.kl_weight() == 1.0 and plain.configure_optimizers().param_groups[0]["lr"] == 1e-4
    elbo = vls_mod.VLSStage1Module(TrainConfig(method="vls", num_classes=3, vls_kl_weight=0.25,
                                               vls_kl_warmup=2).to_dict())
    elbo.trainer = type("T", (), {"current_epoch": 0})()
    assert elbo.kl_weight() == 0.125  # beta times the annealing weight 1/2


def test_bottleneck_variant_routes_everything_through_z() -> None:
    """In the non-paper variant the logits depend on the latent everywhere; the image reaches the
    heads only through the 1/8 bottleneck."""
    from densecal.methods.vls.nets import BottleneckCVAE, make_cvae

    torch.manual_seed(0)
    net = make_cvae(3, variant="bottleneck")
    assert isinstance(net, BottleneckCVAE) and type(make_cvae(3)) is ConditionalVAE
    h = net.features(torch.rand(1, 3, 32, 32))
    assert tuple(h.shape) == (1, 64, 4, 4)
    a, b = net.segment(h, torch.zeros(1, 3)), net.segment(h, torch.full((1, 3), 2.0))
    assert bool(((a - b).abs().sum(1) > 0).all())  # every pixel moves with z
    with pytest.raises(DensecalInputError, match="--vls-variant"):
        make_cvae(3, variant="middle")


def test_fold_blocks_contiguous_and_balanced() -> None:
    assert vls_mod.fold_blocks(5, 2) == [[0, 1, 2], [3, 4]]
    assert vls_mod.fold_blocks(6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert vls_mod.fold_blocks(3, 1) == [[0, 1, 2]]
    with pytest.raises(DensecalInputError, match="--vls-folds"):
        vls_mod.fold_blocks(2, 3)


def _posterior_fixed(net: ConditionalVAE, mu: float) -> ConditionalVAE:
    """Make ``q(z|x,y) = N(mu, 1)`` exactly (zero weights, bias (mu, 0))."""
    linear = net.f_omega[-1]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.bias[:net.latent] = mu
    return net


def test_posterior_diagnostics_hand_computed(tmp_path: Path) -> None:
    from densecal.data import FolderDataset

    _write_scenes(tmp_path / "d", 3)
    config = TrainConfig(method="vls", num_classes=3, image_size=SIZE, batch_size=2,
                         vls_samples=4)
    data = FolderDataset(tmp_path / "d", image_size=SIZE, labels=True, num_classes=3)
    dead = vls_mod.posterior_diagnostics(_posterior_fixed(ConditionalVAE(3), 0.0), data, config)
    assert dead["images"] == 3 and dead["kl_mean"] == 0.0 and dead["sigma_mean"] == 1.0
    assert dead["collapsed"] and dead["sample_spread"] > 0.0  # z still varies the samples
    alive = vls_mod.posterior_diagnostics(_posterior_fixed(ConditionalVAE(3), 2.0), data,
                                          config, [0, 2])
    # KL(N(2, 1) || N(0, 1)) = 2^2 / 2 per dimension, 3 dimensions
    assert alive["images"] == 2 and alive["kl_mean"] == pytest.approx(6.0)
    assert alive["mu_abs_mean"] == pytest.approx(2.0) and not alive["collapsed"]


def test_crossfit_run_one_network_per_fold(scenes: Path, tmp_path: Path) -> None:
    """``vls_folds = 2``: each fold's soft labels come from a network trained on the other fold
    (its manifest names only its own images), diagnostics list both networks, and the run is
    a plain checkpoint."""
    config = TrainConfig(method="vls", num_classes=3, data=str(scenes / "train"),
                         val_data=str(scenes / "val"), epochs=1, image_size=SIZE, batch_size=6,
                         vls_samples=2, augment=False, vls_folds=2, vls_stage1_epochs=1,
                         vls_variant="bottleneck", vls_kl_warmup=2)
    out = tmp_path / "cf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-epoch posterior may well have collapsed
        ckpt = train(config, out, progress=False)
    assert load_module(ckpt).config.vls_folds == 2
    soft = vls_mod.soft_label_dir(out)
    names = [json.loads((soft / f"manifest-fold{k}.json").read_text())["names"]
             for k in range(2)]
    assert names == [["s0", "s1", "s2"], ["s3", "s4", "s5"]]
    report = json.loads(vls_mod.diagnostics_path(out).read_text())
    assert report["folds"] == 2 and report["variant"] == "bottleneck"
    assert [n["stage1"] for n in report["networks"]] == [
        str(vls_mod.stage1_checkpoint(out, k)) for k in range(2)]
    assert [n["images"] for n in report["networks"]] == [3, 3]
    for k in range(2):  # each network saw the other fold only: 3 images, 1 batch, 1 epoch
        state = torch.load(vls_mod.stage1_checkpoint(out, k), weights_only=False)
        assert state["global_step"] == 1


def test_collapse_is_reported_as_a_warning(vls_run: Path) -> None:
    report = json.loads(vls_mod.diagnostics_path(vls_run).read_text())
    (net,) = report["networks"]
    assert report["collapse_kl"] == vls_mod.COLLAPSE_KL
    assert net["collapsed"] == (net["kl_mean"] < vls_mod.COLLAPSE_KL)
    note = vls_mod._collapse_note(net, "", 1.0)
    assert "posterior collapse" in note and "--vls-kl-weight" in note
    assert "--vls-kl-weight" not in vls_mod._collapse_note(net, "", 1 / 4096)  # already tried


def test_cli_crossfit_refuses_a_reused_stage1(vls_run: Path, scenes: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(_train_args(scenes, tmp_path / "r", "--vls-folds", "2", "--vls-stage1",
                                 str(vls_mod.stage1_checkpoint(vls_run))), capsys)
    assert code == 2 and err.strip() == ("densecal: error: --vls-stage1: reuses one stage-1 "
                                         "network; --vls-folds trains one per fold")
    code, err = _run(_train_args(scenes, tmp_path / "r", "--vls-variant", "middle"), capsys)
    assert code == 2 and "--vls-variant" in err and len(err.strip().splitlines()) == 1
