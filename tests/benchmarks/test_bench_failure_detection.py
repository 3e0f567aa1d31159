"""``benchmarks/failure_detection.py``: densecal's failure-detection keys equal sklearn's and the
tie-averaged float64 AURC on 8-bit maps, and TorchUncertainty's AURC is an E-AURC."""

from __future__ import annotations

import json
import subprocess
import sys

from _benchmark_scripts import BENCH_DIR


def test_failure_detection_script() -> None:
    done = subprocess.run([sys.executable, str(BENCH_DIR / "failure_detection.py"), "--seed",
                           "3"], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout)
    assert max(result["largest_difference_to_reference"].values()) < 1e-12
    tu = result["torch_uncertainty_aurc"]["all_pixels_ties_shuffled"]
    assert abs(tu - result["densecal"]["eaurc"]) < 1e-4  # E-AURC up to ties and trapezoid
    assert abs(tu - result["densecal"]["aurc"]) > 0.01
