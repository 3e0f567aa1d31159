"""Run configuration: JSON round trip and refusal of unknown keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densecal.errors import DensecalInputError
from densecal.methods.config import TrainConfig, load_config, save_config


def test_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(method="aslp", data="x", epochs=3, beta=1.5)
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TrainConfig().to_dict(), "learning_rate": 1.0}))
    with pytest.raises(DensecalInputError, match="unknown keys learning_rate"):
        load_config(path)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(DensecalInputError, match="not valid JSON"):
        load_config(path)
