"""Run the test suite and the benchmarks on a CUDA machine and record the figures in one JSON file.

Usage (on a machine with a CUDA device, from anywhere)::

    python benchmarks/gpu_report.py [--out benchmarks/results/gpu.json] [--quick] [--timeout 3600]

What it runs, each as a subprocess in the repository root with this Python:

1. ``python -m pytest -q -m gpu``: the tests of ``tests/test_gpu.py`` (CUDA against the CPU);
2. ``python -m pytest -q -m "not slow"``: the default suite, gpu tests included (not with
   ``--quick``);
3. ``benchmarks/calibration_metrics.py --device cuda`` (``--quick`` passed on) and
   ``benchmarks/training_step.py --device cuda`` (``--quick``: ``--steps 5``, the script has no
   ``--quick``); each prints one JSON object, embedded as is.

The report (schema ``densecal.gpu-report/1``) holds the device name, compute capability and
memory, the torch / CUDA / cuDNN / driver versions, per pytest run its command, exit code, wall
time and the counts of pytest's summary line, per benchmark its command, exit code, wall time and
JSON, and ``ok``: every command exited 0 and the gpu tests ran (passed > 0, none skipped). It is
written atomically (:func:`densecal.atomic.atomic_write_text`), also when something failed.
``DENSECAL_TEST_GPU_AS`` is removed from the children's environment so the gpu tests really use
CUDA.

Exit codes: 0 ok; 1 a command failed (the report is written); 2 no CUDA device: one line
``gpu_report: needs a CUDA device`` on stderr and nothing written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu.json"
SCHEMA = "densecal.gpu-report/1"
REFUSAL = "gpu_report: needs a CUDA device"
OUTCOMES = ("passed", "failed", "errors", "skipped", "deselected", "xfailed", "xpassed",
            "warnings")
_TAIL = 4000  # characters of output kept for a failed command

_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)\b")
_SECONDS = re.compile(r"\bin (\d+(?:\.\d+)?)s\b")
_PLURAL = {"error": "errors", "warning": "warnings"}


@dataclass(frozen=True)
class Completed:
    """What a finished (or timed-out) subprocess left.

    Attributes:
        returncode: exit status; ``None`` when it was killed at the timeout.
        stdout: its standard output.
        stderr: its standard error.
        wall_s: wall-clock seconds it ran.
    """

    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float


Runner = Callable[[Sequence[str], float], Completed]
"""``(argv, timeout_s) -> Completed``: how commands are run (replaced in tests)."""


def child_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the commands: ``environ`` without ``DENSECAL_TEST_GPU_AS`` (which
    would let the CPU stand in for the GPU) and with a non-interactive matplotlib backend."""
    env = dict(os.environ if environ is None else environ)
    env.pop("DENSECAL_TEST_GPU_AS", None)
    env.setdefault("MPLBACKEND", "Agg")
    return env


def run_command(argv: Sequence[str], timeout_s: float) -> Completed:
    """Run ``argv`` in the repository root; capture its output; kill it after ``timeout_s``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(list(argv), cwd=ROOT, env=child_env(), capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        def text(value: str | bytes | None) -> str:
            return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

        return Completed(None, text(exc.stdout), text(exc.stderr) + f"\ntimed out after "
                         f"{timeout_s:g} s", time.perf_counter() - start)
    return Completed(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)


def parse_pytest_summary(output: str) -> dict[str, int | float] | None:
    """Counts and seconds of pytest's final summary line.

    Reads the last line of ``output`` of the form ``"12 passed, 2 skipped, 1 deselected in
    3.21s"`` (``=`` decorations, ``"in 63.21s (0:01:03)"`` and singular ``error`` / ``warning``
    allowed; ``"no tests ran in 0.01s"`` gives all zeros).

    Args:
        output: pytest's combined output.

    Returns:
        ``{outcome: count for outcome in OUTCOMES}`` (``errors``, ``warnings`` plural) plus
        ``"seconds"``; ``None`` when no summary line is found.

    Example:
        >>> parse_pytest_summary("1 failed, 3 passed in 0.5s")["failed"]
        1
    """
    for line in reversed(output.splitlines()):
        line = line.strip().strip("=").strip()
        seconds = _SECONDS.search(line)
        if seconds is None:
            continue
        found = _COUNT.findall(line[:seconds.start()])
        if not found and not line.startswith("no tests ran"):
            continue
        counts: dict[str, int | float] = dict.fromkeys(OUTCOMES, 0)
        for number, word in found:
            counts[_PLURAL.get(word, word)] += int(number)
        counts["seconds"] = float(seconds.group(1))
        return counts
    return None


def _tail(done: Completed) -> str:
    return (done.stdout + done.stderr)[-_TAIL:]


def _command_line(argv: Sequence[str]) -> str:
    """``argv`` as a shell line, with this interpreter shown as ``python``."""
    shown = ["python" if i == 0 and arg == sys.executable else arg for i, arg in enumerate(argv)]
    return shlex.join(shown)


def run_pytest(marker: str, runner: Runner, timeout_s: float) -> dict[str, Any]:
    """``python -m pytest -q -m MARKER`` in the repository root.

    Returns:
        ``command``, ``returncode``, ``wall_s``, ``summary`` (see :func:`parse_pytest_summary`)
        and, when it failed or no summary was found, ``output_tail``.
    """
    argv = [sys.executable, "-m", "pytest", "-q", "-m", marker]
    done = runner(argv, timeout_s)
    summary = parse_pytest_summary(done.stdout + "\n" + done.stderr)
    record: dict[str, Any] = {"command": _command_line(argv), "returncode": done.returncode,
                              "wall_s": round(done.wall_s, 2), "summary": summary}
    if done.returncode != 0 or summary is None:
        record["output_tail"] = _tail(done)
    return record


def _json_object(text: str) -> Any:
    """The JSON object printed on ``text`` (anything before its first ``{`` is skipped)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the output")
    return json.JSONDecoder().raw_decode(text[start:])[0]


def run_benchmark(script: str, args: Sequence[str], runner: Runner,
                  timeout_s: float) -> dict[str, Any]:
    """``python benchmarks/SCRIPT ARGS``; its one JSON object goes in ``result``.

    Returns:
        ``command``, ``returncode``, ``wall_s``, ``result`` (the parsed JSON, ``None`` if the
        run failed or printed none) and, then, ``output_tail``.
    """
    argv = [sys.executable, str(Path("benchmarks") / script), *args]
    done = runner(argv, timeout_s)
    record: dict[str, Any] = {"command": _command_line(argv), "returncode": done.returncode,
                              "wall_s": round(done.wall_s, 2), "result": None}
    if done.returncode == 0:
        try:
            record["result"] = _json_object(done.stdout)
        except ValueError as exc:
            record["error"] = f"unreadable JSON: {exc}"
    if record["result"] is None:
        record["output_tail"] = _tail(done)
    return record


def device_info() -> dict[str, Any]:
    """Name, compute capability, memory and count of the CUDA devices (device 0 described)."""
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"name": torch.cuda.get_device_name(0),
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count()}


