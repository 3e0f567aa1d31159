"""Real failures, not simulated ones: a full disk (a tiny tmpfs), a read-only file system (a
remount), SIGKILL at observable points and two runs racing into one ``--out``.

After each: the exit code and one stderr line naming the user's output (never a staging path),
no traceback, the earlier result all old or all new (sha256), and no staging folder left behind
once the next run has started. The mounts need root and ``mount``; elsewhere those cases skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densecal.atomic import OUTPUT_MARKER

_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "densecal", *args], cwd=cwd, env=_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _pairs(root: Path, n: int, size: int = 48) -> tuple[Path, Path]:
    rng = np.random.default_rng(n)
    pred, gt = root / "pred", root / "gt"
    pred.mkdir(parents=True)
    gt.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), np.uint8)).save(pred / f"m{i:04d}.png")
        Image.fromarray((rng.random((size, size)) > 0.5).astype(np.uint8) * 255).save(
            gt / f"m{i:04d}.png")
    return pred, gt


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _staging(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith((".staging", ".old")))


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("densecal: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _pairs(tmp_path_factory.mktemp("small"), 4)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Enough maps that an evaluation runs for a few seconds: time to interrupt it."""
    return _pairs(tmp_path_factory.mktemp("large"), 400, size=96)


def _mount(point: Path, *options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(point)],
                          capture_output=True)
    return done.returncode == 0


