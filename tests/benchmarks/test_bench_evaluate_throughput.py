"""``benchmarks/evaluate_throughput.py`` on a few small pairs: it runs, densecal's numbers are the
same with any worker count and agree with the plain pysodmetrics + NumPy loop."""

from __future__ import annotations

import json
import subprocess
import sys

from _benchmark_scripts import BENCH_DIR


def test_evaluate_throughput_quick() -> None:
    done = subprocess.run([sys.executable, str(BENCH_DIR / "evaluate_throughput.py"),
                           "--n-pairs", "6", "--size", "48", "--quick"],
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout)
    assert len(result["runs"]) == 7 and result["numbers_identical_across_worker_counts"]
    diff = result["largest_difference_to_baseline"]
    # float32 maps (v / 255) against the loop's float64: rounding only
    assert max(v for k, v in diff.items() if not k.endswith("_e")) < 1e-8, diff
    # the E-measure: H*W against pysodmetrics' H*W - 1, at most a factor 1/(H*W) apart
    assert 0 < diff["max_e"] <= 1.0 / (48 * 48 - 1), diff
