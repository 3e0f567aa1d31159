"""No verb writes into, over or around its inputs (issue 16, A1).

``--out`` that is an input folder, lies inside one, or contains an input (a checkpoint, a data
folder) is refused before anything is read: exit code 2, one line naming ``--out`` and the
input's option, and every input file byte-identical afterwards. Paths are compared resolved, so
a ``..`` detour or a symbolic link to the input is caught too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from densecal.cli.main import main


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (or of ``root`` itself), keyed by relative path."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


@pytest.fixture()
def inputs(tiny_demo: dict[str, Path], tiny_checkpoint: Path, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the demo test split and of the checkpoint (the tests try to harm them)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_demo["test"], data)
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    ckpt = ckpt_dir / "last.ckpt"
    shutil.copy2(tiny_checkpoint, ckpt)
    link = tmp_path / "link-to-data"
    os.symlink(data, link)
    return {"data": data, "images": data / "images", "masks": data / "masks", "ckpt": ckpt,
            "run": tmp_path / "run", "link": link, "tmp": tmp_path}


Argv = Callable[[dict[str, Path]], tuple[list[str], str]]

CASES: dict[str, Argv] = {
    # predict: maps NAME.png would replace images NAME.png or the masks
    "predict --out = images": lambda p: (
        ["predict", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["images"])], "--data"),
    "predict --out = masks": lambda p: (
        ["predict", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["masks"])], "--data"),
    "predict --out = data": lambda p: (
        ["predict", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["data"])], "--data"),
    "predict --out via ..": lambda p: (
        ["predict", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["data"] / ".." / "data" / "images")], "--data"),
    "predict --out via a link": lambda p: (
        ["predict", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["link"] / "masks")], "--data"),
    "predict --out contains the checkpoint": lambda p: (
        ["predict", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["run"])], "--checkpoint"),
    # evaluate: the result files would litter the maps or masks folder
    "evaluate --out = --pred": lambda p: (
        ["evaluate", "--pred", str(p["masks"]), "--gt", str(p["data"]), "--out",
         str(p["masks"])], "--pred"),
    "evaluate --out inside --gt": lambda p: (
        ["evaluate", "--pred", str(p["masks"]), "--gt", str(p["data"]), "--out",
         str(p["data"] / "eval")], "--gt"),
    "evaluate --out contains --checkpoint": lambda p: (
        ["evaluate", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["tmp"] / "run")], "--checkpoint"),
    "evaluate --out = --ood": lambda p: (
        ["evaluate", "--checkpoint", str(p["ckpt"]), "--data", str(p["masks"]), "--ood",
         str(p["images"]), "--out", str(p["images"])], "--ood"),
    # calibrate: a checkpoint written into the data folder
    "calibrate --out inside --data": lambda p: (
        ["calibrate", "--checkpoint", str(p["ckpt"]), "--data", str(p["data"]), "--out",
         str(p["data"] / "calibrated.ckpt")], "--data"),
    # sample: sub-folders written among the images
    "sample --out = --data": lambda p: (
        ["sample", "--checkpoint", str(p["ckpt"]), "--data", str(p["images"]), "--out",
         str(p["images"])], "--data"),
    # train: a run folder inside the training data, or around it
    "train --out inside --data": lambda p: (
        ["train", "--method", "bce", "--data", str(p["data"]), "--out",
         str(p["data"] / "run")], "--data"),
    "train --out contains --val-data": lambda p: (
        ["train", "--method", "bce", "--data", str(p["data"]), "--val-data", str(p["data"]),
         "--out", str(p["tmp"])], "--data"),
    # data converters
    "data nifti --out inside --data": lambda p: (
        ["data", "nifti", "--data", str(p["data"]), "--out", str(p["data"] / "slices")],
        "--data"),
    "data voc --out = --root": lambda p: (
        ["data", "voc", "--root", str(p["data"]), "--out", str(p["data"])], "--root"),
    "data coco --out contains --images": lambda p: (
        ["data", "coco", "--annotations", str(p["tmp"] / "a.json"), "--images",
         str(p["images"]), "--out", str(p["data"])], "--images"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_out_overlapping_an_input_is_refused(case: str, inputs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    argv, culprit = CASES[case](inputs)
    before = {**_digest(inputs["data"]), **_digest(inputs["run"])}
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("densecal: error: --out: ") and f"({culprit})" in lines[0], lines[0]
    assert {**_digest(inputs["data"]), **_digest(inputs["run"])} == before
    assert sorted(p.name for p in inputs["tmp"].iterdir()) == ["data", "link-to-data", "run"]


def test_sibling_out_is_accepted(inputs: dict[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The check can pass: maps beside the data folder are written."""
    out = inputs["tmp"] / "maps"
    main(["predict", "--checkpoint", str(inputs["ckpt"]), "--data", str(inputs["data"]),
          "--out", str(out)])
    assert len(list(out.glob("*.png"))) == len(list(inputs["images"].iterdir()))