def _tmpfs(point: Path, size: str, why: str) -> Iterator[Path]:
    if not _mount(point, f"size={size}"):
        pytest.skip(f"needs root and mount for {why}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 KiB tmpfs: room for a staging folder, not for a result."""
    yield from _tmpfs(tmp_path / "disk", "24k", "a real full disk")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs the test remounts read-only."""
    yield from _tmpfs(tmp_path / "ro", "4m", "a real read-only file system")


def test_full_disk_names_the_output_and_leaves_nothing(small: tuple[Path, Path],
                                                      tiny_disk: Path, tmp_path: Path) -> None:
    pred, gt = small
    out = tiny_disk / "result"
    code, err = _finish(_cli("evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out),
                             cwd=tmp_path))
    assert code == 2
    line = _one_error_line(err)
    assert f"{out}" in line and "No space left on device" in line and ".staging" not in line
    assert not out.exists() and list(tiny_disk.iterdir()) == []


def test_full_disk_keeps_the_earlier_result(small: tuple[Path, Path], tiny_disk: Path,
                                            tmp_path: Path) -> None:
    pred, gt = small
    out = tiny_disk / "result"
    out.mkdir()
    (out / "metrics.json").write_text("{}\n")  # an earlier (small) result densecal wrote
    (out / OUTPUT_MARKER).write_text('{"schema": "densecal.output/1", "kind": "evaluate"}\n')
    before = _digest(out)
    code, err = _finish(_cli("evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out),
                             cwd=tmp_path))
    assert code == 2 and "No space left on device" in _one_error_line(err)
    assert _digest(out) == before and _staging(tiny_disk) == []


@pytest.mark.parametrize("verb", ["evaluate", "data-demo"])
def test_read_only_file_system_is_one_line(verb: str, small: tuple[Path, Path],
                                           read_only_disk: Path, tmp_path: Path) -> None:
    pred, gt = small
    out = read_only_disk / "result"
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_disk)], check=True)
    args = (["evaluate", "--pred", str(pred), "--gt", str(gt)] if verb == "evaluate"
            else ["data", "demo"])
    code, err = _finish(_cli(*args, "--out", str(out), cwd=tmp_path))
    assert code == 2
    line = _one_error_line(err)
    assert str(out) in line and "Read-only file system" in line
    assert list(read_only_disk.iterdir()) == []


def _wait_for(predicate: object, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            pytest.fail("the observable point was never reached")
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkill_while_staging_keeps_the_old_result_and_is_cleaned(
        large: tuple[Path, Path], tmp_path: Path) -> None:
    pred, gt = large
    out = tmp_path / "result"
    assert _finish(_cli("evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out),
                        cwd=tmp_path))[0] == 0
    before = _digest(out)
    proc = _cli("evaluate", "--pred", str(pred), "--gt", str(gt), "--ood", str(pred), "--out",
                str(out), cwd=tmp_path)
    _wait_for(lambda: _staging(tmp_path) != [])  # the staging folder is present
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _digest(out) == before  # all old: metrics_ood.json never appears beside it
    assert _staging(tmp_path) != []  # the killed run's folder is left ...
    assert _finish(_cli("evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out),
                        cwd=tmp_path))[0] == 0
    assert _staging(tmp_path) == []  # ... and removed by the next run
    assert _digest(out) == before  # same inputs, same bytes


_KILL_AT_SWAP = """
import os, signal, sys
from densecal import atomic
real = atomic._put_in_place
def put_in_place(stage, *args, **kwargs):
    if os.environ.get("KILL_AT") == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(stage, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # after the swap, before the old result is deleted
atomic._put_in_place = put_in_place
if os.environ.get("TWO_RENAMES"):
    atomic._renameat2 = lambda: None
from densecal.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("two_renames", [False, True], ids=["exchange", "two-renames"])
def test_sigkill_around_the_swap_is_all_old_or_all_new(when: str, two_renames: bool,
                                                       small: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    pred, gt = small
    out = tmp_path / "result"
    first = ("evaluate", "--pred", str(pred), "--gt", str(gt), "--ood", str(pred), "--out",
             str(out))
    assert _finish(_cli(*first, cwd=tmp_path))[0] == 0
    old = _digest(out)
    env = {**_ENV, "KILL_AT": when, **({"TWO_RENAMES": "1"} if two_renames else {})}
    done = subprocess.run([sys.executable, "-c", _KILL_AT_SWAP, *first[:-4], "--n-bins", "7",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL
    now = _digest(out)
    if when == "before":
        assert now == old
    else:  # all new: 7 bins and no OOD files of the earlier run beside it
        assert '"n_bins": 7' in (out / "metrics.json").read_text()
        assert not (out / "metrics_ood.json").exists()
    assert _finish(_cli(*first, cwd=tmp_path))[0] == 0  # the next run cleans up
    assert _staging(tmp_path) == [] and _digest(out) == old


def test_two_runs_into_one_new_folder_both_finish(small: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    pred, gt = small
    out = tmp_path / "result"
    runs = [_cli("evaluate", "--pred", str(pred), "--gt", str(gt), "--n-bins", str(bins),
                 "--out", str(out), cwd=tmp_path) for bins in (5, 9)]
    results = [_finish(p) for p in runs]
    assert [code for code, _ in results] == [0, 0], results
    text = (out / "metrics.json").read_text()
    assert ('"n_bins": 5' in text) != ('"n_bins": 9' in text)  # one whole result won
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [OUTPUT_MARKER, "metrics.json", "per_image.csv", "reliability.png", "report.md",
         "risk_coverage.png"])
    assert _staging(tmp_path) == []


def test_a_full_tmpdir_does_not_stop_training(tiny_demo: dict[str, Path], tmp_path: Path) -> None:
    # Lightning's writer staged checkpoints in $TMPDIR (fsspec): an 8 KiB /tmp failed the run
    # with "No space left on device" although the run folder had room
    tmp = tmp_path / "tmp"
    if not _mount(tmp, "size=8k"):
        pytest.skip("needs root and mount for a real full disk")
    try:
        run = tmp_path / "run"
        done = subprocess.run(
            [sys.executable, "-m", "densecal", "train", "--data", str(tiny_demo["train"]),
             "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--val-fraction",
             "0.25", "--out", str(run)], cwd=tmp_path, env={**_ENV, "TMPDIR": str(tmp)},
            capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (run / "checkpoints" / "last.ckpt").stat().st_size > 10_000
    finally:
        subprocess.run(["umount", "-l", str(tmp)], check=False)
