"""Throughput and memory of densecal's pixel calibration metrics against torchmetrics and MONAI.

Run: ``python benchmarks/calibration_metrics.py [--n-maps 200] [--size 384] [--device cpu|cuda]
[--batch-size 20] [--quick]``. Prints ONE JSON object on stdout; every number comes from this run
on the same tensors (DESIGN.md section 6: densecal >= 30x torchmetrics' BinaryCalibrationError,
<= 3x one plain read pass, peak memory independent of the number of images).

Data: ``n_maps`` float32 probability maps of ``size x size`` pixels: smooth random fields
(bicubic upsampling of 12x12 noise) through a sigmoid of random sharpness, and binary targets
from a perturbed threshold of the same field (int64, the labels torchmetrics expects).

Timing: every metric consumes the maps in batches of ``batch_size`` (update per batch, one
compute at the end, as in an evaluation loop); one warm-up call on the first batch, then the best
of 3 full passes. On the CPU densecal runs its fused numba kernel (numba is a core
dependency, so every install has it); ``densecal_top_label_torch_path`` times the same metric
with it disabled. "read pass" is ``preds.sum()`` and ``target.sum()`` over the same batches,
timed the same way. ``densecal_top_label_uint8`` times the same metric on 8-bit copies of the
maps (``round(255 q)`` as uint8, made before timing; the metric reads v as v / 255), the form of
saved PNG predictions: an extra row, not comparable value for value with the float32 rows;
``read_pass_uint8`` is the read pass over those uint8 maps (summed as int64 words: torch's
uint8 ``sum`` runs at a quarter of the memory speed) and the int64 targets.
Peak memory: max RSS (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA) of
a subprocess streaming 20 or 2000 maps generated batch by batch (the data is freed each batch),
reported as the growth in MB between the two runs.

The ECE block also gives torchmetrics' value on float64 copies of the maps (untimed): its
states follow the input dtype, and float32 sums over tens of millions of pixels drift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def make_maps(n: int, size: int, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, size, size)`` float32 probability maps and int64 binary targets (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    field = F.interpolate(torch.randn(n, 1, 12, 12, generator=gen), size=(size, size),
                          mode="bicubic", align_corners=False)[:, 0]  # fmt: skip
    noise = F.interpolate(torch.randn(n, 1, 48, 48, generator=gen), size=(size, size),
                          mode="bilinear", align_corners=False)[:, 0]  # fmt: skip
    sharpness = torch.empty(n, 1, 1).uniform_(1.0, 8.0, generator=gen)
    preds = torch.sigmoid(sharpness * field).contiguous()
    target = (field + 0.3 * noise > 0).long()
    return preds.to(device), target.to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_of(run: Callable[[Batches], Any], batches: Batches, device: str, repeats: int) -> float:
    """Best wall time (s) of ``repeats`` full passes, after a warm-up on the first batch."""
    run(batches[:1])
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batches)
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _words(x: torch.Tensor) -> torch.Tensor:
    """The same bytes as int64 words where the last dimension allows (torch sums uint8 slowly)."""
    if x.element_size() < 8 and x.shape[-1] * x.element_size() % 8 == 0:
        return x.view(torch.int64)
    return x


def read_pass(batches: Batches) -> Any:
    return [(_words(p).sum(), t.sum()) for p, t in batches]


def densecal_runner(
    fused: bool = True, **options: Any
) -> Callable[[Batches], dict[str, torch.Tensor]]:
    """PixelCalibration over the batches; ``fused=False`` forces the torch path on the CPU."""
    from densecal.metrics import PixelCalibration
    from densecal.metrics.functional._calibration import numba_kernel as _fused

    def run(batches: Batches) -> dict[str, torch.Tensor]:
        saved = os.environ.get("DENSECAL_FUSED")
        os.environ["DENSECAL_FUSED"] = "1" if fused else "0"
        _fused._kernel.cache_clear()
        try:
            metric = PixelCalibration(**options).to(batches[0][0].device)
            for p, t in batches:
                metric.update(p, t)
            return metric.compute()
        finally:
            os.environ.pop("DENSECAL_FUSED") if saved is None else os.environ.update(
                DENSECAL_FUSED=saved)
            _fused._kernel.cache_clear()

    return run


def torchmetrics_binary(batches: Batches) -> torch.Tensor:
    from torchmetrics.classification import BinaryCalibrationError

    metric = BinaryCalibrationError(n_bins=10, norm="l1").to(batches[0][0].device)
    for p, t in batches:
        metric.update(p, t)
    return metric.compute()


def torchmetrics_multiclass(batches: Batches) -> torch.Tensor:
    """Two-class version: preds stacked as ``(N, 2, H, W)`` = [1 - q, q] (built outside timing)."""
    from torchmetrics.classification import MulticlassCalibrationError

    metric = MulticlassCalibrationError(num_classes=2, n_bins=10, norm="l1")
    metric = metric.to(batches[0][0].device)
    for p2, t in batches:
        metric.update(p2, t)
    return metric.compute()


def monai_runner() -> Callable[[Batches], torch.Tensor] | None:
    """MONAI's per-image, per-channel ECE on ``(N, 1, H, W)`` float maps, or None."""
    try:
        from monai.metrics import CalibrationErrorMetric
    except ImportError:
        return None

    def run(batches: Batches) -> torch.Tensor:
        metric = CalibrationErrorMetric(num_bins=10, include_background=True,
                                        calibration_reduction="expected", right=True)  # fmt: skip
        for p, t in batches:
            metric(p[:, None], t[:, None].float())
        return metric.aggregate()

    return run


