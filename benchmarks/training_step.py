"""Cost of ASLP in a training step: SC-BCE + the per-image α controller vs a plain BCE step.

Both steps use the same network, optimiser and batch: forward, loss, backward, Adam step. The ASLP
step adds the per-image coin, the perturbed target, and the controller's statistics and update.
Steps are interleaved (BCE, ASLP, BCE, ...) so that drifts in machine load hit both alike; the
ratio is the median over pairs.

Usage::

    python benchmarks/training_step.py [--model unet-small] [--batch 8] [--size 128]
        [--steps 30] [--device cpu|cuda]

Prints one JSON object with per-step milliseconds and ``ratio_aslp_to_bce`` (target <= 1.05).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from densecal.losses import AdaptivePerturbation, SCBCELoss
from densecal.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet-small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = create_model(args.model).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)
    image = torch.rand(args.batch, 3, args.size, args.size, device=device)
    mask = (torch.rand(args.batch, 1, args.size, args.size, device=device) > 0.5).float()
    index = torch.arange(args.batch, device=device)
    sc_bce = SCBCELoss(technique="hard_inversion")
    controller = AdaptivePerturbation(args.batch, beta=2.0, warmup_epochs=0).to(device)
    controller.set_validation_accuracy(0.95)

    def bce_step() -> None:
        loss = F.binary_cross_entropy_with_logits(net(image), mask)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def aslp_step() -> None:
        logits = net(image)
        loss = sc_bce(logits, mask, alpha=controller(index))
        controller.update(index, logits.detach(), mask, epoch=1)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def timed(step: object) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()  # type: ignore[operator]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(3):  # warm-up
        bce_step()
        aslp_step()
    bce, aslp = [], []
    for _ in range(args.steps):
        bce.append(timed(bce_step))
        aslp.append(timed(aslp_step))
    ratios = [a / b for a, b in zip(aslp, bce, strict=True)]
    print(json.dumps({
        "model": args.model, "batch": args.batch, "size": args.size, "steps": args.steps,
        "device": str(device),
        "ms_per_step": {"bce_median": round(1e3 * statistics.median(bce), 3),
                        "aslp_median": round(1e3 * statistics.median(aslp), 3)},
        "ratio_aslp_to_bce": round(statistics.median(ratios), 4),
        "ratio_of_medians": round(statistics.median(aslp) / statistics.median(bce), 4),
        "target": 1.05,
        "machine": {"torch": torch.__version__, "python": platform.python_version(),
                    "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_average": os.getloadavg()[0]},
    }, indent=2))


if __name__ == "__main__":
    main()
