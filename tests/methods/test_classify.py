"""Single-label classifier training, resume, loading and prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from densecal.data.classification import read_classification_folder
from densecal.data.readers import read_image
from densecal.data.synthetic.finegrained import FineGrainedConfig, write_finegrained_dataset
from densecal.data.synthetic.multilabel import write_multilabel_scenes
from densecal.errors import DensecalInputError
from densecal.methods.classify import (
    ClassifierModule,
    ClassifierOptions,
    images_to_batch,
    load_classifier,
    predict_classifier,
    train_classifier,
)
from densecal.methods.config import TrainConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fg")
    write_finegrained_dataset(root, FineGrainedConfig(size=16, n_train=8, n_val=0, n_test=0))
    return root / "train"


def test_train_resume_load_predict(tmp_path: Path, data: Path) -> None:
    config = TrainConfig(data=str(data), val_fraction=0.25, model="resnet-tiny", epochs=1,
                         batch_size=4, image_size=16)
    ckpt = train_classifier(config, tmp_path / "run", progress=False)
    assert ckpt.is_file() and (tmp_path / "run" / "config.json").is_file()
    first = torch.load(ckpt, weights_only=False)["epoch"]
    with pytest.raises(DensecalInputError, match="resume"):
        train_classifier(config, tmp_path / "run", progress=False)
    train_classifier(TrainConfig(epochs=2), tmp_path / "run", resume=True, progress=False)
    assert torch.load(ckpt, weights_only=False)["epoch"] == first + 1  # one more epoch
    module = load_classifier(ckpt)
    assert module.classes == ["Shirt", "T-shirt/top", "Pullover", "Coat"]
    folder = read_classification_folder(data)
    images = [read_image(p) for p in folder.paths]
    probs = predict_classifier(module, images, batch_size=3)
    assert probs.shape == (8, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    with torch.no_grad():
        logits = module(images_to_batch(images, 16)).double()
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), atol=1e-6)


def test_bad_inputs(tmp_path: Path, data: Path) -> None:
    with pytest.raises(DensecalInputError, match="--model"):
        train_classifier(TrainConfig(data=str(data), model="unet-small"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    with pytest.raises(DensecalInputError, match="resume"):
        train_classifier(TrainConfig(data=str(data), model="resnet-tiny"), tmp_path / "b",
                         resume=True)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DensecalInputError, match="checkpoint"):
        load_classifier(bad)
    with pytest.raises(DensecalInputError, match="no such"):
        load_classifier(tmp_path / "missing.ckpt")


def test_pool_option_from_the_classifier_family(tmp_path: Path, data: Path) -> None:
    config = TrainConfig(model="resnet-tiny", extra={"classifier": {"pool": "max"},
                                                      "ud": {"hidden": 3}})
    assert ClassifierOptions.from_config(config) == ClassifierOptions(pool="max")
    assert ClassifierModule(config.to_dict(), ["a", "b"]).net.pool == "max"
    assert ClassifierModule(TrainConfig(model="resnet-tiny").to_dict(), ["a"]).net.pool == "avg"
    for extra, match in (({"classifier": {"pool": "min"}}, r"classifier\.pool"),
                         ({"classifier": {"pol": "max"}}, "unknown keys pol"),
                         ({"classifier": "max"}, "classifier options")):
        with pytest.raises(DensecalInputError, match=match):
            train_classifier(TrainConfig(data=str(data), model="resnet-tiny", extra=extra),
                             tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()


def test_multilabel_folder_is_refused(tmp_path: Path) -> None:
    scenes = write_multilabel_scenes(tmp_path / "ml", n_train=2, n_val=0, n_test=0, size=16)
    with pytest.raises(DensecalInputError, match="multi-label"):
        train_classifier(TrainConfig(data=str(scenes["train"]), model="resnet-tiny"),
                         tmp_path / "run", progress=False)
