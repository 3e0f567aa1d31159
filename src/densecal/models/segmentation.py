"""Network factory: names users type (``--model unet-small``) mapped to MONAI networks.

Every model takes an image batch ``(N, C_in, H, W)`` and returns logits ``(N, C_out, H, W)`` at
the input resolution (H and W divisible by 8 for the UNets with three down-samplings, by 16 for
``unet`` and ``basicunet``).

Example:
    >>> import torch
    >>> net = create_model("unet-small", in_channels=3, out_channels=1)
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

from torch import nn

from densecal.registry import Registry

__all__ = ["MODELS", "basicunet", "create_model", "model_names", "segresnet", "unet", "unet_small"]

MODELS: Registry[nn.Module] = Registry("model")


@MODELS.register("unet-small")
def unet_small(in_channels: int = 3, out_channels: int = 1) -> nn.Module:
    """MONAI UNet with channels (16, 32, 64, 128), 3 down-samplings, 1 residual unit (0.2 M
    parameters): the CPU-friendly default that trains the demo in minutes."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)


@MODELS.register("unet")
def unet(in_channels: int = 3, out_channels: int = 1) -> nn.Module:
    """MONAI UNet with channels (32, 64, 128, 256, 512), 4 down-samplings, 2 residual units
    (6.5 M parameters), for GPUs and real datasets."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), num_res_units=2)


@MODELS.register("basicunet")
def basicunet(in_channels: int = 3, out_channels: int = 1) -> nn.Module:
    """MONAI BasicUNet (the classic two-conv U-Net, features 32..512)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels)


@MODELS.register("segresnet")
def segresnet(in_channels: int = 3, out_channels: int = 1) -> nn.Module:
    """MONAI SegResNet (Myronenko 2018) with 16 initial filters."""
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                     init_filters=16)


def create_model(name: str, *, in_channels: int = 3, out_channels: int = 1) -> nn.Module:
    """Build the network registered as ``name``.

    Args:
        name: one of :func:`model_names` (``unet-small``, ``unet``, ``basicunet``, ``segresnet``).
        in_channels: image channels (3 for RGB).
        out_channels: logit channels (1 for binary maps, K for K classes).

    Returns:
        An ``nn.Module`` mapping ``(N, in_channels, H, W)`` to logits ``(N, out_channels, H, W)``.

    Raises:
        DensecalInputError: unknown name.
    """
    return MODELS.create(name, in_channels=in_channels, out_channels=out_channels)


def model_names() -> list[str]:
    """Registered model names."""
    return MODELS.names()
