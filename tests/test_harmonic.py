"""GAHB metrics on vectors with known answers, and the verdict on the calibration denoisers."""

import numpy as np
import pytest
import torch
import xarray as xr

from biasprobe.analyses.harmonic import (
    adaptivity,
    frequency_centroid,
    gahb_summary,
    harmonicity,
    participation_ratio,
)
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.reference import GaussianImageModel, pixelwise_shrinkage
from biasprobe.images import read_image

SHAPE = (1, 16, 16)


def vectors(*fields: np.ndarray) -> xr.DataArray:
    """Unit vectors (rank, channel, y, x) from (H, W) fields."""
    stacked = np.stack([f / np.linalg.norm(f) for f in fields])[:, None]
    return xr.DataArray(stacked, dims=("rank", "channel", "y", "x"))


def test_centroid_and_participation_of_known_vectors():
    n = 16
    x = np.arange(n)
    delta = np.zeros((n, n))
    delta[3, 5] = 1
    wave = np.cos(2 * np.pi * 3 * x / n)[None, :] * np.ones((n, 1))  # f = (0, 3/16)
    checker = np.cos(2 * np.pi * 3 * x / n)[:, None] * np.cos(2 * np.pi * 3 * x / n)[None, :]
    flat = np.ones((n, n))
    v = vectors(delta, wave, checker, flat)
    np.testing.assert_allclose(participation_ratio(v).values, [1 / n**2, 2 / 3, 4 / 9, 1])
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    np.testing.assert_allclose(frequency_centroid(v).values, [np.hypot(fy, fx).mean(), 3 / n, np.hypot(3 / n, 3 / n), 0])


@pytest.fixture(scope="module")
def images():
    names = ("camera-32.png", "chelsea-grey-32.png", "astronaut-32.png")
    return torch.stack([read_image(f"data/images/{name}", SHAPE, resize=True) for name in names])


def test_gaussian_is_fixed_harmonic(images):
    ds = jacobian(GaussianImageModel(SHAPE).denoiser(), images, sigmas=[0.05, 0.2])
    summary = gahb_summary(ds)
    assert (summary.mean_harmonicity > 0.95).all()
    np.testing.assert_allclose(adaptivity(ds).values, 0, atol=1e-6)
    assert summary.harmonic.all() and not summary.geometry_adaptive.any()
    assert (summary.verdict == "fixed harmonic").all()


def test_pixelwise_is_neither(images):
    ds = jacobian(pixelwise_shrinkage(SHAPE), images, sigmas=[0.05, 0.2])
    summary = gahb_summary(ds)
    np.testing.assert_allclose(summary.participation_ratio.values, 1 / 256, rtol=1e-3)
    assert (np.abs(harmonicity(ds)) < 0.5).all()
    assert not summary.harmonic.any() and not summary.geometry_adaptive.any()
    assert (summary.verdict == "not harmonic").all()


def test_adaptivity_needs_two_images(images):
    ds = jacobian(GaussianImageModel(SHAPE).denoiser(), images[:1], sigmas=[0.1])
    assert np.isnan(adaptivity(ds).values).all()
    assert gahb_summary(ds).verdict.item() == "harmonic (adaptivity needs two images)"


def test_degenerate_spectrum_gets_no_verdict(images):
    """D(y) = y: J = I, every basis is an eigenbasis, so neither harmonic nor not."""
    import biasprobe as bp

    identity = bp.Denoiser.wrap(lambda y, sigma: y.clone(), SHAPE)
    summary = gahb_summary(jacobian(identity, images, sigmas=[0.1], top_k=16, method="randomized"), top=16)
    np.testing.assert_allclose(summary.spectral_spread.values, 0, atol=1e-6)
    assert summary.verdict.item() == "undetermined (degenerate spectrum)"
    assert not summary.harmonic.any()
