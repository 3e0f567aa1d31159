"""``benchmarks/evaluate_memory.py`` on small maps: it runs, and its figures are consistent."""

from __future__ import annotations

import json
import subprocess
import sys

from _benchmark_scripts import BENCH_DIR


def test_evaluate_memory_small_sizes() -> None:
    done = subprocess.run([sys.executable, str(BENCH_DIR / "evaluate_memory.py"), "--sizes",
                           "64,512,768"], capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout)
    runs = result["runs"]
    assert [r["side"] for r in runs] == [64, 512, 768]
    assert runs[0]["peak_mib"] > 100  # Python, torch and numpy at least
    assert all(r["peak_mib"] >= runs[0]["peak_mib"] for r in runs)
    assert set(result["pysodmetrics_extra_bytes_per_pixel_at_largest"]) == {
        "F-measure", "E-measure", "weighted F", "S-measure"}
    assert result["pysodmetrics_extra_bytes_per_pixel_at_largest"]["weighted F"] > 0
