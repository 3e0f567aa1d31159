"""Progress of long jobs: silent for library users, rich on a terminal, plain lines in logs."""

from __future__ import annotations

import sys

import pytest

from densecal import progress
from densecal.progress import reporting, track


def test_off_by_default_and_items_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(track(iter([3, 1, 2]), "evaluate", total=3)) == [3, 1, 2]
    assert capsys.readouterr() == ("", "")


def test_plain_lines_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    with reporting():
        assert list(track(["a", "b", "c", "d"], "evaluate")) == ["a", "b", "c", "d"]
    lines = capsys.readouterr().err.splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == [
        "densecal: evaluate: 1/4 images (25 %)", "densecal: evaluate: 2/4 images (50 %)",
        "densecal: evaluate: 3/4 images (75 %)", "densecal: evaluate: 4/4 images (100 %)"]


def test_a_short_job_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with reporting():
        assert sum(track(range(1000), "evaluate")) == 499500  # far below PLAIN_EVERY_S
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich renders as on a terminal
    monkeypatch.setenv("TERM", "xterm")
    with reporting():
        assert list(track(range(5), "predict")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "predict" in err and "5/5" in err


def test_reporting_is_scoped(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    with reporting(), reporting(on=False):
        list(track(range(3), "evaluate"))
    list(track(range(3), "evaluate"))
    assert capsys.readouterr().err == ""
