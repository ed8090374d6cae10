"""Noise levels and seeded noisy observations y = x + σ z, shared by every analysis."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.validation import numbers


def noise_levels(
    denoiser: Denoiser, sigmas: Sequence[float] | None = None, timesteps: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The noise levels of a run as (σ on the [0, 1] image scale, diffusion step t).

    Give either σ values or steps t (mapped through the denoiser's schedule); t is NaN for
    denoisers without a schedule.
    """
    if (sigmas is None) == (timesteps is None):
        raise InputError("give noise levels either as sigma values or as diffusion steps t, not both or neither")
    if timesteps is not None:
        steps = np.asarray(numbers(timesteps, "timesteps", minimum=0), dtype=np.float64)
        sigma = np.array([denoiser.t_to_sigma(float(t)) for t in steps])
    else:
        sigma = np.asarray(numbers(sigmas, "sigmas", positive=True), dtype=np.float64)
        steps = np.array([np.nan if (t := denoiser.sigma_to_t(float(s))) is None else t for s in sigma])
    if sigma.ndim != 1 or sigma.size == 0:
        raise InputError("give at least one noise level")
    return sigma, steps


def noisy(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """y = x + σ z with z ~ N(0, I) drawn from ``seed`` on the CPU, so every device sees the same y."""
    generator = torch.Generator().manual_seed(int(seed))
    z = torch.randn(images.shape, generator=generator, dtype=torch.float64)
    return (images.detach().cpu().double() + sigma * z).to(images.dtype).to(images.device)
