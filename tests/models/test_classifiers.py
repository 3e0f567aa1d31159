"""Classifier factory: shapes, pooling, head bias, registry errors."""

from __future__ import annotations

import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.models.classifiers import classifier_names, create_classifier


@pytest.mark.parametrize("name", ["resnet-tiny", "resnet-small"])
def test_classifier_shapes_and_feature_map(name: str) -> None:
    net = create_classifier(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(3, 1, 48, 64)
    features = net.features(x)
    assert features.shape == (3, net.feature_channels, 6, 8)  # 1/8 of the input side
    assert net(x).shape == (3, 7)
    assert net.target_layer is net.trunk[-1]


def test_pooling_and_bias_options() -> None:
    net = create_classifier("resnet-tiny", num_classes=2, pool="max", bias=False)
    assert net.head.bias is None
    f = torch.arange(2 * 128 * 4, dtype=torch.float32).reshape(2, 128, 2, 2)
    assert torch.equal(net.pooled(f), f.amax((2, 3)))
    avg = create_classifier("resnet-tiny", num_classes=2)
    assert torch.equal(avg.pooled(f), f.mean((2, 3)))


def test_bad_classifier_options() -> None:
    assert {"resnet-tiny", "resnet-small", "resnet18"} <= set(classifier_names())
    with pytest.raises(DensecalInputError, match="classifier"):
        create_classifier("vgg", num_classes=2)
    with pytest.raises(DensecalInputError, match="pool"):
        create_classifier("resnet-tiny", num_classes=2, pool="median")  # type: ignore[arg-type]
    with pytest.raises(DensecalInputError, match="num_classes"):
        create_classifier("resnet-tiny", num_classes=0)
