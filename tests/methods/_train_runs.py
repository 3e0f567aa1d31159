"""Helpers of the training tests that run ``densecal`` as child processes or in-process."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

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


def kill_after_first_checkpoint(proc: subprocess.Popen[str], ckpt: Path,
                                timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``ckpt`` exists (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    stop(proc)


def killed_and_reference_runs(args: list[str], full: Path, cut: Path,
                              killed_extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train ``densecal ARGS`` twice: into ``cut`` in a child process SIGKILLed as soon as its
    first ``checkpoints/last.ckpt`` appears, and meanwhile uninterrupted into ``full`` in this
    process. Returns the killed run's checkpoint (loaded); ``killed_extra`` are arguments of the
    killed run only (e.g. ``--num-workers 1``)."""
    ckpt = cut / "checkpoints" / "last.ckpt"
    proc = start([*args, *killed_extra, "--out", str(cut)])
    killer = threading.Thread(target=kill_after_first_checkpoint, args=(proc, ckpt))
    killer.start()
    try:  # the reference trains here meanwhile
        run_cli([*args, "--out", str(full)])
    finally:
        killer.join()
        stop(proc)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished or failed
    return torch.load(ckpt, map_location="cpu", weights_only=False)


def metrics_rows(path: Path, val_column: str = "val_accuracy"
                 ) -> dict[tuple[str, str, str], dict[str, str]]:
    """metrics.csv rows keyed by (epoch, step, kind): kind ``val`` where ``val_column`` is
    filled, else ``train``."""
    with path.open() as f:
        return {(r["epoch"], r["step"], "val" if r[val_column] else "train"): r
                for r in csv.DictReader(f)}


def assert_same_tensor(a: torch.Tensor, b: torch.Tensor, name: object) -> None:
    """``a`` equals ``b`` exactly (all-NaN float tensors count as equal)."""
    assert torch.equal(a, b) or (a.is_floating_point() and bool(torch.isnan(a).all())
                                 and bool(torch.isnan(b).all())), name


def assert_same_training_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two Lightning checkpoints hold the same loop position, weights and buffers, optimiser
    states (every optimiser) and schedulers, exactly."""
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert_same_tensor(value, b["state_dict"][key], key)
    assert len(a["optimizer_states"]) == len(b["optimizer_states"])
    for i, (oa, ob) in enumerate(zip(a["optimizer_states"], b["optimizer_states"], strict=True)):
        assert oa["param_groups"] == ob["param_groups"], i
        assert oa["state"].keys() == ob["state"].keys(), i
        for k, sa in oa["state"].items():
            assert sa.keys() == ob["state"][k].keys()
            for name, value in sa.items():
                assert_same_tensor(value, ob["state"][k][name], (i, k, name))
    assert a["lr_schedulers"] == b["lr_schedulers"]
