"""The CUDA path gives the CPU answer: metrics, losses, temperature scaling, training, Grad-CAM.

Every test runs one computation twice, on the ``device`` fixture (CUDA) and on the CPU, from
the same inputs, and compares: counts exactly; float64 sums and metrics to ``rtol=RTOL``,
``atol=ATOL`` (summation order differs: CUDA adds with atomics, the CPU metric may use the fused
numba kernel, see ``densecal.metrics.functional._calibration.numba_kernel``); float32
quantities to the tolerance stated at each test.

The inputs keep every confidence at least ``MARGIN`` away from each bin edge (``k / BINS``) and
fine-histogram edge (``j / FINE``), so that last-ulp differences of ``exp`` / ``sigmoid`` /
``softmax`` between devices cannot move a pixel across an edge and the bin counts must agree
exactly. Probability-input cases also hold values exactly ON the edges, where both devices do the
same IEEE arithmetic (no transcendental function) and must put them in the same bins.

Running:

* ``pytest tests/test_gpu.py`` on a machine with CUDA runs them; without CUDA every test is
  skipped ("needs a CUDA device", the ``gpu`` marker hook of ``tests/conftest.py``).
* ``DENSECAL_TEST_GPU_AS=cpu pytest -m gpu tests/test_gpu.py`` runs them on a CPU-only machine
  with the CPU standing in for the GPU (the ``device`` fixture returns ``cpu``), which checks
  that the tests themselves work. It proves nothing about CUDA; the metric tests then still
  compare two code paths, since the stand-in side runs with the fused numba kernel disabled
  (``DENSECAL_FUSED=0``), i.e. the torch path CUDA takes, against the CPU default.
* ``python benchmarks/gpu_report.py`` runs them (and the suite and benchmarks) on a GPU machine
  and records the figures in ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import Tensor

from densecal.losses import (
    AdaptivePerturbation,
    EntropyPenaltyLoss,
    FocalLoss,
    LabelSmoothingLoss,
    MbLSLoss,
    SCBCELoss,
    SVLSLoss,
    per_image_statistics,
)
from densecal.metrics import PixelCalibration
from densecal.metrics.functional._calibration import numba_kernel as _fused
from densecal.posthoc import FitResult, TemperatureScaler

pytestmark = pytest.mark.gpu

BINS = 10
FINE = 4096
MARGIN = 2e-5  # >> 1 ulp of float32 around [0, 1]; << a fine bin (2.4e-4)
RTOL, ATOL = 1e-10, 1e-12  # float64 sums in another order (relative ~1e-13 at most here)
IGNORE = 255


@pytest.fixture(scope="module")
def device() -> torch.device:
    """``cuda``; ``cpu`` when ``DENSECAL_TEST_GPU_AS=cpu`` (the CPU stands in for the GPU)."""
    if os.environ.get("DENSECAL_TEST_GPU_AS") == "cpu":
        return torch.device("cpu")
    assert torch.cuda.is_available()  # the conftest hook skips gpu tests otherwise
    return torch.device("cuda")


# --------------------------------------------------------------------------- inputs


def _clear_of_edges(q: Tensor) -> Tensor:
    """True where float64 ``q`` lies more than MARGIN from every k/BINS and j/FINE."""

    def distance(grid: int) -> Tensor:
        x = q * grid
        return (x - x.round()).abs() / grid

    return (distance(FINE) > MARGIN) & (distance(BINS) > MARGIN)


def _redraw(values: Tensor, bad: Callable[[Tensor], Tensor],
            draw: Callable[[int], Tensor]) -> Tensor:
    """Replace the rows of ``values`` flagged by ``bad`` with fresh draws until none is left."""
    for _ in range(200):
        flags = bad(values)
        if not flags.any():
            return values
        values[flags] = draw(int(flags.sum()))
    raise AssertionError("could not draw values clear of the bin edges")


def binary_probs(shape: tuple[int, ...], seed: int) -> Tensor:
    """float64 probabilities in (0, 1), each clear of the bin edges."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.rand(shape, generator=gen, dtype=torch.float64).reshape(-1)
    q = _redraw(q, lambda v: ~_clear_of_edges(v),
                lambda k: torch.rand(k, generator=gen, dtype=torch.float64))
    return q.reshape(shape)


