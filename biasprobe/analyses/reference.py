"""Denoisers whose Jacobians are known in closed form, to calibrate and test the analyses.

- :class:`GaussianImageModel`: a stationary Gaussian image model x ~ N(μ, C) whose covariance is
  circulant with a power-law spectrum. Its MMSE denoiser is the Wiener filter
  D(y) = μ + F⁻¹ diag(P/(P + σ²)) F (y − μ), a circulant matrix: eigenvectors are the Fourier
  modes, eigenvalues P(f)/(P(f) + σ²) fall as |f| rises, and J does not depend on y
  (harmonic, not adaptive).
- :func:`pixelwise_shrinkage`: x̂_i = μ + g(y_i − μ) with a smooth garrote g(u) = u³/(u² + τ²),
  τ = ``strength``·σ. J is diagonal: its eigenvectors are single pixels (neither harmonic nor
  geometry-adaptive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from biasprobe.denoiser import Denoiser


def radial_frequency(height: int, width: int) -> np.ndarray:
    """|f| = √(f_y² + f_x²) in cycles per pixel on the (H, W) grid of the 2-D DFT."""
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    return np.hypot(fy, fx)


@dataclass(frozen=True)
class GaussianImageModel:
    """x ~ N(μ, C), C circulant with power spectrum P(f) ∝ (|f|² + f_c²)^(−α/2) per channel.

    P is scaled so that the pixel variance (the mean of P over frequencies, for the unitary DFT)
    is ``variance``; f_c = 1/max(H, W) keeps the zero frequency finite.
    """

    image_shape: tuple[int, int, int]
    exponent: float = 2.0
    variance: float = 0.05
    mean: float = 0.5

    def power_spectrum(self) -> np.ndarray:
        """P(f) on the (H, W) DFT grid, for the unitary DFT."""
        _, height, width = self.image_shape
        cutoff = 1.0 / max(height, width)
        shape = (radial_frequency(height, width) ** 2 + cutoff**2) ** (-self.exponent / 2)
        return self.variance * shape / shape.mean()

    def gains(self, sigma: float) -> np.ndarray:
        """The Wiener gains P/(P + σ²): the eigenvalues of J, one per frequency (H, W)."""
        spectrum = self.power_spectrum()
        return spectrum / (spectrum + sigma**2)

    def eigenvalues(self, sigma: float) -> np.ndarray:
        """Every eigenvalue of J (C·H·W of them), in decreasing order."""
        gains = np.tile(self.gains(sigma).ravel(), self.image_shape[0])
        return np.sort(gains)[::-1]

    def denoiser(self) -> Denoiser:
        """The MMSE denoiser of this model, differentiable in both autograd modes."""
        spectrum = torch.as_tensor(self.power_spectrum())

        def wiener(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            power = spectrum.to(y.device, y.dtype)
            gains = power / (power + sigma.view(-1, 1, 1, 1) ** 2)
            coefficients = torch.fft.fft2(y - self.mean, norm="ortho")
            return self.mean + torch.fft.ifft2(gains * coefficients, norm="ortho").real

        return Denoiser.wrap(wiener, self.image_shape)


def pixelwise_shrinkage(image_shape: tuple[int, int, int], strength: float = 2.0, mean: float = 0.5) -> Denoiser:
    """x̂_i = μ + g(y_i − μ), g(u) = u³/(u² + τ²) with τ = strength·σ: a pixel-by-pixel denoiser
    whose Jacobian is diagonal, J_ii = g′(y_i − μ) = (u⁴ + 3u²τ²)/(u² + τ²)²."""

    def shrink(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        u = y - mean
        tau = strength * sigma.view(-1, 1, 1, 1)
        return mean + u**3 / (u**2 + tau**2)

    return Denoiser.wrap(shrink, image_shape)


__all__ = ["GaussianImageModel", "pixelwise_shrinkage", "radial_frequency"]
