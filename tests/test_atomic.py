"""Atomic output: a failed write leaves the previous file or folder content untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from densecal.atomic import atomic_path, atomic_write_text, staged_directory


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
    with staged_directory(out) as stage:
        (stage / "a.txt").write_text("1")
        (stage / "sub").mkdir()
        (stage / "sub" / "b.txt").write_text("2")
    assert (out / "a.txt").read_text() == "1" and (out / "sub" / "b.txt").read_text() == "2"
    with pytest.raises(ValueError), staged_directory(out) as stage:
        (stage / "a.txt").write_text("changed")
        raise ValueError("bad input halfway")
    assert (out / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
