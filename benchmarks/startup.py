"""Start-up cost of the command line: ``densecal --help`` and ``densecal evaluate --pred --gt``.

Runs each command ``--repeats`` times in a fresh interpreter (``python -m densecal ...``) and
prints one JSON object with the median and minimum wall time in seconds, and whether the
command imported Lightning (read from ``python -X importtime`` in one extra run). The evaluate
command scores 10 pairs of 256 x 256 8-bit PNG maps written to a temporary folder, so its time
is mostly start-up (imports), not metrics.

``--src DIR`` puts another checkout's ``src`` folder first on ``PYTHONPATH``, so an older commit
can be measured in the same run as this one (``git worktree add /tmp/old <commit>``, then
``--src /tmp/old/src``). Time it on an idle machine: the load average is recorded.

Usage::

    python benchmarks/startup.py [--repeats 7] [--src DIR] [--label NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_pairs(root: Path, n: int = 10, size: int = 256, seed: int = 0) -> tuple[Path, Path]:
    """``n`` pairs of 8-bit PNG prediction maps (a blurred disc) and binary masks."""
    rng = np.random.default_rng(seed)
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        cy, cx, r = (*rng.uniform(0.3, 0.7, 2).tolist(), rng.uniform(0.1, 0.3))
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r
        pred = 1 / (1 + np.exp(rng.uniform(10, 80) * dist))
        Image.fromarray(np.round(pred * 255).astype(np.uint8)).save(pred_dir / f"{i:03d}.png")
        Image.fromarray(((dist < 0) * 255).astype(np.uint8)).save(gt_dir / f"{i:03d}.png")
    return pred_dir, gt_dir


def _env(src: Path | None) -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
    return env


def time_command(args: list[str], repeats: int, env: dict[str, str]) -> dict[str, object]:
    """Median and minimum wall time of ``python -m densecal ARGS`` and its Lightning import."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "densecal", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    trace = subprocess.run([sys.executable, "-X", "importtime", "-m", "densecal", *args], env=env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True).stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines() if "|" in line}
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "imports_lightning": any(m.split(".")[0] in ("lightning", "pytorch_lightning")
                                     for m in imported),
            "modules_imported": len(imported)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--src", type=Path, default=None,
                        help="another checkout's src folder to measure instead of this one")
    parser.add_argument("--label", default=None, help="name of the measured code in the JSON")
    args = parser.parse_args()
    env = _env(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        pred, gt = write_pairs(Path(tmp))
        out = Path(tmp) / "eval"
        result = {
            "benchmark": "startup",
            "code": args.label or str(args.src or "this checkout"),
            "load_average_1min": os.getloadavg()[0],
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "repeats": args.repeats,
            "help": time_command(["--help"], args.repeats, env),
            "evaluate_10_pairs": time_command(
                ["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out)],
                args.repeats, env),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
