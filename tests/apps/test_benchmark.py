"""``densecal benchmark``: same schedule for every method, mean ± std tables, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densecal.apps.benchmark import (
    BenchmarkSchedule,
    parse_method,
    run_benchmark,
    summary_columns,
    summary_table,
)
from densecal.errors import DensecalInputError

TINY = BenchmarkSchedule(epochs=2, image_size=32, batch_size=4, aslp_warmup=1)


def test_benchmark_records_tables_and_resume(tiny_demo: dict[str, Path], tmp_path: Path) -> None:
    data = tiny_demo["train"].parent
    out = tmp_path / "bench"
    result = run_benchmark(out, methods=["bce", "bce+ts", "aslp"], seeds=2, data=data,
                           schedule=TINY, progress=False)
    assert result["schema"] == "densecal.benchmark/1"
    runs = result["runs"]
    assert len(runs) == 3 * 2 * 2  # methods x seeds x (test, ood)
    assert {r["split"] for r in runs} == {"test", "ood"}
    for record in runs:
        assert set(record) == {"method", "seed", "split", "calibration", "segmentation"}
        assert {"ece", "oe", "mce", "nll"} <= set(record["calibration"])
    # bce+ts evaluates the bce run with a temperature: same accuracy, different NLL
    bce = {(r["seed"], r["split"]): r for r in runs if r["method"] == "bce"}
    for r in (r for r in runs if r["method"] == "bce+ts"):
        twin = bce[(r["seed"], r["split"])]
        assert r["calibration"]["accuracy"] == twin["calibration"]["accuracy"]
    saved = json.loads((out / "report" / "benchmark.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(runs))
    assert (out / "report" / "runs.csv").read_text().count("\n") == len(runs) + 1
    assert "| bce+ts | test  | 2" in (out / "report" / "benchmark.md").read_text()
    assert (out / "report" / "ece_vs_maxf.png").stat().st_size > 5_000

    # resumable: cached evaluations are reused, nothing is trained again
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    ckpt = out / "runs" / "bce-seed0" / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    again = run_benchmark(out, methods=["bce", "bce+ts", "aslp"], seeds=2, data=data,
                          schedule=TINY, progress=False)
    assert again["runs"] == runs
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert ckpt.stat().st_mtime_ns == before


def test_summary_table_mean_and_std() -> None:
    def rec(seed: int, ece: float) -> dict:
        cal = {"ece": ece, "oe": 0.0, "mce": ece, "nll": 0.5}
        seg = {"mae": 0.1, "max_f": 0.8, "s_measure": 0.7}
        return {"method": "m", "seed": seed, "split": "test", "calibration": cal,
                "segmentation": seg}

    table = summary_table([rec(0, 0.01), rec(1, 0.03)], ["m"])
    # mean 2.00 %, sample std sqrt(((1-2)^2 + (3-2)^2) / 1) = 1.41 %
    assert "| 2.00 ± 1.41" in table


def test_bad_benchmark_arguments(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(DensecalInputError, match="--methods"):
        run_benchmark(tmp_path / "bench", methods=["magic"], data=data)
    with pytest.raises(DensecalInputError, match="needs split folders"):
        run_benchmark(tmp_path / "bench", methods=["bce"], data=data)
    with pytest.raises(DensecalInputError, match=r"--out: .* is the input .* \(--data\)"):
        run_benchmark(data, methods=["bce"], data=data)


def test_multiclass_summary_columns_and_values() -> None:
    def rec(seed: int, dice: float, ece: float, soft: bool) -> dict:
        r = {"method": "vls", "seed": seed, "split": "test",
             "calibration": {"ece": ece, "ece_foreground": 2 * ece, "classwise_ece": ece / 2,
                             "nll": 0.25},
             "segmentation": {"dice": dice, "iou": dice / 2},
             "per_volume": {"n_volumes": 3, "mean": {"dice": dice, "ece": ece}, "std": {}}}
        if soft:
            r["soft_truth"] = {"ece": 3 * ece, "brier": 0.125}
        return r

    records = [rec(0, 0.75, 0.01, True), rec(1, 0.875, 0.03, True)]
    labels = [c[0] for c in summary_columns(records)]
    assert labels[:4] == ["Dice", "ECE %", "fg ECE %", "soft ECE %"]
    table = summary_table(records, ["vls"])
    # Dice mean 0.8125 std 0.0884; ECE 2.00 ± 1.41 %; fg ECE 4.00 ± 2.83 %; soft ECE 6.00 ± 4.24 %
    assert "| 0.812 ± 0.088 | 2.00 ± 1.41 | 4.00 ± 2.83 | 6.00 ± 4.24 |" in table
    # without soft truth the soft columns are left out
    plain = summary_columns([rec(0, 0.5, 0.01, False)])
    assert all(path[0] != "soft_truth" for _, path in plain)


def test_multiclass_benchmark_needs_data(tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="needs a data folder"):
        run_benchmark(tmp_path, schedule=BenchmarkSchedule(num_classes=3))


def test_method_variants_with_overrides() -> None:
    assert parse_method("vls@vls_mix=0.6;vls_tau=1") == ("vls", {"vls_mix": 0.6, "vls_tau": 1})
    assert parse_method("bce+ts") == ("bce", {})
    assert parse_method("ls@eps=0.05+ts") == ("ls", {"eps": 0.05})
    for bad in ("vls@nope=1", "vls@vls_mix", "vls@seed=3", "magic@eps=0.1"):
        with pytest.raises(DensecalInputError, match="--methods"):
            parse_method(bad)
