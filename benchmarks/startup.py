"""Start-up cost of the command line: ``densecal --help`` and ``densecal evaluate --pred --gt``.

Runs each command ``--repeats`` times in a fresh interpreter (``python -m densecal ...``) and
prints one JSON object with the median and minimum wall time in seconds, and whether the
command imported Lightning (read from ``python -X importtime`` in one extra run). The evaluate
command scores 10 pairs of 256 x 256 8-bit PNG maps (``evaluate_throughput.write_pairs``) in a
temporary folder, so its time is mostly start-up (imports), not metrics.

``--baseline DIR`` also measures another checkout's ``src`` folder (put first on
``PYTHONPATH``) in the same run, alternating the two runs of each command, and reports the
ratios baseline / this checkout (``git worktree add /tmp/old <commit>``, then
``--baseline /tmp/old/src``). ``--write`` saves the JSON to ``benchmarks/results/startup.json``.
Time it on an idle machine: the load average is recorded.

Usage::

    python benchmarks/startup.py [--repeats 7] [--baseline DIR] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evaluate_throughput import write_pairs


def _env(src: Path | None) -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
    return env


def _run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "densecal", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _imports(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """Whether the command imports Lightning, and how many modules, from ``-X importtime``."""
    trace = subprocess.run([sys.executable, "-X", "importtime", "-m", "densecal", *args], env=env,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True).stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines() if "|" in line}
    return {"imports_lightning": any(m.split(".")[0] in ("lightning", "pytorch_lightning")
                                     for m in imported),
            "modules_imported": len(imported)}


def time_commands(commands: dict[str, list[str]], envs: dict[str, dict[str, str]],
                  repeats: int) -> dict[str, dict[str, dict[str, object]]]:
    """``{code: {command: {median_s, min_s, imports_lightning, modules_imported}}}``; the codes'
    runs of one command alternate, so a drift in machine load touches both alike."""
    out: dict[str, dict[str, dict[str, object]]] = {code: {} for code in envs}
    for command, args in commands.items():
        times: dict[str, list[float]] = {code: [] for code in envs}
        for _ in range(repeats):
            for code, env in envs.items():
                times[code].append(_run(args, env))
        for code, env in envs.items():
            out[code][command] = {"median_s": round(statistics.median(times[code]), 3),
                                  "min_s": round(min(times[code]), 3), **_imports(args, env)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout's src folder, measured in the same run")
    parser.add_argument("--write", action="store_true",
                        help="also write benchmarks/results/startup.json")
    args = parser.parse_args()
    envs = {"this": _env(None)}
    if args.baseline is not None:
        envs["baseline"] = _env(args.baseline)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        pred, gt = write_pairs(Path(tmp), n=10, size=256)
        commands = {"help": ["--help"],
                    "evaluate_10_pairs": ["evaluate", "--pred", str(pred), "--gt", str(gt),
                                          "--out", str(Path(tmp) / "eval")]}
        measured = time_commands(commands, envs, args.repeats)
    result: dict[str, object] = {
        "benchmark": "startup",
        "load_average_1min_before": load,
        "load_average_1min_after": os.getloadavg()[0],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "repeats": args.repeats,
        "baseline_src": str(args.baseline) if args.baseline else None,
        **measured,
    }
    if args.baseline is not None:
        result["speedup_baseline_over_this"] = {
            command: round(measured["baseline"][command]["median_s"]  # type: ignore[operator]
                           / measured["this"][command]["median_s"], 2)
            for command in commands}
    text = json.dumps(result, indent=2)
    print(text)
    if args.write:
        from densecal.atomic import atomic_write_text

        atomic_write_text(Path(__file__).resolve().parent / "results" / "startup.json",
                          text + "\n")


if __name__ == "__main__":
    main()
