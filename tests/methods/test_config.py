"""Run configuration: JSON round trip and refusal of unknown keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from densecal.errors import DensecalInputError
from densecal.methods.config import (
    TrainConfig,
    check_distributed,
    load_config,
    parse_devices,
    save_config,
)


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


def test_config_without_distributed_keys_gets_defaults(tmp_path: Path) -> None:
    """A config.json written before --num-nodes / --strategy existed still loads."""
    data = TrainConfig(devices="2").to_dict()
    del data["num_nodes"], data["strategy"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = load_config(tmp_path / "config.json")
    assert (loaded.devices, loaded.num_nodes, loaded.strategy) == ("2", 1, "auto")
    check_distributed(loaded)


@pytest.mark.parametrize(("text", "parsed"), [
    ("auto", "auto"), ("1", 1), (" 4 ", 4), (2, 2), ("-1", -1), ("0,2", [0, 2]), ("3,", [3]),
])
def test_parse_devices(text: str | int, parsed: object) -> None:
    assert parse_devices(text) == parsed


@pytest.mark.parametrize("text", ["0", "-2", "two", "", "0,0", "1,-1", ",", "1.5", True])
def test_parse_devices_refuses(text: object) -> None:
    with pytest.raises(DensecalInputError, match=r"^--devices: expected auto, a device count"):
        parse_devices(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "message"), [
    ({"num_nodes": 0}, "--num-nodes: must be a positive integer, got 0"),
    ({"num_nodes": True}, "--num-nodes: must be a positive integer"),
    ({"strategy": "dpp"}, "--strategy: unknown value 'dpp'; choose one of auto, ddp, "),
    ({"accelerator": "tpuu"}, "--accelerator: unknown value 'tpuu'; choose one of auto, cpu, "),
    ({"devices": "x"}, "--devices: expected auto"),
])
def test_check_distributed_refuses(change: dict[str, object], message: str) -> None:
    with pytest.raises(DensecalInputError) as info:
        check_distributed(dataclasses.replace(TrainConfig(), **change))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_check_distributed_accepts_lightning_names() -> None:
    for strategy in ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"):
        for accelerator in ("auto", "cpu", "gpu", "cuda"):
            check_distributed(TrainConfig(strategy=strategy, accelerator=accelerator,
                                          devices="0,1", num_nodes=2))


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("--devices", "two", "--devices: expected auto"),
    ("--num-nodes", "0", "--num-nodes: must be a positive integer"),
    ("--strategy", "ddp2", "--strategy: unknown value 'ddp2'"),
    ("--seed", "-1", "--seed: must be an integer in [0, 2**32 - 1]"),
    ("--lr-decay-every", "0", "--lr-decay-every: must be a positive integer"),
])
def test_cli_train_bad_distributed_option_exits_2(option: str, value: str, fragment: str,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from densecal.cli.main import main

    out = tmp_path / "run"  # beside the (never read) data folder, not inside it
    with pytest.raises(SystemExit) as info:
        main(["train", "--method", "aslp", "--data", str(tmp_path / "data"), "--out", str(out),
              option, value])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and fragment in err and len(err.splitlines()) == 1, err
    assert not out.exists()
