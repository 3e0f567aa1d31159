"""Model factory: every registered network maps (N, C_in, H, W) to (N, C_out, H, W)."""

from __future__ import annotations

import pytest
import torch

from densecal.errors import DensecalInputError
from densecal.models import create_model, model_names


@pytest.mark.parametrize("name", ["unet-small", "segresnet"])
@pytest.mark.parametrize("out_channels", [1, 3])
def test_output_shape(name: str, out_channels: int) -> None:
    net = create_model(name, in_channels=3, out_channels=out_channels).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 32, 48))
    assert y.shape == (2, out_channels, 32, 48)


def test_registry_lists_models_and_rejects_unknown() -> None:
    assert {"unet-small", "unet", "basicunet", "segresnet"} <= set(model_names())
    with pytest.raises(DensecalInputError, match="--model: unknown model 'resnet9000'"):
        create_model("resnet9000")