def edge_values(dtype: torch.dtype) -> Tensor:
    """Probabilities exactly on edges in ``dtype``: every k/BINS (0 and 1 included), a few
    j/FINE, and the threshold 0.5."""
    values = [k / BINS for k in range(BINS + 1)] + [j / FINE for j in (1, 7, 2048, 3000, 4095)]
    return torch.tensor(values, dtype=dtype)


def hard_labels(q: Tensor, seed: int, ignore: float = 0.0) -> Tensor:
    """int64 labels ~ Bernoulli(q); a fraction ``ignore`` of them set to IGNORE."""
    gen = torch.Generator().manual_seed(seed)
    y = (torch.rand(q.shape, generator=gen, dtype=torch.float64) < q).long()
    y[torch.rand(q.shape, generator=gen) < ignore] = IGNORE
    return y


def class_probs(n: int, c: int, side: int, seed: int) -> Tensor:
    """float64 softmax maps ``(n, c, side, side)`` whose every p_k is clear of the edges."""
    gen = torch.Generator().manual_seed(seed)
    z = 2.0 * torch.randn(n * side * side, c, generator=gen, dtype=torch.float64)
    z = _redraw(z, lambda v: ~_clear_of_edges(v.softmax(1)).all(1),
                lambda k: 2.0 * torch.randn(k, c, generator=gen, dtype=torch.float64))
    return z.softmax(1).reshape(n, side, side, c).permute(0, 3, 1, 2).contiguous()


