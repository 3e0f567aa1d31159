"""Image classifiers by name: MONAI ResNet trunks with a pooled linear head.

Every classifier maps an image batch ``(N, C_in, H, W)`` to logits ``(N, num_classes)`` and
exposes the last convolutional feature map (``features``, ``(N, K, h, w)``) and the module that
produces it (``target_layer``), which uncertainty distillation (docs/methods.md section 5) and
Grad-CAM (section 6) need.

Example:
    >>> import torch
    >>> net = create_classifier("resnet-tiny", num_classes=10)
    >>> net(torch.zeros(2, 3, 64, 64)).shape, net.features(torch.zeros(2, 3, 64, 64)).shape
    (torch.Size([2, 10]), torch.Size([2, 128, 8, 8]))
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from densecal.errors import input_error
from densecal.registry import Registry

__all__ = ["CLASSIFIERS", "Classifier", "classifier_names", "create_classifier"]

Pooling = Literal["avg", "max"]

CLASSIFIERS: Registry[nn.Module] = Registry("classifier")


class Classifier(nn.Module):
    """A convolutional trunk, global pooling and a linear head.

    Args:
        trunk: module mapping ``(N, C_in, H, W)`` to a feature map ``(N, K, h, w)``; its last
            child is the Grad-CAM target layer.
        feature_channels: ``K``.
        num_classes: number of logits.
        pool: ``"avg"`` (global average) or ``"max"`` (global max, as uncertainty
            distillation's teacher).
        bias: whether the linear head has a bias (uncertainty distillation's head has none).

    Raises:
        DensecalInputError: unknown ``pool`` or ``num_classes < 1``.
    """

    def __init__(self, trunk: nn.Sequential, feature_channels: int, num_classes: int,
                 pool: Pooling = "avg", bias: bool = True) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise input_error("pool", f"expected 'avg' or 'max', got {pool!r}")
        if num_classes < 1:
            raise input_error("num_classes", f"must be at least 1, got {num_classes}")
        self.trunk = trunk
        self.pool = pool
        self.feature_channels = feature_channels
        self.num_classes = num_classes
        self.head = nn.Linear(feature_channels, num_classes, bias=bias)

    @property
    def target_layer(self) -> nn.Module:
        """The last convolutional block (default Grad-CAM layer)."""
        return self.trunk[-1]

    def features(self, image: Tensor) -> Tensor:
        """The last feature map ``(N, K, h, w)`` of ``image`` ``(N, C_in, H, W)``."""
        return self.trunk(image)

    def pooled(self, features: Tensor) -> Tensor:
        """Global pooling of ``(N, K, h, w)`` features to ``(N, K)``."""
        return features.amax((2, 3)) if self.pool == "max" else features.mean((2, 3))

    def forward(self, image: Tensor) -> Tensor:
        """Logits ``(N, num_classes)``."""
        return self.head(self.pooled(self.features(image)))


def _resnet_trunk(layers: list[int], planes: list[int], in_channels: int) -> nn.Sequential:
    """A MONAI 2-D ResNet without its pooling and head: stem (3x3 conv, stride 1, no max-pool)
    and four stages (strides 1, 2, 2, 2): the feature map is 1/8 of the input side, fine
    enough for Grad-CAM on small images."""
    from monai.networks.nets import ResNet

    net = ResNet(block="basic", layers=layers, block_inplanes=planes, spatial_dims=2,
                 n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1,
                 no_max_pool=True, num_classes=1, feed_forward=False)
    return nn.Sequential(net.conv1, net.bn1, net.act,
                         net.layer1, net.layer2, net.layer3, net.layer4)


def _register(name: str, layers: list[int], planes: list[int], doc: str) -> None:
    def build(num_classes: int, in_channels: int = 3, pool: Pooling = "avg",
              bias: bool = True) -> nn.Module:
        return Classifier(_resnet_trunk(layers, planes, in_channels), planes[-1], num_classes,
                          pool=pool, bias=bias)

    build.__doc__ = doc
    CLASSIFIERS.register(name)(build)


_register("resnet-tiny", [1, 1, 1, 1], [16, 32, 64, 128],
          "ResNet with one basic block per stage, widths 16..128 (0.3 M parameters): "
          "CPU-sized, e.g. a student.")
_register("resnet-small", [2, 2, 2, 2], [32, 64, 128, 256],
          "ResNet-18 layout at half width, 32..256 (2.8 M parameters): CPU-sized teacher.")
_register("resnet18", [2, 2, 2, 2], [64, 128, 256, 512],
          "ResNet-18 layout, widths 64..512 (11 M parameters), for GPUs.")


def create_classifier(name: str, *, num_classes: int, in_channels: int = 3,
                      pool: Pooling = "avg", bias: bool = True) -> Classifier:
    """Build the classifier registered as ``name``.

    Args:
        name: one of :func:`classifier_names` (``resnet-tiny``, ``resnet-small``, ``resnet18``).
        num_classes: number of logits.
        in_channels: image channels.
        pool: global pooling, ``"avg"`` or ``"max"``.
        bias: whether the linear head has a bias.

    Returns:
        A :class:`Classifier`.

    Raises:
        DensecalInputError: unknown name or bad options.
    """
    net = CLASSIFIERS.create(name, num_classes=num_classes, in_channels=in_channels, pool=pool,
                             bias=bias)
    assert isinstance(net, Classifier)
    return net


def classifier_names() -> list[str]:
    """Registered classifier names."""
    return CLASSIFIERS.names()

