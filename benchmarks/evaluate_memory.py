"""Peak memory of ``densecal evaluate --pred --gt`` against the size of one map.

For each side length S, writes one pair of S x S 8-bit PNG maps (a disc of ground truth and a
noisy prediction), runs ``python -m densecal evaluate`` on it in a fresh interpreter and reads the
child's peak resident set size (``ru_maxrss``). The 64 x 64 run gives the fixed cost (Python,
torch, numpy, pysodmetrics); ``bytes_per_pixel`` is (peak − fixed) / S². Also reports, in one
process per stage, the extra peak of each pysodmetrics measure on the largest map. Run it alone
on an idle machine: the load average is recorded.

Usage::

    python benchmarks/evaluate_memory.py [--sizes 64,1000,2000,4000] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

_STAGE = """
import resource, sys, numpy as np
from densecal.data.readers import read_mask, read_prediction
from densecal.metrics.segmentation import SODMetrics
q = read_prediction(sys.argv[1]); g = read_mask(sys.argv[2])
m = SODMetrics(); p, y = m._prepare(q, g)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
step = {"F-measure": lambda: m._fm.step(p, y, normalize=False),
        "E-measure": lambda: m._em.step(p, y, normalize=False),
        "weighted F": lambda: m._wfm.step(p, y, normalize=False),
        "S-measure": lambda: m._sm.cal_sm(p, y)}[sys.argv[3]]
step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
"""


def write_pair(folder: Path, side: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(side)
    yy, xx = np.mgrid[:side, :side]
    truth = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side / 4) ** 2
    pred = np.clip(0.8 * truth + 0.2 * rng.random((side, side)), 0.0, 1.0)
    (folder / "pred").mkdir(parents=True)
    (folder / "gt").mkdir()
    Image.fromarray(np.round(255 * pred).astype(np.uint8)).save(folder / "pred" / "a.png")
    Image.fromarray(truth.astype(np.uint8) * 255).save(folder / "gt" / "a.png")
    return folder / "pred", folder / "gt"


def _peak_bytes(args: list[str]) -> int:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("a child's peak is below an earlier child's: run sizes in rising order")
    return peak * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,1000,2000,4000")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    sides = sorted(int(s) for s in args.sizes.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            pred, gt = write_pair(Path(tmp) / str(side), side)
            peak = _peak_bytes(["-m", "densecal", "evaluate", "--pred", str(pred), "--gt",
                                str(gt), "--out", str(Path(tmp) / f"out{side}")])
            rows.append({"side": side, "pixels": side * side, "peak_mib": round(peak / 2**20)})
        fixed = rows[0]["peak_mib"] * 2**20
        for row in rows[1:]:
            row["bytes_per_pixel"] = round((row["peak_mib"] * 2**20 - fixed) / row["pixels"], 1)
        stages = {}
        for stage in ("F-measure", "E-measure", "weighted F", "S-measure"):
            done = subprocess.run([sys.executable, "-c", _STAGE, str(pred / "a.png"),
                                   str(gt / "a.png"), stage], capture_output=True, text=True,
                                  check=True)
            stages[stage] = round(int(done.stdout) / (sides[-1] ** 2), 1)
    result = {"benchmark": "evaluate_memory", "load_average_1min": os.getloadavg()[0],
              "cpu": platform.processor() or platform.machine(), "runs": rows,
              "pysodmetrics_extra_bytes_per_pixel_at_largest": stages}
    text = json.dumps(result, indent=2)
    print(text)
    if args.write:
        Path(__file__).parent.joinpath("results", "evaluate_memory.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
