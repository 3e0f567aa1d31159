"""CAR (METHODS.md 4): networks, formulas, discriminator schedule, training run, sampling, CLI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from densecal.errors import DensecalInputError
from densecal.methods import TrainConfig
from densecal.methods.car import CARModule, CAROptions, d_window_active, pixel_ce, train_car
from densecal.methods.car import module as car_mod
from densecal.methods.car.nets import (
    SCALE_EPS,
    CARSSSDiscriminator,
    ImageDiscriminator,
    LatentInjection,
    RefinementGenerator,
    calibration_kl,
    discriminator_accuracy,
    r1_penalty,
)
from densecal.methods.car.sampling import load_car, sample_car, sample_images

SIZE = 16
TINY = {"gen_channels": [4, 8, 8, 8], "disc_channels": [4, 8], "samples": 2, "latent_dim": 3}


def _config(**car: Any) -> TrainConfig:
    return TrainConfig(method="car", num_classes=3, ignore_index=255, image_size=SIZE,
                       extra={"car": {**TINY, **car}})


def _stub(module: CARModule) -> list[torch.optim.Optimizer]:
    """Run training_step without a trainer: real optimisers, plain backward, no logging."""
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts  # type: ignore[method-assign,assignment,return-value]
    module.manual_backward = lambda loss: loss.backward()  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    return opts


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 3, (2, SIZE, SIZE), generator=g)
    mask[0, 0, :4] = 255
    return {"image": torch.rand(2, 3, SIZE, SIZE, generator=g), "mask": mask}


def _params(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()]).clone()


# ---------------------------------------------------------------------------------- networks


def test_network_shapes() -> None:
    g = RefinementGenerator(3, latent_dim=4, channels=(4, 8, 8, 8))
    x, f = torch.rand(2, 3, 24, 16), torch.full((2, 3, 24, 16), 1 / 3)
    out = g(x, f, torch.randn(2, 4))
    assert out.shape == (2, 3, 24, 16)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 24, 16))
    d = ImageDiscriminator(3, channels=(4, 8))
    assert d(x, out).shape == (2,)


def test_carsss_discriminator_form() -> None:
    """CARSSS's PixelDiscriminator layout at 48 px: the feature map after 3 widening layers is
    48 / 8 - 2 = 4 per side, flattened into one linear layer of width * 16 inputs; and, unlike
    the pooled small D, its logit depends on where the label map puts a class."""
    d = CARSSSDiscriminator(3, 48, width=8)
    assert d.fc.in_features == 8 * 4 * 4
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs[:3]] == [(3, 3)] * 3
    assert [c.stride for c in convs[3:]] == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    assert [c.out_channels for c in convs] == [8, 8, 8, 8, 16, 32, 64, 8]
    x = torch.rand(2, 3, 48, 48)
    y = torch.zeros(2, 3, 48, 48)
    y[:, 0] = 1.0
    moved = y.clone()
    y[0, :, :8, :8] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]
    moved[0, :, -8:, -8:] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]
    assert d(x, y).shape == (2,)
    assert not torch.allclose(d(x, y)[0], d(x, moved)[0])
    with pytest.raises(DensecalInputError, match="image_size"):
        CARSSSDiscriminator(3, 16)


def test_car_module_picks_the_discriminator() -> None:
    config = TrainConfig(method="car", num_classes=3, image_size=48,
                         extra={"car": {"discriminator": "carsss", "disc_width": 8}})
    assert isinstance(CARModule(config.to_dict()).net_d, CARSSSDiscriminator)
    config.extra["car"] = {}
    assert isinstance(CARModule(config.to_dict()).net_d, ImageDiscriminator)


def test_latent_injection_identity_and_dependence_on_z() -> None:
    torch.manual_seed(0)
    inj = LatentInjection(4, 3)
    h = torch.randn(2, 3, 5, 5)
    z1, z2 = torch.randn(2, 4), torch.randn(2, 4)
    assert not torch.allclose(inj(h, z1), inj(h, z2))
    # hand case: r(z) = 1 per channel, s(z) = 2 -> (h + 1) * (2 + 1e-5)
    with torch.no_grad():
        inj.shift.weight.zero_()
        inj.shift.bias.fill_(1.0)
        inj.scale.weight.zero_()
        inj.scale.bias.fill_(2.0)
    torch.testing.assert_close(inj(h, z1), (h + 1) * (2 + SCALE_EPS))
    # r = 0, s = 1: identity up to the 1e-5 of the scale
    with torch.no_grad():
        inj.shift.bias.zero_()
        inj.scale.bias.fill_(1.0)
    torch.testing.assert_close(inj(h, z1), h * (1 + SCALE_EPS), rtol=0, atol=0)
    torch.testing.assert_close(inj(h, z1), inj(h, z2), rtol=0, atol=0)


def test_generator_samples_depend_on_z() -> None:
    torch.manual_seed(0)
    g = RefinementGenerator(3, latent_dim=4, channels=(4, 8, 8, 8))
    x, f = torch.rand(1, 3, 16, 16), torch.full((1, 3, 16, 16), 1 / 3)
    assert (g(x, f, torch.randn(1, 4)) - g(x, f, torch.randn(1, 4))).abs().max() > 1e-4


def test_residual_generator_refines_log_f() -> None:
    """residual=True: logits = head(h) + log max(F, 1e-6); a zero head returns F itself."""
    torch.manual_seed(0)
    g = RefinementGenerator(3, latent_dim=4, channels=(4, 8, 8, 8), residual=True)
    x = torch.rand(2, 3, 16, 16)
    f = torch.softmax(3 * torch.randn(2, 3, 16, 16), dim=1)
    f[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # floored at 1e-6 before the log
    plain = RefinementGenerator(3, latent_dim=4, channels=(4, 8, 8, 8))
    plain.load_state_dict(g.state_dict())
    z = torch.randn(2, 4)
    torch.testing.assert_close(g.logits(x, f, z),
                               plain.logits(x, f, z) + f.clamp_min(1e-6).log())
    with torch.no_grad():
        g.head.weight.zero_()
        g.head.bias.zero_()
    expected = f.clamp_min(1e-6) / f.clamp_min(1e-6).sum(1, keepdim=True)
    torch.testing.assert_close(g(x, f, z), expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- formulas


def _kl_ref(g: list[float], f: list[float]) -> float:
    gc = [min(max(v, 1e-3), 1 - 1e-3) for v in g]
    fc = [min(max(v, 1e-3), 1 - 1e-3) for v in f]
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(gc, fc, strict=True))


def test_calibration_kl_hand_values() -> None:
    # pixel 0: G = (1/2, 1/2), F = (1/4, 3/4); pixel 1: G = (1, 0) clamped, F = (1/2, 1/2)
    g = torch.tensor([[0.5, 1.0], [0.5, 0.0]], dtype=torch.float64).view(1, 2, 1, 2)
    f = torch.tensor([[0.25, 0.5], [0.75, 0.5]], dtype=torch.float64).view(1, 2, 1, 2)
    k0 = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert _kl_ref([0.5, 0.5], [0.25, 0.75]) == pytest.approx(k0, abs=1e-15)
    k1 = _kl_ref([1.0, 0.0], [0.5, 0.5])
    assert float(calibration_kl(g, f)) == pytest.approx((k0 + k1) / 2, abs=1e-12)
    valid = torch.tensor([[[True, False]]])
    assert float(calibration_kl(g, f, valid)) == pytest.approx(k0, abs=1e-12)
    assert float(calibration_kl(g, g)) == 0.0
    assert float(calibration_kl(g, f, torch.zeros(1, 1, 2, dtype=torch.bool))) == 0.0


def test_calibration_kl_random_vs_float64_reference() -> None:
    torch.manual_seed(1)
    g = torch.softmax(torch.randn(2, 4, 3, 3), 1)
    f = torch.softmax(torch.randn(2, 4, 3, 3), 1)
    gd, fd = g.double().clamp(1e-3, 1 - 1e-3), f.double().clamp(1e-3, 1 - 1e-3)
    ref = (gd * (gd.log() - fd.log())).sum(1).mean()
    assert float(calibration_kl(g, f)) == pytest.approx(float(ref), rel=1e-5)


def test_r1_penalty_matches_linear_discriminator() -> None:
    w = torch.tensor([1.0, -2.0, 0.5])
    v = torch.tensor([3.0, 0.25])
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.randn(4, 2, requires_grad=True)
    logits = x @ w + y @ v  # gradient w.r.t. (x, y) is (w, v) for every image
    expected = float(w.pow(2).sum() + v.pow(2).sum())  # 1 + 4 + 0.25 + 9 + 0.0625
    assert expected == 14.3125
    assert float(r1_penalty(logits, [x, y])) == pytest.approx(expected, abs=1e-6)
    # against autograd per image on a nonlinear D: mean of squared gradient norms
    d = ImageDiscriminator(2, channels=(4,))
    img = torch.rand(3, 3, 8, 8, requires_grad=True)
    lab = torch.rand(3, 2, 8, 8, requires_grad=True)
    ref = 0.0
    for i in range(3):
        gi, gl = torch.autograd.grad(d(img[i:i + 1], lab[i:i + 1]).sum(), [img, lab])
        ref += float(gi.pow(2).sum() + gl.pow(2).sum()) / 3
    assert float(r1_penalty(d(img, lab), [img, lab]).detach()) == pytest.approx(ref, rel=1e-5)


def test_discriminator_accuracy_and_pixel_ce() -> None:
    assert discriminator_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-2.0, -3.0])) == 0.75
    probs = torch.softmax(torch.randn(2, 3, 4, 4, dtype=torch.float64), 1)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[1, 0] = 255
    ref = torch.nn.functional.nll_loss(probs.log(), labels, ignore_index=255)
    assert float(pixel_ce(probs, labels, labels != 255)) == pytest.approx(float(ref), abs=1e-12)


# ---------------------------------------------------------------------------------- schedule


def test_d_window() -> None:
    active = [i for i in range(600) if d_window_active(i, 50, 250)]
    assert active == [*range(50), *range(250, 300), *range(500, 550)]


def test_discriminator_trains_only_in_window() -> None:
    torch.manual_seed(0)
    module = CARModule(_config(d_active=1, d_period=2, d_max_accuracy=1.01).to_dict())
    _stub(module)
    changed = []
    for i in range(3):
        before = _params(module.net_d)
        g_before = _params(module.net_g)
        module.training_step(_batch(), i)
        changed.append(not torch.equal(before, _params(module.net_d)))
        assert not torch.equal(g_before, _params(module.net_g))  # G trains every step
    assert changed == [True, False, True]
    assert int(module.iteration) == 3


@pytest.mark.parametrize(("accuracy", "trains"), [(0.85, False), (0.84, True)])
def test_discriminator_skips_when_accurate(monkeypatch: pytest.MonkeyPatch, accuracy: float,
                                           trains: bool) -> None:
    torch.manual_seed(0)
    monkeypatch.setattr(car_mod, "discriminator_accuracy", lambda *a: accuracy)
    module = CARModule(_config().to_dict())
    _stub(module)
    before = _params(module.net_d)
    module.training_step(_batch(), 0)
    assert (not torch.equal(before, _params(module.net_d))) is trains


def test_cal_weight_zero_ablation_ignores_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """With cal_weight = 0 the generator step does not depend on L_cal at all."""
    results = []
    for poison in (False, True):
        torch.manual_seed(0)
        if poison:
            monkeypatch.setattr(car_mod, "calibration_kl", lambda *a: torch.tensor(float("nan")))
        module = CARModule(_config(cal_weight=0.0, d_active=0).to_dict())
        _stub(module)
        torch.manual_seed(1)
        module.training_step(_batch(), 0)
        results.append(_params(module.net_g))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_frozen_calibration_net_is_not_trained() -> None:
    torch.manual_seed(0)
    module = CARModule(_config(calibration_checkpoint="unused.ckpt",
                               calibration_model="unet-small").to_dict())
    opts = _stub(module)
    assert len(opts) == 2  # G and D only
    assert not any(p.requires_grad for p in module.net_f.parameters())
    module.train()
    assert not module.net_f.training
    before = _params(module.net_f)
    module.training_step(_batch(), 0)
    assert torch.equal(before, _params(module.net_f))


def test_bad_options() -> None:
    with pytest.raises(DensecalInputError, match=r"car\.samples"):
        CAROptions.from_dict({"samples": 0})
    with pytest.raises(DensecalInputError, match=r"car\.d_active"):
        CAROptions.from_dict({"d_active": 300})
    with pytest.raises(DensecalInputError, match="unknown keys bogus"):
        CAROptions.from_dict({"bogus": 1})
    with pytest.raises(DensecalInputError, match=r"car\.discriminator"):
        CAROptions.from_dict({"discriminator": "patch"})
    with pytest.raises(DensecalInputError, match="--num-classes"):
        CARModule(TrainConfig(method="car", num_classes=1).to_dict())


# ---------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("car_data")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[2:8, 2:8] = 1
        label[9:14, 9:14] = 2 if i % 2 else 1  # ambiguous square: class 1 or 2
        label[0, 0] = 255
        image = (np.minimum(label, 3) * 70 + rng.integers(0, 20, (SIZE, SIZE))).astype(np.uint8)
        Image.fromarray(np.repeat(image[:, :, None], 3, 2)).save(root / "images" / f"s{i}.png")
        Image.fromarray(label).save(root / "masks" / f"s{i}.png")
    return root


@pytest.fixture(scope="module")
def car_run(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "car"
    config = _config(d_active=1, d_period=2)
    config = TrainConfig.from_dict({**config.to_dict(), "data": str(scenes), "epochs": 2,
                                    "batch_size": 2, "val_fraction": 0.34, "augment": False})
    ckpt = train_car(config, run_dir, progress=False)
    assert ckpt == run_dir / "checkpoints" / "last.ckpt"
    return run_dir


def test_training_writes_checkpoint_and_resumes(car_run: Path, scenes: Path) -> None:
    ckpt = car_run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    first_epoch = state["epoch"]
    assert int(state["state_dict"]["iteration"]) == 4  # 2 epochs x 2 batches
    assert state["hyper_parameters"]["config"]["method"] == "car"
    with pytest.raises(DensecalInputError, match="already holds a training run"):
        train_car(_config(), car_run, progress=False)
    resumed = TrainConfig.from_dict({**_config().to_dict(), "epochs": 3})
    train_car(resumed, car_run, resume=True, progress=False)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["epoch"] == first_epoch + 1 and int(state["state_dict"]["iteration"]) == 6
    logs = sorted(car_run.glob("logs/version_*/metrics.csv"))
    assert len(logs) == 2 and "val_loss_cal" in logs[0].read_text()


def test_sampling(car_run: Path, scenes: Path) -> None:
    module = load_car(car_run / "checkpoints" / "last.ckpt")
    x = torch.rand(3, SIZE, SIZE)
    f, samples = sample_car(module, x, 4)
    assert f.shape == (3, SIZE, SIZE) and samples.shape == (4, 3, SIZE, SIZE)
    torch.testing.assert_close(samples.sum(1), torch.ones(4, SIZE, SIZE))
    assert (samples[0] - samples[1]).abs().max() > 1e-5
    fb, sb = sample_car(module, x[None].repeat(2, 1, 1, 1), 5)
    assert fb.shape == (2, 3, SIZE, SIZE) and sb.shape == (2, 5, 3, SIZE, SIZE)
    torch.testing.assert_close(fb[0], f)
    image = np.zeros((20, 12, 3), np.uint8)
    ((fi, si),) = list(sample_images(module, [image], 3))
    assert fi.shape == (3, 20, 12) and si.shape == (3, 3, 20, 12)
    with pytest.raises(DensecalInputError, match=r"^n: must be a positive integer"):
        sample_car(module, x, 0)


def test_load_car_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="no such checkpoint"):
        load_car(tmp_path / "missing.ckpt")
    torch.save({"hyper_parameters": {"config": {"method": "ce"}}}, tmp_path / "x.ckpt")
    with pytest.raises(DensecalInputError, match=r"x\.ckpt: was trained with method ce, not a CAR "
                                                 r"checkpoint; use densecal predict"):
        load_car(tmp_path / "x.ckpt")


def test_sample_cli(car_run: Path, scenes: Path, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from densecal.cli.sample import sample

    app = typer.Typer()
    app.command()(sample)
    app.command("other")(lambda: None)  # a second command keeps "sample" as a sub-command
    out = tmp_path / "out"
    args = ["sample", "--checkpoint", str(car_run / "checkpoints" / "last.ckpt"),
            "--data", str(scenes), "--n", "3", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("s*")) == [f"s{i}" for i in range(6)]
    f = np.load(out / "s0" / "f.npy")
    samples = np.load(out / "s0" / "samples.npy")
    assert f.dtype == np.float32 and f.shape == (3, SIZE, SIZE)
    assert samples.dtype == np.float16 and samples.shape == (3, 3, SIZE, SIZE)
    assert np.asarray(Image.open(out / "s0" / "samples.png")).shape == (SIZE, 3 * SIZE)
    assert set(np.unique(np.asarray(Image.open(out / "s0" / "f.png")))) <= {0, 1, 2}
    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "lab"), "--labels"])
    assert result.exit_code == 0, result.output
    maps = np.load(tmp_path / "lab" / "s0" / "samples.npy")
    assert maps.dtype == np.uint8 and maps.shape == (3, SIZE, SIZE)


# ---------------------------------------------------------------------------------- oracle F


def test_oracle_probs_hand_values() -> None:
    config = TrainConfig(method="car", num_classes=5, image_size=16,
                         extra={"car": {"oracle": True,
                                        "oracle_flips": [[1, 3, 0.25], [2, 4, 0.5]]}})
    module = CARModule(config.to_dict())
    base = torch.tensor([[[0, 1], [2, 3]]])
    probs = module.oracle_probs(base)[0]
    expected = torch.zeros(5, 2, 2, dtype=torch.float64)
    expected[0, 0, 0] = 1.0
    expected[1, 0, 1], expected[3, 0, 1] = 0.75, 0.25  # class 1 flips to 3 with p = 1/4
    expected[2, 1, 0], expected[4, 1, 0] = 0.5, 0.5
    expected[3, 1, 1] = 1.0  # a twin in the base map stays itself
    assert torch.equal(probs, expected)
    with pytest.raises(DensecalInputError, match="base"):
        module.calibration_probs(torch.rand(1, 3, 2, 2))
    assert module.car.frozen and not any(p.requires_grad for p in module.net_f.parameters())


def test_oracle_run_end_to_end(tmp_path: Path) -> None:
    """CAR with the oracle F on an ambiguity dataset with base masks: the flip table is read
    from ambiguity.json and saved with the run, training reads the batches' base maps, and
    ``densecal sample`` gives the oracle's F for each test image."""
    from densecal.cli.main import main
    from densecal.data.readers import read_label
    from densecal.data.synthetic.ambiguity import (
        DEFAULT_SPEC,
        AmbiguityConfig,
        write_ambiguity_dataset,
    )

    folders = write_ambiguity_dataset(tmp_path / "amb", AmbiguityConfig(
        size=24, n_train=4, n_val=2, n_test=2, seed=0))
    config = TrainConfig(method="car", num_classes=16, data=str(folders["train"]),
                         val_data=str(folders["val"]), image_size=24, epochs=1, batch_size=2,
                         augment=False, extra={"car": {"oracle": True, "samples": 2,
                                                       "gen_channels": [4, 4, 8, 8]}})
    ckpt = train_car(config, tmp_path / "run", progress=False)
    saved = CAROptions.from_dict(load_car(ckpt).config.extra["car"])
    assert saved.oracle_flips == tuple((c, t, p) for c, (t, p) in DEFAULT_SPEC.flips.items())
    main(["sample", "--checkpoint", str(ckpt), "--data", str(folders["test"]), "--n", "2",
          "--out", str(tmp_path / "samples")])
    name = sorted((folders["test"] / "masks").glob("*.png"))[0]
    f = np.load(tmp_path / "samples" / name.stem / "f.npy")
    module = load_car(ckpt)
    expected = module.oracle_probs(torch.from_numpy(read_label(name).astype(np.int64))[None])
    np.testing.assert_allclose(f, expected[0].numpy(), atol=1e-6)


