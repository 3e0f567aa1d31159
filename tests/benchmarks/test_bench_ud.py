"""``benchmarks/ud_multilabel.py``: quick run, JSON layout, aggregation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from _benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ud_multilabel.py"
MODELS = ("teacher", "student_ud", "student_gt")
METRICS = ("map", "map_hard", "cf1", "of1", "ece")


def _load() -> ModuleType:
    return load_script(SCRIPT, "ud_multilabel_bench")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load()


def test_mean_std_against_hand_values(bench: ModuleType) -> None:
    # mean 0.5, sample std sqrt(((0.25-0.5)^2 + (0.75-0.5)^2) / 1) = sqrt(0.125)
    stats = bench.mean_std([0.25, 0.75, None])
    assert stats == {"mean": 0.5, "std": math.sqrt(0.125), "n": 2}
    assert bench.mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    assert bench.mean_std([None]) == {"mean": None, "std": None, "n": 0}


def test_quick_run_layout_values_and_resume(bench: ModuleType, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    result = bench.main(["--quick", "--out", str(tmp_path), "--seeds", "2"])
    printed = json.loads(capsys.readouterr().out)  # stdout holds the JSON object only
    saved = json.loads((tmp_path / "ud_multilabel.json").read_text())
    assert printed == saved == json.loads(json.dumps(result))
    assert {"setup", "machine", "per_seed", *MODELS} <= set(saved)
    assert saved["setup"]["seeds"] == 2 and saved["setup"]["quick"] is True
    for model in MODELS:
        assert set(saved[model]) == set(METRICS)
        runs = saved["per_seed"][model]
        assert [r["seed"] for r in runs] == [0, 1]
        for key in ("map", "cf1", "of1", "ece"):  # always defined on the 16 test images
            values = [r[key] for r in runs]
            assert all(0.0 <= v <= 1.0 for v in values), (model, key, values)
            stats = saved[model][key]
            mean = (values[0] + values[1]) / 2
            assert stats["mean"] == pytest.approx(mean, abs=1e-12)
            assert stats["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2),
                                                 abs=1e-12)
        assert all(r["n_images"] == 16 for r in runs)
    # the student was distilled from the teacher of its own seed
    config = json.loads((tmp_path / "student_ud-seed1" / "config.json").read_text())
    assert json.dumps(config).count(str(tmp_path / "teacher-seed1")) == 1
    table = (tmp_path / "ud_multilabel.md").read_text()
    assert "| student_ud | resnet-tiny |" in table and table.count("\n| ") == 4

    # resumable: cached evaluations are reused (nothing trained again); a finished run without
    # its evaluation is resumed as a no-op and evaluated again to the same values
    ckpt = tmp_path / "teacher-seed0" / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    (tmp_path / "student_gt-seed1" / "eval_test.json").unlink()
    again = bench.main(["--quick", "--out", str(tmp_path), "--seeds", "2"])
    capsys.readouterr()
    assert ckpt.stat().st_mtime_ns == before
    for model in MODELS:
        for old, new in zip(result["per_seed"][model], again["per_seed"][model], strict=True):
            old.pop("train_seconds_this_invocation")
            new.pop("train_seconds_this_invocation")
            assert new == old
