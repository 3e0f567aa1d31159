"""Out-of-range sizes and numbers end with one line naming the option, exit code 2, nothing
written (issue 16, B and C): negative worker counts, zero or negative batch sizes, a negative or
NaN learning rate, and sizes no machine could allocate (``--n-bins 2000000000``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from densecal.cli.main import main


def _cases(demo: dict[str, Path], ckpt: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    train = ["train", "--method", "bce", "--data", str(demo["train"]), "--val-data",
             str(demo["val"]), "--image-size", "32", "--out", str(tmp / "run")]
    evaluate = ["evaluate", "--pred", str(demo["test"] / "masks"), "--gt", str(demo["test"]),
                "--out", str(tmp / "eval")]
    return {
        "evaluate --num-workers -1": ([*evaluate, "--num-workers", "-1"], "--num-workers"),
        "evaluate --num-workers 99999": ([*evaluate, "--num-workers", "99999"], "--num-workers"),
        "evaluate --n-bins 2000000000": ([*evaluate, "--n-bins", "2000000000"], "--n-bins"),
        "train --num-workers -1": ([*train, "--num-workers", "-1"], "--num-workers"),
        "train --lr -1": ([*train, "--lr", "-1"], "--lr"),
        "train --lr nan": ([*train, "--lr", "nan"], "--lr"),
        "train --batch-size 0": ([*train, "--batch-size", "0"], "--batch-size"),
        "train --batch-size 2000000000": ([*train, "--batch-size", "2000000000"],
                                          "--batch-size"),
        "train --epochs 0": ([*train, "--epochs", "0"], "--epochs"),
        "predict --batch-size 0": (["predict", "--checkpoint", str(ckpt), "--data",
                                    str(demo["test"]), "--out", str(tmp / "maps"),
                                    "--batch-size", "0"], "--batch-size"),
        "predict --batch-size -1": (["predict", "--checkpoint", str(ckpt), "--data",
                                     str(demo["test"]), "--out", str(tmp / "maps"),
                                     "--batch-size", "-1"], "--batch-size"),
        "calibrate --batch-size 0": (["calibrate", "--checkpoint", str(ckpt), "--data",
                                      str(demo["val"]), "--out", str(tmp / "cal.ckpt"),
                                      "--batch-size", "0"], "--batch-size"),
        "evaluate --checkpoint --batch-size": (["evaluate", "--checkpoint", str(ckpt), "--data",
                                                str(demo["test"]), "--out", str(tmp / "eval"),
                                                "--n-bins", "0"], "--n-bins"),
    }


CASE_NAMES = sorted(_cases({"train": Path(), "val": Path(), "test": Path()}, Path(), Path()))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_out_of_range_option_is_refused(case: str, tiny_demo: dict[str, Path],
                                        tiny_checkpoint: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv, flag = _cases(tiny_demo, tiny_checkpoint, tmp_path)[case]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert info.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"densecal: error: {flag}: "), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
