"""Uncertainty distillation: network structure and a tiny teacher -> student run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from densecal.data.synthetic.multilabel import write_multilabel_scenes
from densecal.errors import DensecalInputError
from densecal.methods.config import TrainConfig
from densecal.methods.ud import UDModule, UDNet, UDOptions, evaluate_multilabel, load_ud, train_ud


def test_udnet_structure() -> None:
    net = UDNet("resnet-tiny", num_classes=5).eval()
    out = net(torch.rand(2, 3, 32, 32))
    assert out.logits.shape == (2, 5) and out.scores.shape == (2, 5)
    assert out.features.shape == (2, 128, 4, 4)
    assert net.classifier.head.bias is None and net.classifier.pool == "max"
    assert [type(m).__name__ for m in net.calibration] == \
        ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert net.calibration[0].out_features == 512
    # o = W · global max of F
    assert torch.allclose(out.logits, out.features.amax((2, 3)) @ net.classifier.head.weight.T,
                          atol=1e-6)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ud")
    return write_multilabel_scenes(root / "data", n_train=6, n_val=2, n_test=4, size=16,
                                   seed=3)


def _config(scenes: dict[str, Path], method: str, **extra: object) -> TrainConfig:
    return TrainConfig(method=method, data=str(scenes["train"]), val_data=str(scenes["val"]),
                       epochs=1, batch_size=3, image_size=16, accelerator="cpu", devices="1",
                       extra={"ud": dict(extra)})


def test_teacher_student_run(scenes: dict[str, Path], tmp_path: Path) -> None:
    teacher = train_ud(_config(scenes, "ud-teacher"), tmp_path / "t", progress=False)
    assert teacher.is_file()
    # the checkpoint of the last finished epoch (index 0), written after its validation
    assert torch.load(teacher, map_location="cpu", weights_only=False)["epoch"] == 0
    assert load_ud(teacher).net.classifier.feature_channels == 256  # resnet-small
    student = train_ud(_config(scenes, "ud-student", teacher=str(teacher)), tmp_path / "s",
                       progress=False)
    module = load_ud(student)
    assert module.net.classifier.feature_channels == 128  # resnet-tiny
    assert not any(k.startswith("teacher") for k in module.state_dict())
    result = evaluate_multilabel(student, scenes["test"])
    assert result["n_images"] == 4 and len(result["ap"]) == 6  # the default six classes
    for key in ("map", "cf1", "of1", "classwise_ece", "ece"):
        assert math.isnan(result[key]) or 0.0 <= result[key] <= 1.0
    with pytest.raises(DensecalInputError, match="already holds"):
        train_ud(_config(scenes, "ud-teacher"), tmp_path / "t", progress=False)
    resumed = train_ud(TrainConfig(epochs=2), tmp_path / "t", resume=True, progress=False)
    epoch = torch.load(resumed, map_location="cpu", weights_only=False)["epoch"]
    assert epoch == 1  # the second epoch (index 1) ran


def test_bad_options(scenes: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DensecalInputError, match="teacher"):
        train_ud(_config(scenes, "ud-student"), tmp_path / "a", progress=False)
    with pytest.raises(DensecalInputError, match="no such teacher"):
        train_ud(_config(scenes, "ud-student", teacher=str(tmp_path / "x.ckpt")),
                 tmp_path / "b", progress=False)
    with pytest.raises(DensecalInputError, match="ud options: unknown keys tau"):
        train_ud(_config(scenes, "ud-gt", tau=2), tmp_path / "c", progress=False)
    with pytest.raises(DensecalInputError, match=r"ud\.backbone"):
        train_ud(_config(scenes, "ud-gt", backbone="unet-small"), tmp_path / "c", progress=False)
    with pytest.raises(DensecalInputError, match="--method"):
        train_ud(_config(scenes, "bce"), tmp_path / "d", progress=False)
    with pytest.raises(DensecalInputError, match="nothing to resume"):
        train_ud(_config(scenes, "ud-gt"), tmp_path / "e", resume=True, progress=False)


def test_options_come_from_the_ud_family() -> None:
    config = TrainConfig(method="ud-gt", model="unet-small",
                         extra={"ud": {"hidden": 16, "temperature": 2, "backbone": "resnet-tiny"},
                                "car": {"samples": 2}})  # other families are not ud's business
    options = UDOptions.from_config(config)
    assert (options.hidden, options.temperature, options.uad_weight) == (16, 2, 0.1)
    module = UDModule(config.to_dict(), ["a", "b", "c"])
    assert module.net.calibration[0].out_features == 16
    assert module.net.classifier.feature_channels == 128  # resnet-tiny, not config.model
    assert UDOptions.from_config(TrainConfig()) == UDOptions()  # no "ud" table: defaults
    with pytest.raises(DensecalInputError, match="ud options: expected KEY: VALUE"):
        UDOptions.from_config(TrainConfig(extra={"ud": ["teacher"]}))
    default = UDOptions()
    assert default.backbone_for(TrainConfig(method="ud-gt", model="unet-small")) == "resnet-tiny"
    assert default.backbone_for(TrainConfig(method="ud-teacher", model="unet-small")) == \
        "resnet-small"


@pytest.mark.parametrize(("options", "match"), [
    ({"temperature": 0}, r"ud\.temperature"),
    ({"temperature": "hot"}, r"ud\.temperature"),
    ({"uad_weight": -1}, r"ud\.uad_weight"),
    ({"gt_weight": True}, r"ud\.gt_weight"),
    ({"hidden": 1.5}, r"ud\.hidden"),
    ({"teacher": 3}, r"ud\.teacher"),
    ({"distill": "all"}, r"ud\.distill"),
    ({"scaling": "sum"}, r"ud\.scaling"),
    ({"tau": 1, "beta": 2}, "unknown keys beta, tau"),
])
def test_bad_option_values(options: dict[str, object], match: str) -> None:
    with pytest.raises(DensecalInputError, match=match):
        UDOptions.from_dict(options)


@pytest.mark.parametrize(("distill", "scaling"), [("ud", "official"), ("ud", "mean"),
                                                  ("pdd", "official"), ("kd", "official"),
                                                  ("kd", "mean")])
def test_student_terms_follow_distill_and_scaling(distill: str, scaling: str) -> None:
    """The student's terms against the loss functions: ``official`` sums the prediction term
    over the batch (lsongx/ud's ``reduction="sum"``), UAD stays a mean; ``pdd`` / ``kd`` leave
    out what they do not distil."""
    from densecal.losses.distillation import (
        kd_loss,
        label_uncertainty,
        pdd_loss,
        uad_loss,
        uncertainty_attention,
    )

    torch.manual_seed(0)
    config = TrainConfig(method="ud-student", extra={"ud": {"distill": distill,
                                                           "scaling": scaling}})
    module = UDModule(config.to_dict(), ["a", "b", "c"])
    teacher = UDNet("resnet-tiny", 3).eval()
    module._teacher.append(teacher)
    image = torch.rand(4, 3, 16, 16)
    out = module.net(image)
    parts = module._distillation(image, out)
    batch = 4.0 if scaling == "official" else 1.0
    o_t, s_t = teacher.heads(teacher.classifier.features(image))
    expected_keys = {"ud": {"pdd", "uad"}, "pdd": {"pdd"}, "kd": {"kd"}}[distill]
    assert set(parts) == expected_keys
    if distill == "kd":
        torch.testing.assert_close(parts["kd"], batch * kd_loss(out.logits, o_t))
    else:
        torch.testing.assert_close(parts["pdd"], batch * pdd_loss(out.logits, out.scores,
                                                                  o_t, s_t))
    if distill == "ud":
        f_t = teacher.classifier.features(image).requires_grad_(True)
        a_t = uncertainty_attention(f_t, label_uncertainty(*teacher.heads(f_t))).detach()
        a_s = uncertainty_attention(out.features, label_uncertainty(out.logits, out.scores))
        torch.testing.assert_close(parts["uad"], uad_loss(a_s, a_t, 0.1))
