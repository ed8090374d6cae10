"""GAHB metrics: are a denoiser's Jacobian eigenvectors geometry-adaptive harmonics?

Every function takes the Dataset of :func:`biasprobe.analyses.jacobian.jacobian` (its
``eigenvector`` variable, dims (image, sigma, rank, channel, y, x)). Definitions, with d = C·H·W
and e a unit eigenvector (full formulas and the calibration in ``docs/methods/jacobian.md``):

- frequency centroid  f̄(e) = Σ_f |f| P_e(f) / Σ_f P_e(f), P_e(f) = Σ_c |ê_c(f)|², |f| in
  cycles per pixel (0 … 1/√2);
- participation ratio  PR(e) = (Σ_i e_i²)² / (d Σ_i e_i⁴): 1/d for one pixel, 1 for a flat
  vector, 4/9 for a 2-D cosine;
- harmonicity: Spearman rank correlation between k and f̄(e_k) over k < K;
- adaptivity: 1 − ‖V_aᵀ V_b‖_F² / K between the top-K eigenspaces at two images a, b,
  averaged over image pairs (0 for a fixed basis);
- spectral spread: (λ_0 − λ_{K−1}) / |λ_0| of the top K eigenvalues;
- verdict: harmonic if harmonicity ≥ :data:`HARMONICITY_THRESHOLD` and mean PR ≥
  :data:`PARTICIPATION_THRESHOLD`; geometry-adaptive harmonic if also adaptivity ≥
  :data:`ADAPTIVITY_THRESHOLD`; undetermined if any image's spectral spread is below
  :data:`SPREAD_THRESHOLD` (the top K then span one eigenspace, in which every basis, harmonic
  or not, is a valid set of eigenvectors).
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from biasprobe.analyses.reference import radial_frequency
from biasprobe.errors import InputError

HARMONICITY_THRESHOLD = 0.5
"""Calibrated: Wiener filter ≥ 0.97, pixel-wise shrinkage and untrained networks ≤ 0.3 (docs)."""
PARTICIPATION_THRESHOLD = 0.1
"""Calibrated: Fourier-like vectors ≈ 0.4–0.7, single pixels 1/d, untrained networks ≤ 0.05 (docs)."""
ADAPTIVITY_THRESHOLD = 0.2
"""Calibrated: a fixed basis gives 0 (Wiener filter); see docs for the other references."""

SPREAD_THRESHOLD = 1e-3
"""Top-K eigenvalues within 0.1 % of each other (an untrained bias-free UNet's J ≈ I: spread
≈ 1e-5; untrained DiT: ≈ 1e-7) leave their eigenvectors undetermined."""

FIELD = ("channel", "y", "x")


def frequency_centroid(eigenvectors: xr.DataArray) -> xr.DataArray:
    """Radial frequency centroid f̄ = Σ|f| P(f) / Σ P(f) of each vector's 2-D power spectrum,
    summed over channels, in cycles per pixel."""
    height, width = eigenvectors.sizes["y"], eigenvectors.sizes["x"]
    power = np.abs(np.fft.fft2(eigenvectors.transpose(..., *FIELD).values, axes=(-2, -1))) ** 2
    power = power.sum(axis=-3)
    radius = radial_frequency(height, width)
    centroid = (power * radius).sum(axis=(-2, -1)) / power.sum(axis=(-2, -1))
    dims = [dim for dim in eigenvectors.transpose(..., *FIELD).dims if dim not in FIELD]
    return xr.DataArray(
        centroid, dims=dims, coords={dim: eigenvectors[dim] for dim in dims if dim in eigenvectors.coords},
        attrs={"long_name": "radial frequency centroid", "units": "cycles per pixel"},
    )


def participation_ratio(eigenvectors: xr.DataArray) -> xr.DataArray:
    """PR = (Σ e_i²)² / (d Σ e_i⁴) over channels and pixels: 1/d for one pixel, 1 for a flat vector."""
    squares = eigenvectors**2
    d = int(np.prod([eigenvectors.sizes[dim] for dim in FIELD]))
    ratio = squares.sum(FIELD) ** 2 / (d * (squares**2).sum(FIELD))
    return ratio.assign_attrs(long_name="spatial participation ratio", units="1")


def _top(dataset: xr.Dataset, top: int | None) -> int:
    """K: ``top``, or by default every stored eigenvector up to d/4."""
    stored = dataset.sizes["rank"]
    d = int(np.prod([dataset.sizes[dim] for dim in FIELD]))
    count = top if top is not None else min(stored, max(2, d // 4))
    if not 2 <= count <= stored:
        raise InputError(f"top must be between 2 and the {stored} stored eigenvectors, got {count}")
    return count


def harmonicity(dataset: xr.Dataset, top: int | None = None) -> xr.DataArray:
    """Spearman correlation between rank k and frequency centroid f̄(e_k) over the top K, per image and σ."""
    count = _top(dataset, top)
    centroid = frequency_centroid(dataset.eigenvector.isel(rank=slice(0, count)))

    def correlation(values: np.ndarray) -> float:
        return float(spearmanr(np.arange(len(values)), values).statistic)

    result = xr.apply_ufunc(correlation, centroid, input_core_dims=[["rank"]], vectorize=True)
    return result.assign_attrs(long_name="harmonicity: Spearman ρ(k, frequency centroid)", top=count)


def eigenspace_overlap(dataset: xr.Dataset, first: int, second: int, top: int | None = None) -> xr.DataArray:
    """‖V_aᵀ V_b‖_F² / K of the top-K eigenspaces at images a = ``first`` and b = ``second``, per σ:
    the mean squared cosine of their principal angles (1: same space)."""
    count = _top(dataset, top)
    vectors = dataset.eigenvector.isel(rank=slice(0, count)).stack(pixel=FIELD).transpose("image", "sigma", "rank", "pixel")
    a, b = vectors.isel(image=first).values, vectors.isel(image=second).values
    overlap = np.square(np.einsum("srp,sqp->srq", a, b)).sum(axis=(1, 2)) / count
    return xr.DataArray(overlap, dims=["sigma"], coords={"sigma": dataset.sigma}, attrs={"top": count})


def adaptivity(dataset: xr.Dataset, top: int | None = None) -> xr.DataArray:
    """1 − eigenspace overlap, averaged over every pair of images, per σ (NaN with one image)."""
    pairs = list(itertools.combinations(range(dataset.sizes["image"]), 2))
    count = _top(dataset, top)
    if not pairs:
        values = xr.full_like(dataset.sigma, np.nan, dtype=float)
    else:
        values = 1 - sum(eigenspace_overlap(dataset, a, b, count) for a, b in pairs) / len(pairs)
    return values.rename("adaptivity").assign_attrs(
        long_name="adaptivity: 1 − overlap of top-K eigenspaces between images", top=count
    )


def spectral_spread(dataset: xr.Dataset, top: int | None = None) -> xr.DataArray:
    """(λ_0 − λ_{K−1}) / |λ_0| of the top-K eigenvalues, per image and σ (0: one eigenspace)."""
    count = _top(dataset, top)
    values = dataset.eigenvalue.isel(rank=slice(0, count))
    spread = (values.isel(rank=0) - values.isel(rank=count - 1)) / np.abs(values.isel(rank=0))
    return spread.drop_vars("rank", errors="ignore").assign_attrs(
        long_name="spectral spread (λ_0 − λ_{K−1}) / |λ_0| of the top K", top=count
    )


def gahb_summary(dataset: xr.Dataset, top: int | None = None) -> xr.Dataset:
    """Per-rank metrics, per-σ scores and the verdict.

    Returns a Dataset with ``frequency_centroid`` and ``participation_ratio`` (image, sigma, rank);
    ``harmonicity`` (image, sigma); and per σ: ``mean_harmonicity``, ``mean_participation`` (over
    the top K and images), ``adaptivity``, ``harmonic``, ``geometry_adaptive`` and ``verdict``;
    ``spectral_spread`` (image, sigma).
    """
    count = _top(dataset, top)
    vectors = dataset.eigenvector.isel(rank=slice(0, count))
    centroid = frequency_centroid(vectors)
    participation = participation_ratio(vectors)
    rho = harmonicity(dataset, count)
    mean_rho = rho.mean("image")
    mean_participation = participation.mean(("image", "rank"))
    adapt = adaptivity(dataset, count)
    spread = spectral_spread(dataset, count)
    determined = (spread >= SPREAD_THRESHOLD).all("image")
    harmonic = determined & (mean_rho >= HARMONICITY_THRESHOLD) & (mean_participation >= PARTICIPATION_THRESHOLD)
    geometry_adaptive = harmonic & (adapt >= ADAPTIVITY_THRESHOLD)
    verdict = xr.where(geometry_adaptive, "geometry-adaptive harmonic",
                       xr.where(harmonic, "fixed harmonic", "not harmonic"))
    verdict = xr.where(harmonic & adapt.isnull(), "harmonic (adaptivity needs two images)", verdict)
    verdict = xr.where(determined, verdict, "undetermined (degenerate spectrum)")
    return xr.Dataset(
        {
            "frequency_centroid": centroid,
            "participation_ratio": participation,
            "harmonicity": rho,
            "mean_harmonicity": mean_rho.assign_attrs(long_name="harmonicity, mean over images"),
            "mean_participation": mean_participation.assign_attrs(long_name="participation ratio, mean over top K and images"),
            "adaptivity": adapt,
            "spectral_spread": spread,
            "harmonic": harmonic,
            "geometry_adaptive": geometry_adaptive,
            "verdict": verdict.astype(str),
        },
        attrs={
            "top": count,
            "harmonicity_threshold": HARMONICITY_THRESHOLD,
            "participation_threshold": PARTICIPATION_THRESHOLD,
            "adaptivity_threshold": ADAPTIVITY_THRESHOLD,
            "spread_threshold": SPREAD_THRESHOLD,
        },
    )


__all__ = [
    "ADAPTIVITY_THRESHOLD",
    "HARMONICITY_THRESHOLD",
    "PARTICIPATION_THRESHOLD",
    "SPREAD_THRESHOLD",
    "adaptivity",
    "eigenspace_overlap",
    "frequency_centroid",
    "gahb_summary",
    "harmonicity",
    "participation_ratio",
    "spectral_spread",
]
