"""Usage errors print one ``densecal: error:`` line, not typer's multi-line box (issue 16, F).

A misspelt verb or option, a value of the wrong type or a missing value ends with exit code 2
and one line that names the culprit (with typer's "did you mean" where it has one).
"""

from __future__ import annotations

import pytest

from densecal.cli.main import main

CASES = [
    (["evaluate", "--n-bins", "ten", "--pred", "p", "--gt", "g"], "'--n-bins'"),
    (["evaluat", "--pred", "p"], "Did you mean 'evaluate'?"),
    (["evaluate", "--pred", "p", "--gt", "g", "--nbins", "3"], "--nbins"),
    (["train", "--epochs", "many"], "'--epochs'"),
    (["predict", "--format"], "--format"),
    (["data", "demo", "--seed", "1.5"], "'--seed'"),
    (["data", "bogus"], "No such command 'bogus'"),
    (["calibrate", "--checkpoint"], "--checkpoint"),
    (["evaluate", "--threshold", "half"], "'--threshold'"),
    (["benchmark", "--seeds", "three"], "'--seeds'"),
]


@pytest.mark.parametrize(("argv", "fragment"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_usage_error_is_one_line(argv: list[str], fragment: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densecal: error: "), err
    assert fragment in lines[0] and "╭" not in err and out == "", err


def test_no_arguments_shows_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``densecal`` alone prints the help (exit 2, as a usage error), and no error line."""
    with pytest.raises(SystemExit) as info:
        main([])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and "Usage: densecal" in out and err == ""
