"""Helpers of the training tests that run ``densecal`` as child processes or in-process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import torch

LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                 "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED", "SLURM_PROCID",
                 "JSM_NAMESPACE_RANK")


def subprocess_env() -> dict[str, str]:
    """The test's environment for a ``densecal`` child: one thread, no launcher variables."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def start(args: list[str]) -> subprocess.Popen[str]:
    """``python -m densecal ARGS`` in a new session (Lightning's ddp launcher re-runs this
    command line for the other ranks, which join the session)."""
    return subprocess.Popen([sys.executable, "-m", "densecal", *args], env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc``'s session (its ranks included) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None and not proc.stdout.closed:
        proc.communicate()
    proc.wait()


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> None:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise
    assert proc.returncode == 0, out[-3000:]


def run_cli(args: list[str]) -> None:
    """``densecal ARGS`` in this process (no interpreter start-up), on one thread like the
    children; torch's thread count and deterministic-algorithms flag are restored after."""
    from densecal.cli.main import main

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
