"""``benchmarks/gpu_report.py`` without a GPU: the refusal, the pytest-summary parser, and the
report it writes, with CUDA and the commands faked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from _benchmark_scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_report.py"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    return load_script(SCRIPT, "bench_gpu_report")


def test_refuses_without_cuda(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a GPU machine
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["gpu_report: needs a CUDA device"]
    assert done.stdout == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []


SUMMARIES = [
    ("12 passed, 2 skipped, 1 deselected in 3.21s",
     {"passed": 12, "skipped": 2, "deselected": 1}, 3.21),
    ("1 failed, 3 passed in 0.5s", {"failed": 1, "passed": 3}, 0.5),
    ("===== 1 failed, 40 passed, 1 error, 2 warnings in 63.21s (0:01:03) =====",
     {"failed": 1, "passed": 40, "errors": 1, "warnings": 2}, 63.21),
    ("2 xfailed, 1 xpassed, 1 warning in 1.00s", {"xfailed": 2, "xpassed": 1, "warnings": 1}, 1.0),
    ("no tests ran in 0.01s", {}, 0.01),
    ("34 skipped, 1179 deselected in 14.48s", {"skipped": 34, "deselected": 1179}, 14.48),
]  # fmt: skip


@pytest.mark.parametrize(("line", "counts", "seconds"), SUMMARIES)
def test_parses_pytest_summary_lines(report: ModuleType, line: str, counts: dict[str, int],
                                     seconds: float) -> None:
    # the summary is the last line with a count and a time; earlier output is ignored
    output = f"....F..s\n[gw0] 3 passed in a loop\nFAILED tests/a.py::t - x in 2s\n{line}\n"
    got = report.parse_pytest_summary(output)
    assert got == {**dict.fromkeys(report.OUTCOMES, 0), **counts, "seconds": seconds}


@pytest.mark.parametrize("output", ["", "collected 0 items\n", "Traceback ...\nKeyError: x\n"])
def test_no_summary_line_gives_none(report: ModuleType, output: str) -> None:
    assert report.parse_pytest_summary(output) is None


def test_child_environment_drops_the_cpu_stand_in(report: ModuleType) -> None:
    env = report.child_env({"DENSECAL_TEST_GPU_AS": "cpu", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "MPLBACKEND": "Agg"}


class FakeRunner:
    """Answers pytest and benchmark commands with canned output; records every argv."""

    def __init__(self, gpu_line: str = "34 passed, 1179 deselected in 20.0s",
                 suite_code: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.gpu_line, self.suite_code = gpu_line, suite_code

    def __call__(self, argv: Sequence[str], timeout_s: float):
        self.calls.append(list(argv))
        completed = sys.modules["bench_gpu_report"].Completed
        if argv[1:3] == ["-m", "pytest"]:
            if argv[-1] == "gpu":
                return completed(0, f"{'.' * 34}\n{self.gpu_line}\n", "", 21.5)
            return completed(self.suite_code, "1 failed, 1200 passed, 5 deselected in 600.0s\n"
                             if self.suite_code else "1201 passed, 5 deselected in 600.0s\n",
                             "", 601.0)
        name = Path(argv[1]).stem
        return completed(0, "progress line\n" + json.dumps({"bench": name, "device": "cuda"},
                                                           indent=2) + "\n", "", 9.0)


@pytest.fixture
def fake_cuda(report: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(report, "device_info", lambda: {"name": "Fake H100", "count": 1})


def test_quick_report_runs_gpu_tests_and_quick_benchmarks(
        report: ModuleType, fake_cuda: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    runner, out = FakeRunner(), tmp_path / "results" / "gpu.json"
    assert report.main(["--quick", "--out", str(out)], runner=runner) == 0
    written = json.loads(out.read_text())
    assert written["schema"] == "densecal.gpu-report/1" and written["quick"] is True
    assert written["device"] == {"name": "Fake H100", "count": 1}
    assert set(written["versions"]) >= {"torch", "cuda", "python", "densecal"}
    assert list(written["tests"]) == ["gpu"]  # quick: no full suite
    gpu = written["tests"]["gpu"]
    assert gpu["command"] == "python -m pytest -q -m gpu" and gpu["returncode"] == 0
    assert gpu["summary"]["passed"] == 34 and gpu["summary"]["seconds"] == 20.0
    assert gpu["wall_s"] == 21.5
    benches = written["benchmarks"]
    assert benches["calibration_metrics"]["command"].endswith(
        "benchmarks/calibration_metrics.py --device cuda --quick")
    assert benches["training_step"]["command"].endswith(
        "benchmarks/training_step.py --device cuda --steps 5")
    assert benches["training_step"]["result"] == {"bench": "training_step", "device": "cuda"}
    assert written["gpu_tests_ran"] is True and written["ok"] is True
    assert len(runner.calls) == 3
    assert "wrote" in capsys.readouterr().out


def test_full_report_records_failures_and_skipped_gpu_tests(
        report: ModuleType, fake_cuda: None, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    runner = FakeRunner(gpu_line="34 skipped, 1179 deselected in 9.0s", suite_code=1)
    assert report.main(["--out", str(out)], runner=runner) == 1  # written all the same
    written = json.loads(out.read_text())
    assert written["quick"] is False
    suite = written["tests"]["suite"]
    assert suite["command"] == "python -m pytest -q -m 'not slow'"
    assert suite["summary"]["failed"] == 1 and suite["returncode"] == 1
    assert "1 failed" in suite["output_tail"]
    assert written["tests"]["gpu"]["summary"]["skipped"] == 34
    assert written["gpu_tests_ran"] is False and written["ok"] is False
    assert written["benchmarks"]["calibration_metrics"]["command"].endswith("--device cuda")