def test_oracle_needs_an_ambiguity_dataset(scenes: Path, tmp_path: Path) -> None:
    config = TrainConfig(method="car", num_classes=3, data=str(scenes), image_size=SIZE,
                         epochs=1, extra={"car": {"oracle": True}})
    with pytest.raises(DensecalInputError, match=r"car\.oracle"):
        train_car(config, tmp_path / "run", progress=False)


def test_base_maps_follow_the_same_augmentation(tmp_path: Path) -> None:
    from densecal.data.folder import FolderDataset
    from densecal.data.synthetic.ambiguity import (
        DEFAULT_SPEC,
        AmbiguityConfig,
        FlipTransform,
        write_ambiguity_dataset,
    )

    folders = write_ambiguity_dataset(tmp_path / "amb", AmbiguityConfig(
        size=32, n_train=6, n_val=1, n_test=1, seed=2))
    dataset = FolderDataset(folders["train"], image_size=32, labels=True, num_classes=16,
                            augment=True, label_transform=FlipTransform(DEFAULT_SPEC))
    twins = {c: t for c, (t, _) in DEFAULT_SPEC.flips.items()}
    for seed in range(12):
        torch.manual_seed(seed)
        item = dataset[seed % 6]
        mask, base = item["mask"], item["base"]
        same = mask == base
        flipped = torch.zeros_like(same)
        for c, t in twins.items():
            flipped |= (base == c) & (mask == t)
        assert bool((same | flipped).all())  # the same geometry, only whole-class flips