_MEMORY_CHILD = """
import resource, sys, torch
sys.path.insert(0, {bench_dir!r})
from calibration_metrics import make_maps
from densecal.metrics import PixelCalibration
n, size, batch, device = {n}, {size}, {batch}, {device!r}
metric = PixelCalibration(aggregate={aggregate!r}).to(device)
for start in range(0, n, batch):
    p, t = make_maps(min(batch, n - start), size, seed=start, device=device)
    metric.update(p, t)
    del p, t
metric.compute()
if device == "cuda":
    print(torch.cuda.max_memory_allocated() / 2**20)
else:
    try:  # peak RSS of this process image (ru_maxrss would include the parent's at fork)
        with open("/proc/self/status") as f:
            print(next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024)
    except OSError:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_memory_mb(n: int, size: int, batch: int, device: str, aggregate: str) -> float:
    """Peak memory (MB) of a fresh process streaming ``n`` maps through PixelCalibration."""
    code = _MEMORY_CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), n=n,
                                size=size, batch=batch, device=device, aggregate=aggregate)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def machine_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    try:
        import torchmetrics

        info["torchmetrics"] = torchmetrics.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-maps", type=int, default=200)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="1 timing repeat, memory runs of 2 vs 20 maps (for tests)")
    args = parser.parse_args(argv)
    device, repeats = args.device, (1 if args.quick else 3)
    info = machine_info(device)
    from densecal.metrics.functional._calibration.numba_kernel import fused_available

    info["fused_kernel"] = device == "cpu" and fused_available()

    preds, target = make_maps(args.n_maps, args.size, seed=0, device=device)
    batches = list(zip(preds.split(args.batch_size), target.split(args.batch_size), strict=True))
    stacked = [(torch.stack([1 - p, p], 1), t) for p, t in batches]
    as_uint8 = [((p * 255).round_().to(torch.uint8), t) for p, t in batches]
    megapixels = preds.numel() / 1e6

    pooled_top = densecal_runner()
    pooled_pos = densecal_runner(confidence="positive")
    per_image_pos = densecal_runner(confidence="positive", aggregate="per-image")
    seconds: dict[str, float] = {
        "read_pass": best_of(read_pass, batches, device, repeats),
        "densecal_top_label": best_of(pooled_top, batches, device, repeats),
        "densecal_positive": best_of(pooled_pos, batches, device, repeats),
        "densecal_per_image_positive": best_of(per_image_pos, batches, device, repeats),
        "densecal_top_label_torch_path": best_of(densecal_runner(fused=False), batches, device,
                                                 repeats),
        "densecal_top_label_uint8": best_of(pooled_top, as_uint8, device, repeats),
        "read_pass_uint8": best_of(read_pass, as_uint8, device, repeats),
        "torchmetrics_binary": best_of(torchmetrics_binary, batches, device, repeats),
        "torchmetrics_multiclass": best_of(torchmetrics_multiclass, stacked, device, repeats),
    }
    monai = monai_runner()
    if monai is not None:
        seconds["monai"] = best_of(monai, batches, device, repeats)

    ece_densecal = pooled_pos(batches)["ece"].item()
    ece_torchmetrics = torchmetrics_binary(batches).item()
    ece_torchmetrics_64 = torchmetrics_binary([(p.double(), t) for p, t in batches]).item()
    small, large = (2, 20) if args.quick else (20, 2000)
    memory = {
        f"peak_mb_{n}_maps": peak_memory_mb(
            n, args.size, min(args.batch_size, small), device, "pooled"
        )
        for n in (small, large)
    }
    memory["growth_mb"] = memory[f"peak_mb_{large}_maps"] - memory[f"peak_mb_{small}_maps"]
    memory["target_growth_mb"] = 64
    memory["method"] = ("cuda max_memory_allocated" if device == "cuda"
                        else "peak RSS of a fresh process (VmHWM)")  # fmt: skip

    mpx_s = {k: megapixels / v for k, v in seconds.items()}
    ratios = {
        "densecal_vs_torchmetrics_binary": seconds["torchmetrics_binary"]
        / seconds["densecal_positive"],
        "densecal_vs_torchmetrics_multiclass": seconds["torchmetrics_multiclass"]
        / seconds["densecal_top_label"],
        "densecal_time_over_read_pass": seconds["densecal_top_label"] / seconds["read_pass"],
        "densecal_positive_time_over_read_pass": seconds["densecal_positive"]
        / seconds["read_pass"],
    }
    ratios["fused_speedup_over_torch_path"] = (seconds["densecal_top_label_torch_path"]
                                               / seconds["densecal_top_label"])
    ratios["densecal_uint8_time_over_read_pass"] = (seconds["densecal_top_label_uint8"]
                                                    / seconds["read_pass"])
    ratios["densecal_uint8_time_over_uint8_read_pass"] = (seconds["densecal_top_label_uint8"]
                                                          / seconds["read_pass_uint8"])
    ratios["densecal_uint8_vs_torchmetrics_binary"] = (seconds["torchmetrics_binary"]
                                                       / seconds["densecal_top_label_uint8"])
    if "monai" in seconds:
        ratios["densecal_vs_monai"] = seconds["monai"] / seconds["densecal_per_image_positive"]
    result = {
        "benchmark": "calibration_metrics",
        "machine": info,
        "data": {
            "n_maps": args.n_maps,
            "size": args.size,
            "batch_size": args.batch_size,
            "megapixels": megapixels,
            "preds": "float32",
            "target": "int64",
            "preds_uint8_row": "uint8 round(255 q), read as v / 255",
        },
        "seconds": seconds,
        "megapixels_per_s": mpx_s,
        "ns_per_pixel": {k: v / preds.numel() * 1e9 for k, v in seconds.items()},
        "ratios": ratios,
        "targets": {
            "densecal_vs_torchmetrics_binary_min": 30.0,
            "densecal_time_over_read_pass_max": 3.0,
            "memory_growth_mb_max": 64.0,
        },
        "ece_positive": {
            "densecal": ece_densecal,
            "torchmetrics": ece_torchmetrics,
            "max_abs_diff": abs(ece_densecal - ece_torchmetrics),
            "torchmetrics_float64_preds": ece_torchmetrics_64,
            "max_abs_diff_float64_preds": abs(ece_densecal - ece_torchmetrics_64),
        },
        "memory": memory,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
