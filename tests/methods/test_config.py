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


def test_vls_options_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(method="vls", num_classes=3, vls_samples=4, vls_tau=1.5, vls_mix=0.25,
                         vls_latent=2, vls_stage1_epochs=7, vls_stage1="s1.ckpt")
    save_config(config, tmp_path / "config.json")
    loaded = load_config(tmp_path / "config.json")
    assert loaded == config and loaded.vls_stage1_epochs == 7 and loaded.vls_tau == 1.5


def test_config_without_vls_keys_gets_defaults(tmp_path: Path) -> None:
    """A config.json written before the vls options existed still loads."""
    data = TrainConfig().to_dict()
    for key in [k for k in data if k.startswith("vls_")]:
        del data[key]
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = load_config(tmp_path / "config.json")
    options = (loaded.vls_samples, loaded.vls_tau, loaded.vls_mix, loaded.vls_latent)
    assert options == (8, 2.0, 0.3, 3)
    assert loaded.vls_stage1_epochs is None and loaded.vls_stage1 is None
