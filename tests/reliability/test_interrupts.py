"""Ctrl+C ends every verb with ``densecal: interrupted`` and exit code 130 (issue 16, C);
SIGTERM during training with ``densecal: terminated`` and exit code 143.

Lightning turns a KeyboardInterrupt during ``fit`` into ``sys.exit(1)``; densecal's entry point
records the SIGINT and still reports the interrupt. Lightning turns SIGTERM into a graceful stop
whose ``SystemExit`` has code None (success, before densecal 0.2: a script chaining
``densecal train`` and ``densecal sample`` went on with a half-trained model). The signal is sent
at an observable point: after the run's first checkpoint exists, so training is in progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _signal_during_training(tiny_demo: dict[str, Path], run: Path, signum: int
                            ) -> tuple[int, str]:
    """Start ``densecal train`` for 100,000 epochs, send ``signum`` once its first checkpoint
    exists; returns ``(exit code, stderr)``."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "densecal", "train", "--method", "bce", "--data",
         str(tiny_demo["train"]), "--val-data", str(tiny_demo["val"]), "--image-size", "32",
         "--epochs", "100000", "--out", str(run)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoints" / "last.ckpt").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_sigint_during_training_exits_130(tiny_demo: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, err = _signal_during_training(tiny_demo, run, signal.SIGINT)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "densecal: interrupted", err
    assert "Traceback" not in err
    assert (run / "checkpoints" / "last.ckpt").is_file()  # the finished epoch survives


def test_sigterm_during_training_exits_143(tiny_demo: dict[str, Path], tmp_path: Path) -> None:
    from densecal.methods.engine.checkpoints import epochs_trained, read_checkpoint

    run = tmp_path / "run"
    code, err = _signal_during_training(tiny_demo, run, signal.SIGTERM)
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "densecal: terminated", err
    assert "Traceback" not in err and "checkpoint:" not in err
    state, _ = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert 1 <= epochs_trained(state) < 100000  # finished epochs only, the run is not done
