"""``densecal train`` dispatch to method families (car) and ``--set FAMILY.KEY=VALUE``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from densecal.cli.main import main
from densecal.cli.train import parse_settings
from densecal.data.synthetic.ambiguity import AmbiguityConfig, write_ambiguity_dataset
from densecal.errors import DensecalInputError
from densecal.methods import method_names


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def test_parse_settings_json_and_text() -> None:
    got = parse_settings(["car.cal_weight=0", "car.betas=[0.5, 0.9]", "ud.teacher=runs/t.ckpt",
                          "car.cal_weight=2.5"])
    assert got == {"car": {"cal_weight": 2.5, "betas": [0.5, 0.9]},
                   "ud": {"teacher": "runs/t.ckpt"}}
    for bad in ("car", "cal_weight=0", ".x=1", "car.=1"):
        with pytest.raises(DensecalInputError, match="--set"):
            parse_settings([bad])


def test_car_trains_resumes_and_samples_from_the_cli(tmp_path: Path, capsys) -> None:
    assert "car" in method_names()
    data = write_ambiguity_dataset(tmp_path / "amb", AmbiguityConfig(size=32, n_train=8, n_val=4,
                                                                     n_test=2))
    run = tmp_path / "car"
    args = ["train", "--method", "car", "--num-classes", "16", "--data", str(data["train"]),
            "--val-data", str(data["val"]), "--epochs", "1", "--image-size", "32",
            "--batch-size", "4", "--set", "car.samples=2", "--set", "car.cal_weight=0",
            "--out", str(run)]
    assert _run(args) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"] == "car" and saved["extra"]["car"]["cal_weight"] == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    first = torch.load(ckpt, weights_only=False)["epoch"]
    assert _run(["train", "--out", str(run), "--epochs", "2", "--resume"]) == 0
    assert torch.load(ckpt, weights_only=False)["epoch"] == first + 1  # one more epoch
    assert _run(["sample", "--checkpoint", str(run / "checkpoints" / "last.ckpt"),
                 "--data", str(data["test"]), "--n", "3", "--out", str(tmp_path / "s")]) == 0
    sample_dirs = sorted((tmp_path / "s").glob("test_*"))
    assert len(sample_dirs) == 2
    capsys.readouterr()
    assert _run(["train", "--method", "car", "--num-classes", "16", "--data", str(data["train"]),
                 "--set", "car.nope=1", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown keys nope" in capsys.readouterr().err
