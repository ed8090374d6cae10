"""The t <-> sigma map of variance-preserving schedules."""

import math

import numpy as np
import pytest

from biasprobe.errors import InputError
from biasprobe.schedules import Schedule


def test_linear_schedule_matches_ddpm():
    s = Schedule("linear", 1000, 1e-4, 0.02)
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1 - betas)
    np.testing.assert_allclose(s.alphas_cumprod, alpha_bar)
    np.testing.assert_allclose(s.sigma(999), math.sqrt((1 - alpha_bar[-1]) / alpha_bar[-1]))


def test_cosine_schedule_matches_formula():
    s = Schedule("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    # the cumulative product of clipped betas reproduces alpha_bar(t) = f(t + 1) / f(0) away from the end
    for t in (0, 100, 500, 900):
        assert s.alphas_cumprod[t] == pytest.approx(f(t + 1) / f(0), rel=1e-9)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_timestep_inverts_sigma_including_fractional_steps(kind):
    s = Schedule(kind)
    t = np.array([0.0, 0.5, 17.25, 400.0, 998.9])
    np.testing.assert_allclose(s.timestep(s.sigma(t)), t, atol=1e-8)
    assert np.all(np.diff(s.sigmas) > 0)


def test_out_of_range_is_refused():
    s = Schedule()
    with pytest.raises(InputError, match="outside"):
        s.timestep(1e-6)
    with pytest.raises(InputError, match="must lie"):
        s.sigma(1000)
    with pytest.raises(InputError, match="unknown schedule"):
        Schedule("quadratic")
