"""Ctrl+C ends every verb with ``densecal: interrupted`` and exit code 130 (issue 16, C).

Lightning turns a KeyboardInterrupt during ``fit`` into ``sys.exit(1)``; densecal's entry point
records the SIGINT and still reports the interrupt. The signal is sent at an observable point:
after the run's first checkpoint exists, so training is in progress.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def test_sigint_during_training_exits_130(tiny_demo: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
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
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "densecal: interrupted", err
    assert "Traceback" not in err
    assert (run / "checkpoints" / "last.ckpt").is_file()  # the finished epoch survives
