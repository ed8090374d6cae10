"""The Denoiser adapters against hand-computed cases."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import biasprobe as bp
from biasprobe.denoiser import NetworkDenoiser
from biasprobe.schedules import Schedule


class Recorder(nn.Module):
    """Returns a fixed output and remembers what it was called with."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output
        self.calls = []

    def forward(self, x, t=None):
        self.calls.append((x.clone(), None if t is None else t.clone()))
        return self.output.expand_as(x).clone()


@pytest.fixture
def image():
    return torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_residual_unit_blind(image):
    noise = torch.full((1, 1, 4, 4), 0.25, dtype=torch.float64)
    net = Recorder(noise)
    d = NetworkDenoiser(net, (1, 4, 4), parameterization="residual")
    out = d.denoise(image, 0.3)
    torch.testing.assert_close(out, image - 0.25)
    torch.testing.assert_close(net.calls[0][0], image)  # blind, unit range: sees y itself
    assert net.calls[0][1] is None


def test_eps_signed_timestep_input_and_output(image):
    eps = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    net = Recorder(eps)
    schedule = Schedule("linear", 1000)
    d = NetworkDenoiser(net, (1, 4, 4), parameterization="eps", native_range="signed",
                        conditioning="timestep", schedule=schedule)
    sigma = 0.1
    out = d.denoise(image, sigma)
    # y_n = 2y - 1, sigma_n = 0.2, x_t = y_n / sqrt(1 + 0.04), x0_n = y_n - 0.2 * 0.5, x = (x0_n + 1) / 2
    x_t, t = net.calls[0]
    torch.testing.assert_close(x_t, (2 * image - 1) / math.sqrt(1.04))
    expected_t = float(np.interp(np.log(0.2), np.log(schedule.sigmas), np.arange(1000)))
    torch.testing.assert_close(t, torch.full((2,), expected_t, dtype=torch.float64))
    torch.testing.assert_close(out, image - 0.05)
    torch.testing.assert_close(d.raw_output(image, sigma), eps.expand_as(image))


def test_x0_signed(image):
    x0 = torch.full((1, 1, 4, 4), 0.2, dtype=torch.float64)
    d = NetworkDenoiser(Recorder(x0), (1, 4, 4), parameterization="x0", native_range="signed",
                        conditioning="timestep", schedule=Schedule())
    torch.testing.assert_close(d.denoise(image, 0.5), torch.full_like(image, 0.6))


def test_per_image_sigma_and_learned_variance_channels(image):
    net = Recorder(torch.zeros(1, 2, 4, 4, dtype=torch.float64))  # 2 output channels: eps and variance
    net.forward = lambda x, t=None: torch.cat([torch.ones_like(x), 7 * torch.ones_like(x)], 1)
    d = NetworkDenoiser(net, (1, 4, 4), parameterization="eps", native_range="unit",
                        conditioning="timestep", schedule=Schedule(), output_channels=1)
    out = d.denoise(image, torch.tensor([0.1, 0.2], dtype=torch.float64))
    torch.testing.assert_close(out[0], image[0] - 0.1)
    torch.testing.assert_close(out[1], image[1] - 0.2)


def test_sigma_t_round_trip():
    d = NetworkDenoiser(Recorder(torch.zeros(1)), (1, 4, 4), parameterization="eps", native_range="signed",
                        conditioning="timestep", schedule=Schedule())
    for t in (0.0, 10.0, 99.5, 500.0, 999.0):
        assert d.sigma_to_t(d.t_to_sigma(t)) == pytest.approx(t, abs=1e-6)
    # signed range: sigma in [0, 1] units is half the native sigma
    assert d.t_to_sigma(0) == pytest.approx(0.5 * math.sqrt(1e-4 / (1 - 1e-4)))


def test_wrap_callable(image):
    seen = {}

    def shrink(y, sigma):
        seen["sigma"] = sigma
        return y / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    d = bp.Denoiser.wrap(shrink, image_shape=(1, 4, 4))
    out = d(image, 0.5)
    torch.testing.assert_close(out, image / 1.25)
    assert seen["sigma"].shape == (2,)
    assert d.attention_modules() == {}


def test_bad_images_and_conventions_are_refused(image):
    d = bp.Denoiser.wrap(lambda y, s: y, image_shape=(1, 4, 4))
    with pytest.raises(bp.InputError, match="do not fit"):
        d.check_images(torch.zeros(1, 3, 4, 4))
    with pytest.raises(bp.InputError, match="NaN"):
        d.check_images(torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(bp.InputError, match="parameterization"):
        NetworkDenoiser(nn.Identity(), (1, 4, 4), parameterization="v")
    with pytest.raises(bp.InputError, match="schedule"):
        NetworkDenoiser(nn.Identity(), (1, 4, 4), parameterization="eps", conditioning="timestep")
