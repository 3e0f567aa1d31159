"""No library warning reaches the console in normal use (issue 16, UX).

``densecal evaluate`` of 8-bit PNG maps used to print torch's two-line "non-writable NumPy
array" UserWarning on every run; the command runs here in a child process with Python's default
warning filters, and its stderr must be empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def test_evaluate_png_maps_prints_no_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for folder in ("pred", "gt"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(
            tmp_path / "pred" / f"{i}.png")
        Image.fromarray(((rng.random((16, 16)) > 0.5) * 255).astype(np.uint8)).save(
            tmp_path / "gt" / f"{i}.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-m", "densecal", "evaluate", "--pred",
                           str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--out",
                           str(tmp_path / "eval")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_densecal_warnings_are_one_note_line_each(tmp_path: Path) -> None:
    """``--recipe official`` uses the code's b = 2 (targets -1 and 2): densecal warns about it,
    and the console shows it once as a ``densecal: note:`` line, not Python's warning display
    (file, line, source) once per place that warns."""
    rng = np.random.default_rng(1)
    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / "data" / "images" / f"{i}.png")
        Image.fromarray(((rng.random((16, 16)) > 0.5) * 255).astype(np.uint8)).save(
            tmp_path / "data" / "masks" / f"{i}.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-m", "densecal", "train", "--recipe", "official",
                           "--data", str(tmp_path / "data"), "--val-fraction", "0.5",
                           "--epochs", "1", "--image-size", "16", "--batch-size", "2",
                           "--out", str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [line for line in done.stderr.splitlines() if line.startswith("densecal: note:")]
    assert notes == ["densecal: note: beta: b = 2.0 (paper beta = 4.0) puts perturbed targets "
                     "at -1 / 2, outside [0, 1]"]
    assert "Warning" not in done.stderr
