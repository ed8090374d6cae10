"""Denoisers whose Jacobians are known in closed form, to calibrate and test the analyses.

- :class:`GaussianImageModel`: a stationary Gaussian image model x ~ N(μ, C) whose covariance is
  circulant with a power-law spectrum. Its MMSE denoiser is the Wiener filter
  D(y) = μ + F⁻¹ diag(P/(P + σ²)) F (y − μ), a circulant matrix: eigenvectors are the Fourier
  modes, eigenvalues P(f)/(P(f) + σ²) fall as |f| rises, and J does not depend on y
  (harmonic, not adaptive).
- :func:`pixelwise_shrinkage`: x̂_i = μ + g(y_i − μ) with g(u) = u − τ·arctan(u/τ),
  τ = ``strength``·σ. J is diagonal: its eigenvectors are single pixels (neither harmonic nor
  geometry-adaptive).
- :func:`support_harmonic_denoiser`: a linear denoiser whose eigenvectors are the grid-Laplacian
  eigenfunctions of a shape's support (geometry-adaptive harmonic).
- :func:`random_basis_denoiser`: the Wiener spectrum on random orthonormal eigenvectors (not harmonic).
- :func:`posterior_mean_denoiser`: the exact posterior mean of a small training set (collapsed at
  training images, memorizing elsewhere).
- :func:`span_shrinkage_denoiser`: projection onto the span of training images with shrinkage
  (memorizing).
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


def pixelwise_shrinkage(image_shape: tuple[int, int, int], strength: float = 1.0, mean: float = 0.5) -> Denoiser:
    """x̂_i = μ + g(y_i − μ), g(u) = u − τ·arctan(u/τ) with τ = strength·σ: a pixel-by-pixel denoiser
    whose Jacobian is diagonal, J_ii = g′(y_i − μ) = u²/(u² + τ²), rising with |u| (so the noise
    makes its eigenvalues distinct: no degenerate top eigenspace)."""

    def shrink(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        u = y - mean
        tau = strength * sigma.view(-1, 1, 1, 1)
        return mean + u - tau * torch.atan(u / tau)

    return Denoiser.wrap(shrink, image_shape)




# --------------------------------------------------------------------------- linear references


def gaussian_subspace_denoiser(
    basis: np.ndarray, variances: np.ndarray, image_shape: tuple[int, int, int], mean: np.ndarray | float = 0.5
) -> Denoiser:
    """The MMSE denoiser of x ~ N(μ, V diag(p) Vᵀ) for orthonormal V (d, r): D(y) = μ + V diag(g) Vᵀ(y − μ)
    with gains g = p/(p + σ²). J = V diag(g) Vᵀ: its top eigenvectors are V's columns in order of p."""
    vectors = torch.as_tensor(np.ascontiguousarray(basis, dtype=np.float64))
    power = torch.as_tensor(np.ascontiguousarray(variances, dtype=np.float64))
    centre = torch.as_tensor(np.broadcast_to(np.asarray(mean, dtype=np.float64), image_shape).reshape(-1).copy())

    def project(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        flat = y.flatten(1) - centre.to(y.device, y.dtype)
        gains = power.to(y.device, y.dtype) / (power.to(y.device, y.dtype) + sigma.view(-1, 1) ** 2)
        coefficients = flat @ vectors.to(y.device, y.dtype) * gains
        return (centre.to(y.device, y.dtype) + coefficients @ vectors.to(y.device, y.dtype).T).reshape(y.shape)

    return Denoiser.wrap(project, image_shape)


def support_harmonic_denoiser(mask: np.ndarray, variance: float = 0.05, mean: float = 0.5) -> Denoiser:
    """Geometry-adaptive harmonic by construction: a Gaussian model living on the support Ω (a (H, W)
    mask, one channel) whose covariance has the grid-Laplacian eigenvectors φ_k of Ω
    (:func:`~biasprobe.analyses.support.grid_laplacian`, eigenvalues ν_k) and variances
    p_k ∝ 1/(ν_k + ν_c), ν_c = 1/|Ω|, scaled to mean ``variance``; nothing varies off Ω (D = μ there)."""
    from biasprobe.analyses.support import grid_laplacian

    mask = np.asarray(mask, dtype=bool)
    frequencies, modes = np.linalg.eigh(grid_laplacian(mask))
    basis = np.zeros((mask.size, len(frequencies)))
    basis[mask.ravel()] = modes
    shape = 1.0 / (frequencies + 1.0 / mask.sum())
    return gaussian_subspace_denoiser(basis, variance * shape / shape.mean(), (1, *mask.shape), mean)


def random_basis_denoiser(image_shape: tuple[int, int, int], seed: int = 0, variance: float = 0.05) -> Denoiser:
    """The Wiener filter's variances on a seeded random orthonormal basis: the same spectrum as
    :class:`GaussianImageModel`, eigenvectors with no spatial structure (not harmonic)."""
    d = int(np.prod(image_shape))
    basis = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]
    spectrum = np.sort(np.tile(GaussianImageModel(image_shape, variance=variance).power_spectrum().ravel(),
                               image_shape[0]))[::-1]
    return gaussian_subspace_denoiser(basis, spectrum, image_shape)


