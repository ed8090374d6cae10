import pytest
import torch
from torch import nn


def _randomize_zero_parameters(model: nn.Module, std: float = 0.1) -> nn.Module:
    """Replace every all-zero parameter (the zero-initialised gates, projections and output
    layers of DiT and the DDPM UNet) with small noise, so that the model computes something."""
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(std=std)
    return model


@pytest.fixture
def randomize_zero_parameters():
    return _randomize_zero_parameters