def _first_line(argv: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def versions() -> dict[str, Any]:
    """torch, CUDA, cuDNN, driver (``nvidia-smi``; None without it), Python, densecal."""
    import torch

    import densecal

    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver": _first_line(["nvidia-smi", "--query-gpu=driver_version",
                                   "--format=csv,noheader"]),
            "python": platform.python_version(), "densecal": densecal.__version__}


def benchmark_commands(quick: bool) -> list[tuple[str, str, list[str]]]:
    """``(name, script, args)`` of the benchmarks to run."""
    return [
        ("calibration_metrics", "calibration_metrics.py",
         ["--device", "cuda", *(["--quick"] if quick else [])]),
        ("training_step", "training_step.py",
         ["--device", "cuda", *(["--steps", "5"] if quick else [])]),
    ]


def build_report(quick: bool, runner: Runner = run_command,
                 timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run everything and return the report (see the module docstring)."""
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "git_commit": _first_line(["git", "rev-parse", "HEAD"]),
        "device": device_info(),
        "versions": versions(),
        "tests": {"gpu": run_pytest("gpu", runner, timeout_s)},
        "benchmarks": {},
    }
    if not quick:
        report["tests"]["suite"] = run_pytest("not slow", runner, timeout_s)
    for name, script, args in benchmark_commands(quick):
        report["benchmarks"][name] = run_benchmark(script, args, runner, timeout_s)
    gpu = report["tests"]["gpu"]["summary"] or {}
    commands = [*report["tests"].values(), *report["benchmarks"].values()]
    report["gpu_tests_ran"] = bool(gpu.get("passed", 0) > 0 and gpu.get("skipped", 0) == 0)
    report["ok"] = report["gpu_tests_ran"] and all(
        c["returncode"] == 0 for c in commands) and all(
        c["result"] is not None for c in report["benchmarks"].values())  # fmt: skip
    return report


def _summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    lines = [f"gpu_report: {report['device']['name']}, torch {report['versions']['torch']}, "
             f"CUDA {report['versions']['cuda']}"]
    for name, run in report["tests"].items():
        s = run["summary"]
        counts = "no summary" if s is None else ", ".join(
            f"{int(s[k])} {k}" for k in OUTCOMES if s[k])
        lines.append(f"  tests {name}: exit {run['returncode']}, {counts}, {run['wall_s']} s")
    for name, run in report["benchmarks"].items():
        lines.append(f"  benchmark {name}: exit {run['returncode']}, {run['wall_s']} s")
    lines.append(f"wrote {out} ({'ok' if report['ok'] else 'FAILED'})")
    return lines


def main(argv: Sequence[str] | None = None, runner: Runner = run_command) -> int:
    """Command-line entry point; returns the exit code (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="report path (default: benchmarks/results/gpu.json)")
    parser.add_argument("--quick", action="store_true",
                        help="only the gpu tests, and the benchmarks in their quick form")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds allowed to each command (default 3600)")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(REFUSAL, file=sys.stderr)
        return 2
    from densecal.atomic import atomic_write_text

    report = build_report(args.quick, runner, args.timeout)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print("\n".join(_summary_lines(report, args.out)))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