def class_labels(probs: Tensor, seed: int, ignore: float = 0.0) -> Tensor:
    """int64 class-index maps ``(n, side, side)`` drawn from ``probs``; some set to IGNORE."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = probs.shape
    flat = probs.permute(0, 2, 3, 1).reshape(-1, c)
    y = torch.multinomial(flat, 1, generator=gen).reshape(n, h, w)
    y[torch.rand(y.shape, generator=gen) < ignore] = IGNORE
    return y


def soft_class_targets(shape: tuple[int, int, int, int], seed: int) -> Tensor:
    """float64 probability maps ``(n, c, h, w)`` summing to 1 over c."""
    gen = torch.Generator().manual_seed(seed)
    return (1.5 * torch.randn(shape, generator=gen, dtype=torch.float64)).softmax(1)


# --------------------------------------------------------------------------- comparisons


def assert_counts_and_sums(got: dict[str, Tensor], want: dict[str, Tensor]) -> None:
    """Entries named ``*count*`` exactly equal, the others close (NaN where the other is)."""
    assert set(got) == set(want)
    for key, value in want.items():
        other = got[key].cpu()
        assert other.dtype == value.dtype and other.shape == value.shape, key
        if "count" in key:
            assert torch.equal(other, value), key
        else:
            torch.testing.assert_close(other, value, rtol=RTOL, atol=ATOL, equal_nan=True,
                                       msg=lambda m, k=key: f"{k}: {m}")


@contextlib.contextmanager
def torch_path() -> Iterator[None]:
    """Binary updates inside take the torch path (``DENSECAL_FUSED=0``), as on CUDA."""
    with mock.patch.dict(os.environ, {"DENSECAL_FUSED": "0"}):
        _fused._kernel.cache_clear()
        try:
            yield
        finally:
            _fused._kernel.cache_clear()


def run_metric(preds: Tensor, target: Tensor, on: torch.device, *, unfused: bool = False,
               **options: object) -> PixelCalibration:
    """A metric on ``on`` fed ``preds, target`` in two batches (``unfused``: torch path)."""
    metric = PixelCalibration(**options).to(on)  # type: ignore[arg-type]
    half = preds.shape[0] // 2
    with torch_path() if unfused else contextlib.nullcontext():
        for part in (slice(0, half), slice(half, None)):
            metric.update(preds[part].to(on), target[part].to(on))
    return metric


def compare_metric(preds: Tensor, target: Tensor, device: torch.device,
                   **options: object) -> dict[str, Tensor]:
    """Run the metric on the device and on the CPU; assert states, metrics and reliability
    tables agree; return the CPU metrics."""
    options = {"n_bins": BINS, "fine_bins": FINE, **options}
    cpu = run_metric(preds, target, torch.device("cpu"), **options)
    # CUDA never runs the fused CPU kernel; the CPU standing in for it does not either
    dev = run_metric(preds, target, device, unfused=device.type == "cpu", **options)
    assert dev.bin_count.device.type == device.type
    assert_counts_and_sums(dev.metric_state, cpu.metric_state)
    want = cpu.compute()
    assert_counts_and_sums(dev.compute(), want)
    assert_counts_and_sums(dev.reliability(), cpu.reliability())
    if options.get("task", "binary") != "binary":
        assert_counts_and_sums(dev.reliability_classwise(), cpu.reliability_classwise())
    assert cpu.count.item() > 0
    return want


# --------------------------------------------------------------------------- metrics

BINARY_CASES = {
    "probs32-top-pooled": dict(dtype=torch.float32),
    "probs32-top-ignore": dict(dtype=torch.float32, ignore_index=IGNORE),
    "probs64-positive-per-image-ignore": dict(dtype=torch.float64, confidence="positive",
                                              aggregate="per-image", ignore_index=IGNORE),
    "probs32-soft-per-image": dict(dtype=torch.float32, soft=True, target_type="soft",
                                   aggregate="per-image"),
    "probs32-strict-positive": dict(dtype=torch.float32, soft=True, target_type="strict",
                                    confidence="positive"),
    "uint8-top": dict(dtype=torch.uint8),
    "logits32-top-ignore": dict(dtype=torch.float32, input="logits", ignore_index=IGNORE),
    "logits64-positive-per-image": dict(dtype=torch.float64, input="logits",
                                        confidence="positive", aggregate="per-image"),
}  # fmt: skip


@pytest.mark.parametrize("case", BINARY_CASES, ids=list(BINARY_CASES))
def test_binary_metric_matches_cpu(case: str, device: torch.device) -> None:
    opts = dict(BINARY_CASES[case])
    dtype = opts.pop("dtype")
    soft = opts.pop("soft", False)
    q = binary_probs((4, 16, 16), seed=1)
    if opts.get("input") != "logits" and dtype != torch.uint8:
        q.view(4, -1)[1, : len(edge_values(dtype))] = edge_values(dtype).double()
    target = hard_labels(q, seed=2, ignore=0.1 if "ignore_index" in opts else 0.0)
    if soft:  # soft labels, with exact 0/1 on a third of the pixels (strict counts only those)
        gen = torch.Generator().manual_seed(3)
        target = torch.where(torch.rand(q.shape, generator=gen) < 0.67,
                             torch.rand(q.shape, generator=gen, dtype=torch.float64),
                             target.double()).to(torch.float32)
    if dtype == torch.uint8:
        preds = (q * 255).round().to(torch.uint8)  # read as v / 255: the edge cases of 8 bits
    elif opts.get("input") == "logits":
        preds = torch.logit(q).to(dtype)
    else:
        preds = q.to(dtype)
    want = compare_metric(preds, target, device, **opts)
    assert all(math.isfinite(v.item()) for v in want.values())


@pytest.mark.parametrize("case", ["index-ignore-fg", "soft", "logits-per-image", "one-hot"])
def test_multiclass_metric_matches_cpu(case: str, device: torch.device) -> None:
    c = 4
    p = class_probs(4, c, 8, seed=11)
    opts: dict[str, object] = {"task": "multiclass", "num_classes": c}
    preds: Tensor = p
    if case == "index-ignore-fg":
        target = class_labels(p, seed=12, ignore=0.1)
        opts.update(ignore_index=IGNORE, include_background=False)
    elif case == "soft":
        target = soft_class_targets(tuple(p.shape), seed=13)  # type: ignore[arg-type]
        opts.update(target_type="soft")
    elif case == "logits-per-image":
        preds = (p.log() + 0.25).float()  # softmax (float64, on the device) gives p back
        target = class_labels(p, seed=14)
        opts.update(input="logits", aggregate="per-image")
    else:
        labels = class_labels(p, seed=15)
        target = torch.nn.functional.one_hot(labels, c).permute(0, 3, 1, 2).to(torch.uint8)
    want = compare_metric(preds, target, device, **opts)
    assert want["ece_class"].shape == (c,)


@pytest.mark.parametrize("case", ["probs-hard", "logits-ignore-per-image"])
def test_multilabel_metric_matches_cpu(case: str, device: torch.device) -> None:
    c = 3
    q = binary_probs((4, c, 8, 8), seed=21)
    target = hard_labels(q, seed=22, ignore=0.1 if "ignore" in case else 0.0).double()
    opts: dict[str, object] = {"task": "multilabel", "num_classes": c}
    preds = q.float()
    if case.startswith("logits"):
        preds = torch.logit(q).float()
        opts.update(input="logits", ignore_index=IGNORE, aggregate="per-image")
    want = compare_metric(preds, target, device, **opts)
    assert want["ece_class"].shape == (c,)


# --------------------------------------------------------------------------- losses

LossFn = Callable[[Tensor, Tensor], Tensor]


def _scbce_stochastic(logits: Tensor, target: Tensor) -> Tensor:
    # one coin per image and DM noise per pixel from a CPU generator: same draws on any device
    gen = torch.Generator().manual_seed(5)
    loss = SCBCELoss.slp(0.5, technique="moderation_noise", ignore_index=IGNORE)
    return loss(logits, target, generator=gen)


BINARY_LOSSES: dict[str, LossFn] = {
    "bce": SCBCELoss.bce(),
    "binary-ls": SCBCELoss.label_smoothing(0.1),
    "slp-dm-ignore": _scbce_stochastic,
    "focal": FocalLoss(3.0, task="binary", ignore_index=IGNORE),
    "ls": LabelSmoothingLoss(0.1, task="binary"),
    "ecp": EntropyPenaltyLoss(0.1, task="binary", ignore_index=IGNORE),
    "mbls": MbLSLoss(4.0, 0.1, task="binary"),
    "svls": SVLSLoss(3, 1.0, task="binary", ignore_index=IGNORE),
}
CLASS_LOSSES: dict[str, LossFn] = {
    "focal": FocalLoss(3.0, task="multiclass", ignore_index=IGNORE),
    "ls": LabelSmoothingLoss(0.1, task="multiclass", ignore_index=IGNORE),
    "ecp": EntropyPenaltyLoss(0.1, task="multiclass"),
    "mbls": MbLSLoss(2.0, 0.1, task="multiclass", ignore_index=IGNORE),
    "svls": SVLSLoss(3, 1.0, task="multiclass", ignore_index=IGNORE),
}


def loss_and_grad(fn: LossFn, logits: Tensor, target: Tensor,
                  on: torch.device) -> tuple[Tensor, Tensor]:
    """Loss value and d loss / d logits, computed on ``on``, returned on the CPU."""
    x = logits.to(on).requires_grad_(True)
    loss = fn(x, target.to(on))
    assert loss.device.type == on.type
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach().cpu(), grad.cpu()


def assert_loss_matches(fn: LossFn, logits: Tensor, target: Tensor, device: torch.device) -> None:
    value, grad = loss_and_grad(fn, logits, target, torch.device("cpu"))
    got_value, got_grad = loss_and_grad(fn, logits, target, device)
    assert math.isfinite(value.item()) and grad.abs().sum() > 0
    # float64 everywhere: only libm-vs-CUDA ulps of exp/log and summation order differ
    torch.testing.assert_close(got_value, value, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(got_grad, grad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("name", BINARY_LOSSES, ids=list(BINARY_LOSSES))
def test_binary_loss_and_gradient_match_cpu(name: str, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(31)
    logits = 3.0 * torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    target = torch.rand(4, 1, 8, 8, generator=gen, dtype=torch.float64)  # soft labels
    target[:, :, :4] = (target[:, :, :4] > 0.5).double()
    if getattr(BINARY_LOSSES[name], "ignore_index", None) == IGNORE or name.endswith("ignore"):
        target[torch.rand(target.shape, generator=gen) < 0.15] = IGNORE
    assert_loss_matches(BINARY_LOSSES[name], logits, target, device)


@pytest.mark.parametrize("name", CLASS_LOSSES, ids=list(CLASS_LOSSES))
def test_multiclass_loss_and_gradient_match_cpu(name: str, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(32)
    logits = 3.0 * torch.randn(3, 4, 8, 8, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 8, 8), generator=gen)
    if getattr(CLASS_LOSSES[name], "ignore_index", None) == IGNORE:
        target[torch.rand(target.shape, generator=gen) < 0.15] = IGNORE
    assert_loss_matches(CLASS_LOSSES[name], logits, target, device)


def test_expected_scbce_gradient_in_alpha_matches_cpu(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(33)
    logits = 2.0 * torch.randn(3, 6, 6, generator=gen, dtype=torch.float64)
    target = (torch.rand(3, 6, 6, generator=gen) > 0.5).double()
    alpha = torch.tensor([0.0, 0.3, 0.9], dtype=torch.float64)
    loss = SCBCELoss(technique="soft_inversion", expected=True)

    def run(on: torch.device) -> tuple[Tensor, ...]:
        x, a = logits.to(on).requires_grad_(True), alpha.to(on).requires_grad_(True)
        value = loss(x, target.to(on), alpha=a)
        return (value.detach().cpu(), *(g.cpu() for g in torch.autograd.grad(value, (x, a))))

    for got, want in zip(run(device), run(torch.device("cpu")), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_aslp_controller_update_matches_cpu(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(34)
    logits = 2.0 * torch.randn(4, 1, 8, 8, generator=gen)
    target = (torch.rand(4, 1, 8, 8, generator=gen) > 0.5).float()
    target[1, :, :2] = IGNORE
    index = torch.tensor([0, 2, 5, 2])  # a repeated id gets the mean of its updates

    def run(on: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        controller = AdaptivePerturbation(6, beta=2.0, warmup_epochs=0).to(on)
        controller.alpha.fill_(0.1)  # gap (1 - 0.8) - 0.1 > 0: no penalty
        controller.set_validation_accuracy(0.8)
        bce, c = per_image_statistics(logits.to(on), target.to(on), ignore_index=IGNORE)
        for epoch in (0, 1):
            controller.update(index.to(on), logits.to(on), target.to(on), epoch=epoch,
                              ignore_index=IGNORE)
        return (bce.cpu(), c.cpu(), controller.alpha.cpu(), controller.num_updates.cpu())

    got, want = run(device), run(torch.device("cpu"))
    for a, b in zip(got[:3], want[:3], strict=True):  # float32 statistics
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert torch.equal(got[3], want[3]) and want[3].tolist() == [2, 0, 2, 0, 0, 2]
    assert not torch.equal(want[2], torch.full((6,), 0.1))  # the update moved alpha


# --------------------------------------------------------------------------- temperature


def _fit(batches: list[tuple[Tensor, Tensor]], on: torch.device, task: str,
         **fit_options: object) -> tuple[TemperatureScaler, FitResult]:
    scaler = TemperatureScaler(task=task).to(on)  # type: ignore[arg-type]
    moved = [(x.to(on), y.to(on)) for x, y in batches]
    return scaler, scaler.fit(moved, **fit_options)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["binary", "binary-cached", "multiclass-ignore"])
def test_temperature_fit_matches_cpu(case: str, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(41)
    if case.startswith("binary"):
        z = torch.randn(4, 1, 16, 16, generator=gen)
        target = (torch.rand(z.shape, generator=gen) < torch.sigmoid(z)).float()
        logits, task, opts = 3.0 * z, "binary", {"cache_logits": case.endswith("cached")}
    else:
        z = torch.randn(4, 3, 8, 8, generator=gen)
        flat = z.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3)
        target = torch.multinomial(flat, 1, generator=gen).reshape(4, 8, 8)
        target[torch.rand(target.shape, generator=gen) < 0.1] = IGNORE
        logits, task, opts = 2.5 * z, "multiclass", {"ignore_index": IGNORE}
    batches = [(logits[i:i + 2], target[i:i + 2]) for i in (0, 2)]
    cpu_scaler, want = _fit(batches, torch.device("cpu"), task, **opts)
    dev_scaler, got = _fit(batches, device, task, **opts)
    assert got.n_pixels == want.n_pixels > 0
    assert 1.5 < want.temperature < 4.0 and not want.at_bound
    # each pass sums float64 NLL terms of float32 logits; the searches see the same numbers
    # to ~1e-15, so they end at the same T up to far below the search tolerance (1e-4)
    assert got.temperature == pytest.approx(want.temperature, rel=1e-8)
    assert got.nll_before == pytest.approx(want.nll_before, rel=1e-10)
    assert got.nll_after == pytest.approx(want.nll_after, rel=1e-10)
    assert dev_scaler.log_t.device.type == device.type and dev_scaler.task == task
    probs = dev_scaler.probabilities(logits.to(device)).cpu()
    torch.testing.assert_close(probs, cpu_scaler.probabilities(logits), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_matches_cpu(device: torch.device) -> None:
    pytest.importorskip("captum")
    from densecal.models import create_classifier
    from densecal.overmap.gradcam import grad_cam

    torch.manual_seed(0)
    model = create_classifier("resnet-tiny", num_classes=5).double().eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)
    target = torch.tensor([1, 4])
    on_device = copy.deepcopy(model).to(device)
    for normalise in (True, False):  # float64 model: no TF32, maps agree to float32 rounding
        want = grad_cam(model, images, target, normalise=normalise)
        got = grad_cam(on_device, images.to(device), target.to(device), normalise=normalise)
        assert got.device.type == device.type and got.shape == want.shape == (2, 32, 32)
        assert want.amax() > 0
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-6)
    predicted = model(images).argmax(1)
    torch.testing.assert_close(grad_cam(on_device, images.to(device)).cpu(),
                               grad_cam(model, images, predicted), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- end to end


def test_train_on_device_then_evaluate_on_cpu(tiny_demo: dict[str, Path], tmp_path: Path,
                                              device: torch.device,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from densecal.cli.main import main
    from densecal.methods.segmentation.inference import load_module

    accelerator = "gpu" if device.type == "cuda" else "cpu"
    run_dir = tmp_path / "aslp"
    main(["train", "--method", "aslp", "--data", str(tiny_demo["train"]), "--val-data",
          str(tiny_demo["val"]), "--epochs", "1", "--image-size", "32", "--batch-size", "4",
          "--aslp-warmup", "0", "--accelerator", accelerator, "--devices", "1",
          "--out", str(run_dir)])
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert json.loads((run_dir / "config.json").read_text())["accelerator"] == accelerator
    assert (run_dir / "alpha.csv").is_file()

    cpu_module = load_module(ckpt, "cpu")
    params = list(cpu_module.parameters())
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in params)
    # the device-trained weights give the same logits on the CPU as on the device (float64:
    # no TF32 convolutions)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64)
    with torch.no_grad():
        want = cpu_module.double()(images)
        got = load_module(ckpt, device).double()(images.to(device)).cpu()
    assert want.shape == (2, 1, 32, 32) and torch.isfinite(want).all()
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # evaluate on the CPU
    out = tmp_path / "eval"
    main(["evaluate", "--checkpoint", str(ckpt), "--data", str(tiny_demo["test"]),
          "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["n_images"] == 6
    calibration = metrics["calibration"]
    assert set(calibration) >= {"ece", "mce", "oe", "ace", "brier", "nll", "accuracy"}
    for key, value in calibration.items():
        assert math.isfinite(value) and value >= 0.0, key
        assert key == "nll" or value <= 1.0, key
    assert all(math.isfinite(v) for v in metrics["segmentation"].values())
