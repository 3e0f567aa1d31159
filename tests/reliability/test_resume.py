"""``train --resume`` changes nothing until its checkpoint is known to load, and finds its data
from any working directory (issue 16, A4)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from densecal.cli.main import main


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def run(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of a finished 2-epoch ASLP run."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parents[1], copy)
    return copy


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign(path: Path) -> None:
    torch.save({"state_dict": {}, "hyper_parameters": {"config": {"method": "car"}}}, path)


@pytest.mark.parametrize("damage", [_truncate, _foreign], ids=["truncated", "foreign"])
def test_resume_with_a_bad_checkpoint_changes_nothing(damage, run: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    ckpt = run / "checkpoints" / "last.ckpt"
    damage(ckpt)
    before = _digest(run)
    with pytest.raises(SystemExit) as info:
        main(["train", "--out", str(run), "--epochs", "3", "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and str(ckpt) in err[0], err
    assert _digest(run) == before  # config.json as it was, no logs/version_1


def test_resume_from_another_directory(tiny_demo: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started with relative paths resumes on the same data from anywhere."""
    work = tmp_path / "work"
    shutil.copytree(tiny_demo["train"].parent, work / "scenes")
    monkeypatch.chdir(work)
    main(["train", "--method", "bce", "--data", "scenes/train", "--val-data", "scenes/val",
          "--image-size", "32", "--epochs", "1", "--out", "run"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    main(["train", "--out", str(work / "run"), "--epochs", "2", "--resume"])
    assert sorted(p.name for p in (work / "run" / "logs").iterdir()) == ["version_0",
                                                                         "version_1"]
    assert os.path.isabs(json.loads((work / "run" / "config.json").read_text())["data"])


def test_resume_says_which_typed_options_the_saved_run_keeps(
        run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = json.loads((run / "config.json").read_text())
    main(["train", "--out", str(run), "--epochs", "3", "--resume", "--lr", "0.5",
          "--batch-size", str(saved["batch_size"]), "--seed", str(saved["seed"] + 1)])
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == [f"densecal: note: --resume keeps the run's saved lr {saved['lr']!r} (not "
                     f"0.5), seed {saved['seed']!r} (not {saved['seed'] + 1}); only --epochs "
                     f"changes a resumed run"]
    assert json.loads((run / "config.json").read_text())["lr"] == saved["lr"]