def span_shrinkage_denoiser(training: torch.Tensor) -> Denoiser:
    """Memorizing by construction: the orthogonal projection onto the affine span of the training
    images with Wiener shrinkage, D(y) = m + U diag(s²/(s² + σ²)) Uᵀ(y − m), where m is their mean
    and U diag(s) the principal directions and standard deviations of the N images (rank ≤ N − 1)."""
    flat = training.flatten(1).double().numpy()
    mean = flat.mean(0)
    u, s, _ = np.linalg.svd((flat - mean).T / np.sqrt(len(flat)), full_matrices=False)
    keep = s > s[0] * 1e-8
    return gaussian_subspace_denoiser(u[:, keep], s[keep] ** 2, tuple(training.shape[1:]), mean.reshape(training.shape[1:]))


def posterior_weights(noisy: torch.Tensor, training: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """The posterior weights w_i(y) = softmax_i(−‖y − x_i‖²/(2σ²)) of N training images x_i at each noisy
    image y (B, C, H, W): (B, N), the probability that y = x_i + σz came from x_i. ``sigma``: one value or
    one per image."""
    points = training.flatten(1).to(noisy.device, noisy.dtype)
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(float(sigma), device=noisy.device)
    sigma = sigma.to(noisy.dtype).reshape(-1, 1)
    distance = (noisy.flatten(1)[:, None, :] - points[None]).square().sum(-1)
    return torch.softmax(-distance / (2 * sigma**2), dim=1)


def posterior_mean_denoiser(training: torch.Tensor) -> Denoiser:
    """The exact MMSE denoiser of the empirical distribution of N training images x_i (the ideal
    memorizer): D(y) = Σ_i w_i x_i with the weights of :func:`posterior_weights`, so
    J = Σ_i w_i (x_i − D)(x_i − D)ᵀ/σ² = Cov_w[x]/σ²: 0 at a training image and wherever the weights are
    one-hot (collapsed), a matrix on the span of the images' differences where they spread (memorizing)."""
    points = training.flatten(1).double()

    def posterior(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        weights = posterior_weights(y, points, sigma)
        return (weights @ points.to(y.device, y.dtype)).reshape(y.shape)

    return Denoiser.wrap(posterior, tuple(training.shape[1:]))


__all__ = [
    "GaussianImageModel",
    "gaussian_subspace_denoiser",
    "pixelwise_shrinkage",
    "posterior_mean_denoiser",
    "posterior_weights",
    "radial_frequency",
    "random_basis_denoiser",
    "span_shrinkage_denoiser",
    "support_harmonic_denoiser",
]
