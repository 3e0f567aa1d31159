"""``benchmarks/car_toy_protocol.py``: the summary of log-likelihood curves (hand-made curves)
and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _benchmark_scripts import BENCH_DIR, load_script


def test_summary_of_hand_made_curves() -> None:
    bench = load_script(BENCH_DIR / "car_toy_protocol.py", "car_toy_protocol_bench")
    its = [1000, 2000, 3000, 4000, 5000]
    runs = [{"ll_curve": list(zip(its, curve, strict=True)), "upper_fraction": frac, "pi": 0.5}
            for curve, frac in (([-5, -1, 0.5, 1, 2], 0.6), ([-4, 0.5, 1, 1, 1], 0.99),
                                ([-3, -2, -1, 0.2, 0.3], 0.02))]
    out = bench.summarise(runs, 5000)
    assert out["collapsed"] == 2  # 0.99 and 0.02 cover one branch
    # medians per iteration: -4, -1, 0.5, 1, 1 -> first above 0 at 3000
    assert out["ll_median_passes_zero_at"] == 3000
    assert out["ll"]["1000"]["median"] == -4 and out["ll"]["5000"]["median"] == 1
    assert out["ll"]["2000"]["iqr"] == pytest.approx([-1.5, -0.25])


def test_quick_run(tmp_path: Path) -> None:
    bench = load_script(BENCH_DIR / "car_toy_protocol.py", "car_toy_protocol_bench")
    result = bench.main(["--quick", "--out", str(tmp_path), "--seeds", "2", "--extra-seeds",
                         "1", "--pis", "0.6"])
    saved = json.loads((tmp_path / "car_toy_protocol.json").read_text())
    assert saved["authors"]["0.6"]["car"]["seeds"] == 2 == result["setup"]["seeds"]
    assert set(saved["densecal_variant"]["0.6"]) == {"car", "no_cal"}
    assert len(saved["authors"]["0.6"]["no_cal"]["curve"]["median"]) == 4  # 40 steps, every 10
    assert (tmp_path / "car_toy_protocol.png").stat().st_size > 5_000
    assert "| authors | 0.6 | car |" in (tmp_path / "car_toy_protocol.md").read_text()
