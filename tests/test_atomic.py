"""Atomic output: a failed write leaves the previous file or folder content untouched."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

import pytest

from densecal import atomic
from densecal.atomic import (
    OUTPUT_MARKER,
    atomic_path,
    atomic_write_text,
    claim_workspace,
    output_kind,
    staged_directory,
)
from densecal.errors import DensecalInputError


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_files_get_umask_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_staged_directory_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_directory(out, "t") as stage:
        (stage / "a.txt").write_text("1")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("2")
    assert (out / "a.txt").read_text() == "1" and (out / "sub" / "b.txt").read_text() == "2"
    assert output_kind(out) == "t"
    with pytest.raises(ValueError), staged_directory(out, "t") as stage:
        (stage / "a.txt").write_text("changed")
        raise ValueError("bad input halfway")
    assert (out / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_earlier_result_is_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          exchange: bool) -> None:
    if not exchange:
        monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    out = tmp_path / "out"
    with staged_directory(out, "t") as stage:
        (stage / "metrics.json").write_text("old")
        (stage / "metrics_ood.json").write_text("old ood")
    with staged_directory(out, "t") as stage:
        (stage / "metrics.json").write_text("new")
    assert _names(out) == [OUTPUT_MARKER, "metrics.json"]  # the stale OOD file is gone
    assert (out / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_empty_folder_is_used_and_a_symlink_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with staged_directory(link, "t") as stage:
        (stage / "a.txt").write_text("1")
    assert link.is_symlink() and (real / "a.txt").read_text() == "1"


def test_user_folder_and_other_kind_are_refused(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("mine")
    with pytest.raises(DensecalInputError, match="not written by densecal"), \
            staged_directory(user, "t"):
        pytest.fail("the block must not run")
    assert _names(user) == ["thesis.tex"]
    other = tmp_path / "maps"
    with staged_directory(other, "predict") as stage:
        (stage / "a.png").write_text("map")
    with pytest.raises(DensecalInputError, match="predict output, not evaluate"), \
            staged_directory(other, "evaluate"):
        pytest.fail("the block must not run")
    assert (other / "a.png").read_text() == "map"


def test_abandoned_staging_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    dead = tmp_path / ".out.dead1234.staging"
    dead.mkdir()
    (dead / "half.json").write_text("{")
    live = tmp_path / ".out.live1234.staging"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a concurrent run holds it
    try:
        with staged_directory(tmp_path / "out", "t") as stage:
            (stage / "a.txt").write_text("1")
    finally:
        os.close(fd)
    assert not dead.exists() and live.is_dir()


def test_swap_killed_between_two_renames_is_undone(tmp_path: Path) -> None:
    # the fallback swap renames out -> .out.X.old, then stage -> out; a kill between them
    # leaves no out: the next run brings the old result back before doing anything else
    old = tmp_path / ".out.k1.old"
    old.mkdir()
    (old / "metrics.json").write_text("old")
    (old / OUTPUT_MARKER).write_text(json.dumps({"schema": "densecal.output/1", "kind": "t"}))
    (tmp_path / ".out.k1.staging").mkdir()
    with pytest.raises(ValueError), staged_directory(tmp_path / "out", "t"):
        raise ValueError("this run fails too")
    assert (tmp_path / "out" / "metrics.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_workspace_claim(tmp_path: Path) -> None:
    ws = claim_workspace(tmp_path / "ws", "demo-workspace")
    (ws / "runs").mkdir()
    assert claim_workspace(ws, "demo-workspace") == ws  # re-opened
    with pytest.raises(DensecalInputError, match="not benchmark-workspace output"):
        claim_workspace(ws, "benchmark-workspace")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(DensecalInputError, match="not written by densecal"):
        claim_workspace(tmp_path / "mine", "demo-workspace")
    assert _names(tmp_path / "mine") == ["notes.txt"]


def test_replaced_result_left_by_a_kill_after_the_swap_is_removed(tmp_path: Path) -> None:
    # two-rename swap killed after the new result is in place, before the old one is deleted
    with staged_directory(tmp_path / "out", "t") as stage:
        (stage / "metrics.json").write_text("new")
    old = tmp_path / ".out.k2.old"
    old.mkdir()
    (old / "metrics.json").write_text("old")
    with staged_directory(tmp_path / "other", "t") as stage:  # another result, same parent
        (stage / "a.txt").write_text("1")
    assert old.is_dir()  # only runs into `out` clean up after `out`
    with staged_directory(tmp_path / "out", "t") as stage:
        (stage / "metrics.json").write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "out"]
