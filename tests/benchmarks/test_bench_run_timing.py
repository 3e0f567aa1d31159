"""``benchmarks/run_timing.py``: wall time summed over a run's resumed calls."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from _benchmark_scripts import BENCH_DIR, load_script


@pytest.fixture(scope="module")
def timing() -> ModuleType:
    return load_script(BENCH_DIR / "run_timing.py", "run_timing_bench")


def test_wall_seconds_sums_timed_runs_and_counts_untimed(timing: ModuleType,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "timing.jsonl"
    path.write_text('{"run": "r/a", "seconds": 10.5}\n{"run": "r/b", "seconds": 2.0}\n'
                    '{"run": "r/a", "seconds": 4.0}\n')  # a resumed run: its two calls add up
    wall = timing.wall_seconds(path, [Path("r/a"), Path("r/c")])
    assert wall == {"seconds": 14.5, "runs": 2, "untimed": 1, "partly_timed": 0}
    with path.open("a") as f:  # r/b's first epochs were trained before timing was recorded
        f.write('{"run": "r/b", "seconds": 0, "partial": true}\n')
    assert timing.wall_seconds(path, [Path("r/b")]) == {"seconds": 2.0, "runs": 1,
                                                        "untimed": 0, "partly_timed": 1}
    assert timing.wall_seconds(tmp_path / "missing.jsonl", [Path("r/a")])["untimed"] == 1


def test_record_appends_only_after_success(timing: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "timing.jsonl"
    with timing.record(path, Path("r/a")):
        pass
    with pytest.raises(RuntimeError), timing.record(path, "r/b"):
        raise RuntimeError("training failed")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["run"] for r in rows] == ["r/a"] and rows[0]["seconds"] >= 0.0
