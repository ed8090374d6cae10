"""The GAHB verdict: are a denoiser's Jacobian eigenvectors geometry-adaptive harmonics, or memories?

Every function takes the Dataset of :func:`biasprobe.analyses.jacobian.jacobian` (its
``eigenvalue`` and ``eigenvector`` variables, dims (image, sigma, rank, channel, y, x)). With
d = C·H·W, e_k the unit eigenvector of λ_k, Ω the support of the clean image
(:mod:`biasprobe.analyses.support`), a = |Ω|/(H·W) its area fraction and L_Ω the grid Laplacian
on Ω (full formulas and the calibration in ``docs/methods/jacobian.md``):

- the eigenvectors judged, set by the spectrum (science v3, docs/methods/claims.md): only those with
  λ_k ≤ 1 — an eigenvalue above 1 is an overshoot direction of a shrinking denoiser, counted
  (#λ > 1) but never judged, so that a few outliers cannot decide the verdict; with λ̃ the largest
  eigenvalue ≤ 1, the first K of them, K = min(⌊d/16⌋, max(8, #{k : λ̃/2 ≤ λ_k ≤ 1})) (and at most
  the stored ranks), per image and σ (v2: K = min(⌊d/16⌋, max(8, #{k : λ_k ≥ λ₀/2})) from rank 0);
- support energy E_Ω(e) = Σ_{c, p∈Ω} e_{c,p}², confinement E_Ω/a (1: spread like a plane wave,
  1/a: all on Ω) and its normalised excess κ = (Ē_Ω − a)/(1 − a) over the top K (0: not
  confined, 1: entirely on Ω);
- participation within Ω: PR_Ω(e) = (Σ_Ω e²)² / (C·|Ω| Σ_Ω e⁴) (1 for a constant on Ω, 1/(C|Ω|)
  for one pixel);
- roughness R_Ω(e) = e_Ωᵀ L_Ω e_Ω / e_Ωᵀ e_Ω (0 … 8) and the harmonicity ρ = Spearman(k, R_Ω(e_k))
  over k < K: +1 when the oscillation on Ω rises steadily as λ falls;
- spectral spread (λ̃ − λ_last)/|λ̃| over the judged eigenvalues; effective dimensionality tr J and #{k : λ_k > ½};
- the memorization score of :func:`biasprobe.analyses.span.jacobian_memorization`, when
  the training images are known;
- the dimension trend β = d log tr J / d log σ per image (least squares over the σ of the store).

Per image and σ the category is the first that applies: *collapsed* (no λ above ½: D is locally
constant, exact memorization); *memorizing* (memorization score ≥ :data:`MEMORIZATION_THRESHOLD`);
*undetermined (degenerate spectrum)* (spread < :data:`SPREAD_THRESHOLD`); *memorizing* (flat
effective dimensionality: β ≥ :data:`TREND_THRESHOLD`, measured over at least
:data:`TREND_MIN_SIGMAS` noise levels); *geometry-adaptive harmonic* (ρ ≥
:data:`HARMONICITY_THRESHOLD`, mean PR_Ω ≥ :data:`PARTICIPATION_THRESHOLD` and κ ≥
:data:`CONFINEMENT_THRESHOLD`); *fixed harmonic* (the same but κ below it); *not harmonic*. The
verdict per σ is the most frequent category over the images (``split: A / B`` on a tie), with the
counts behind it; ``reason`` says, per image and σ, which test decided the category.

(About 410 lines: the per-vector metrics, the choice of the judged eigenvectors, the categories and the
model's call over images are one rule, calibrated together on the known-answer references.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from biasprobe.analyses.reference import radial_frequency
from biasprobe.analyses.spectra import FIELD, denoiser_order, denoiser_trace, dimension_trend, raw_scale
from biasprobe.analyses.support import grid_roughness, with_support
from biasprobe.errors import InputError
from biasprobe.statistics import bootstrap_interval

HARMONICITY_THRESHOLD = 0.7
"""ρ(k, R_Ω): between the harmonic references (≥ 0.89) and random or pixel bases (≤ 0.58 at K = 16)."""
PARTICIPATION_THRESHOLD = 0.07
"""Mean PR_Ω over the top K: the geometric midpoint of single pixels (≤ 0.013) and harmonics (≥ 0.36)."""
CONFINEMENT_THRESHOLD = 0.5
"""κ: between Fourier modes (≤ 0.02) and Laplacian eigenfunctions of Ω (1)."""
MEMORIZATION_THRESHOLD = 0.5
"""Memorization score: between denoisers that never saw the training images (≤ 0.11) and those
built from them (1.0)."""
TREND_THRESHOLD = -0.2
"""β = d log tr J / d log σ at or above which tr J counts as flat in σ (memorizing): the midpoint of
the references' gap, between memorizers (span projections of 3 and 10 images: β ≥ −0.10) and
denoisers that saw no training set (pixel-wise shrinkage, Wiener, Laplacian and random bases:
β ≤ −0.31)."""
TREND_MIN_SIGMAS = 3
"""Noise levels the trend needs before it enters the verdict (a two-point slope has no check)."""
SPREAD_THRESHOLD = 1e-3
"""Top-K eigenvalues within 0.1 % of each other (J ≈ I of an untrained bias-free UNet: spread
≈ 1e-5) leave their eigenvectors undetermined."""
COLLAPSE_LEVEL = 0.5
"""λ above which a direction counts as passed through (the count #{λ > ½})."""
SPECTRUM_FRACTION = 0.5
"""K counts the eigenvalues with SPECTRUM_FRACTION · λ̃ ≤ λ ≤ JUDGED_MAX."""
MIN_TOP = 8
JUDGED_MAX = 1.0
"""Eigenvalues above it (a shrinking denoiser's overshoot directions) are counted, never judged (science v3)."""

CATEGORIES = (
    "collapsed",
    "memorizing",
    "undetermined (degenerate spectrum)",
    "geometry-adaptive harmonic",
    "fixed harmonic",
    "harmonic (support is the whole frame)",
    "not harmonic",
)


# --------------------------------------------------------------------------- per-vector metrics


def frequency_centroid(eigenvectors: xr.DataArray) -> xr.DataArray:
    """Radial frequency centroid f̄ = Σ|f| P(f) / Σ P(f) of each vector's 2-D power spectrum,
    summed over channels, in cycles per pixel (full frame)."""
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


def participation_ratio(eigenvectors: xr.DataArray, support: xr.DataArray | None = None) -> xr.DataArray:
    """PR = (Σ e_i²)² / (n Σ e_i⁴) over the n entries (channels × pixels) of Ω, or of the whole frame
    without ``support`` (y, x booleans): 1/n for one pixel, 1 for a constant."""
    squares = eigenvectors**2
    channels = eigenvectors.sizes["channel"]
    if support is None:
        count = channels * eigenvectors.sizes["y"] * eigenvectors.sizes["x"]
    else:
        squares = squares.where(support, 0.0)
        count = channels * support.sum(("y", "x"))
    ratio = squares.sum(FIELD) ** 2 / (count * (squares**2).sum(FIELD))
    where = "within the support Ω" if support is not None else "over the frame"
    return ratio.assign_attrs(long_name=f"participation ratio {where}", units="1")


def support_energy(eigenvectors: xr.DataArray, support: xr.DataArray) -> xr.DataArray:
    """E_Ω(e) = Σ_{c, p ∈ Ω} e_{c,p}² of unit vectors: the share of their energy on Ω."""
    energy = (eigenvectors**2).where(support, 0.0).sum(FIELD) / (eigenvectors**2).sum(FIELD)
    return energy.assign_attrs(long_name="eigenvector energy on the support Ω", units="1")


def roughness(eigenvectors: xr.DataArray, support: xr.DataArray) -> xr.DataArray:
    """R_Ω(e) = e_Ωᵀ L_Ω e_Ω / e_Ωᵀ e_Ω, the grid-Laplacian oscillation of e on Ω (0 … 8)."""
    return xr.apply_ufunc(
        grid_roughness, eigenvectors, support, input_core_dims=[list(FIELD), ["y", "x"]], vectorize=True,
    ).assign_attrs(long_name="roughness eᵀL_Ωe / eᵀe on the support Ω", units="1")


# --------------------------------------------------------------------------- choosing K


def overshoot_count(dataset: xr.Dataset) -> xr.DataArray:
    """#{k : λ_k > JUDGED_MAX} among the stored eigenvalues (descending, so these are the first ranks), per image
    and σ: the ranks skipped before the judged ones."""
    return (dataset.eigenvalue > JUDGED_MAX).sum("rank").assign_attrs(
        long_name="#{k : λ_k > 1}, overshoot directions (not judged)")


def spectral_top(dataset: xr.Dataset) -> xr.DataArray:
    """K per image and σ: min(⌊d/16⌋, max(8, #{k : λ̃/2 ≤ λ_k ≤ 1})), λ̃ the largest eigenvalue ≤ 1, at most the
    stored ranks after the skipped ones (:func:`overshoot_count`)."""
    d = int(np.prod([dataset.sizes[dim] for dim in FIELD]))
    spectrum = dataset.eigenvalue
    judged = spectrum.where(spectrum <= JUDGED_MAX)
    first = judged.max("rank")
    count = ((judged >= SPECTRUM_FRACTION * first) & judged.notnull()).sum("rank")
    room = dataset.sizes["rank"] - overshoot_count(dataset)
    limit = np.minimum(room, max(2, d // 16))
    return np.minimum(np.maximum(count, np.minimum(MIN_TOP, limit)), limit).drop_vars(
        "rank", errors="ignore").assign_attrs(long_name="K: eigenvectors judged, λ̃/2 ≤ λ ≤ 1 (at least 8, at most d/16)")


def _fixed_top(dataset: xr.Dataset, top: int) -> xr.DataArray:
    stored = dataset.sizes["rank"]
    if not 2 <= top <= stored:
        raise InputError(f"{{top}} must be between 2 and the {stored} stored eigenvectors, got {top}", parameters=["top"])
    return xr.full_like(dataset.eigenvalue.isel(rank=0, drop=True), top, dtype=int)


# --------------------------------------------------------------------------- cross-image and spectrum


def eigenspace_overlap(dataset: xr.Dataset, first: int, second: int, top: int) -> xr.DataArray:
    """‖V_aᵀ V_b‖_F² / K of the top-K eigenspaces at images a = ``first`` and b = ``second``, per σ:
    the mean squared cosine of their principal angles (1: same space)."""
    vectors = dataset.eigenvector.isel(rank=slice(0, top)).stack(pixel=FIELD).transpose("image", "sigma", "rank", "pixel")
    a, b = vectors.isel(image=first).values, vectors.isel(image=second).values
    overlap = np.square(np.einsum("srp,sqp->srq", a, b)).sum(axis=(1, 2)) / top
    return xr.DataArray(overlap, dims=["sigma"], coords={"sigma": dataset.sigma}, attrs={"top": top})


def adaptivity(dataset: xr.Dataset, top: int) -> xr.DataArray:
    """1 − eigenspace overlap of the top K, averaged over every pair of images, per σ (NaN with one
    image). Reported, not judged: random K-dimensional subspaces give 1 − K/d."""
    pairs = list(itertools.combinations(range(dataset.sizes["image"]), 2))
    if not pairs:
        values = xr.full_like(dataset.sigma, np.nan, dtype=float)
    else:
        values = 1 - sum(eigenspace_overlap(dataset, a, b, top) for a, b in pairs) / len(pairs)
    return values.rename("adaptivity").assign_attrs(
        long_name="adaptivity: 1 − overlap of top-K eigenspaces between images", top=top)


# --------------------------------------------------------------------------- context and verdict


def gahb_summary(dataset: xr.Dataset, top: int | None = None, *, support: str | None = None) -> xr.Dataset:
    """Per-rank metrics, per-image scores and categories, and the verdict per σ.

    ``top`` fixes K for every image (default: :func:`spectral_top`); ``support`` recomputes Ω
    (default: the store's ``support``, else ``object``). A raw-output store is first mapped to the
    denoiser's order (:func:`denoiser_order`), or refused.

    Returns per (image, sigma, rank): ``frequency_centroid``, ``participation_ratio`` (on Ω),
    ``support_energy``, ``roughness`` (NaN outside each image's judged ranks); per (image, sigma): ``top`` (K),
    ``count_above_one`` (#λ > 1, the ranks skipped before the judged ones),
    ``harmonicity``, ``participation``, ``confinement``, ``confinement_excess``, ``spectral_spread``,
    ``effective_dimension``, ``count_above_half``, ``category``, ``reason`` (the tests that decided
    it) (and ``memorization_score`` when known); per image: ``support_area`` and ``dimension_trend``
    β; per σ: ``mean_harmonicity``, ``mean_participation``, ``mean_confinement_excess``,
    ``adaptivity``, ``verdict`` and ``category_count`` (sigma, label: one per category).
    """
    dataset = denoiser_order(dataset)
    if support is not None or "support" not in dataset:
        dataset = with_support(dataset, support or "object")
    mask = dataset.support.astype(bool)
    skipped = overshoot_count(dataset)
    limit = _fixed_top(dataset, top) if top is not None else spectral_top(dataset)
    limit = np.minimum(limit, dataset.sizes["rank"] - skipped).assign_attrs(limit.attrs)
    largest = int((skipped + limit).max())
    ranks = xr.DataArray(np.arange(largest), dims="rank")
    within = (ranks >= skipped) & (ranks < skipped + limit)
    vectors = dataset.eigenvector.isel(rank=slice(0, largest))
    vectors = vectors.assign_coords(rank=np.arange(largest))

    energy = support_energy(vectors, mask).where(within)
    participation = participation_ratio(vectors, mask).where(within)
    rough = roughness(vectors, mask).where(within)
    centroid = frequency_centroid(vectors).where(within)
    area = mask.mean(("y", "x")).assign_attrs(long_name="support area fraction a = |Ω|/(H·W)")

    def correlation(values: np.ndarray) -> float:
        valid = np.isfinite(values)
        if valid.sum() < 3 or np.ptp(values[valid]) == 0:
            return 0.0
        return float(spearmanr(np.arange(len(values))[valid], values[valid]).statistic)

    rho = xr.apply_ufunc(correlation, rough, input_core_dims=[["rank"]], vectorize=True).assign_attrs(
        long_name="harmonicity ρ(k, R_Ω(e_k))")
    mean_energy = energy.mean("rank")
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = ((mean_energy - area) / (1 - area)).where(area < 1)
    eigenvalues = dataset.eigenvalue.isel(rank=slice(0, largest)).assign_coords(rank=np.arange(largest))
    first, last = eigenvalues.where(within).max("rank"), eigenvalues.where(within).min("rank")
    spread = (first - last) / np.abs(first)
    above = (dataset.spectrum > COLLAPSE_LEVEL).sum("index")
    mean_participation = participation.mean("rank")

    harmonic = (rho >= HARMONICITY_THRESHOLD) & (mean_participation >= PARTICIPATION_THRESHOLD)
    category = xr.where(harmonic, xr.where(excess.isnull(), CATEGORIES[5],
                                           xr.where(excess >= CONFINEMENT_THRESHOLD, CATEGORIES[3], CATEGORIES[4])),
                        CATEGORIES[6])
    trend = dimension_trend(dataset.effective_dimension)
    judged_trend = trend if dataset.sizes["sigma"] >= TREND_MIN_SIGMAS else xr.full_like(trend, np.nan)
    category = xr.where(judged_trend >= TREND_THRESHOLD, CATEGORIES[1], category)
    category = xr.where(spread < SPREAD_THRESHOLD, CATEGORIES[2], category)
    scores = {}
    score = xr.full_like(rho, np.nan)
    if "memorization_score" in dataset:
        score = scores["memorization_score"] = dataset.memorization_score
        category = xr.where(dataset.memorization_score >= MEMORIZATION_THRESHOLD, CATEGORIES[1], category)
    category = xr.where(above == 0, CATEGORIES[0], category).astype(str)
    with np.errstate(invalid="ignore"):  # NaN scores and trends compare False
        reason = xr.apply_ufunc(_reason, category, spread, judged_trend, score, rho, mean_participation, excess,
                                vectorize=True, output_dtypes=[object]).astype(str)

    counts = np.stack([(category == name).sum("image").values for name in CATEGORIES], axis=-1)
    count = xr.DataArray(counts, dims=("sigma", "label"),
                         coords={"sigma": dataset.sigma, "label": list(CATEGORIES)},
                         attrs={"long_name": "images per category"})
    verdict = xr.DataArray([most_frequent(row) for row in counts], dims="sigma",
                           coords={"sigma": dataset.sigma}, attrs={"long_name": "most frequent category"})
    return xr.Dataset(
        {
            "frequency_centroid": centroid,
            "participation_ratio": participation,
            "support_energy": energy,
            "roughness": rough,
            "top": limit,
            "count_above_one": skipped,
            "harmonicity": rho,
            "participation": mean_participation.assign_attrs(long_name="participation ratio on Ω, mean over the top K"),
            "confinement": (mean_energy / area).assign_attrs(long_name="confinement Ē_Ω / a"),
            "confinement_excess": excess.assign_attrs(long_name="confinement κ = (Ē_Ω − a)/(1 − a)"),
            "spectral_spread": spread.assign_attrs(long_name="spectral spread (λ̃ − λ_last)/|λ̃| of the judged eigenvalues"),
            "effective_dimension": dataset.effective_dimension,
            "count_above_half": above.assign_attrs(long_name="#{k : λ_k > ½}"),
            **scores,
            "category": category.assign_attrs(long_name="GAHB category"),
            "reason": reason.assign_attrs(long_name="the tests that decided the category"),
            "support_area": area,
            "dimension_trend": trend,
            "mean_harmonicity": rho.mean("image").assign_attrs(long_name="harmonicity, mean over images"),
            "mean_participation": mean_participation.mean("image").assign_attrs(
                long_name="participation ratio on Ω, mean over the top K and images"),
            "mean_confinement_excess": excess.mean("image").assign_attrs(long_name="κ, mean over images"),
            "adaptivity": adaptivity(dataset, int(limit.min())),
            "category_count": count,
            "verdict": verdict,
        },
        attrs={
            "support": str(dataset.support.attrs.get("method", "object")),
            "harmonicity_threshold": HARMONICITY_THRESHOLD,
            "participation_threshold": PARTICIPATION_THRESHOLD,
            "confinement_threshold": CONFINEMENT_THRESHOLD,
            "memorization_threshold": MEMORIZATION_THRESHOLD,
            "spread_threshold": SPREAD_THRESHOLD,
            "trend_threshold": TREND_THRESHOLD,
            "trend_min_sigmas": TREND_MIN_SIGMAS,
            "output": dataset.attrs.get("output", "denoised"),
            "mapped_from": dataset.attrs.get("mapped_from", ""),
        },
    )


def _reason(category: str, spread: float, trend: float, score: float, rho: float, participation: float,
            excess: float) -> str:
    """Which tests decided ``category``, with their values and thresholds (``trend`` is NaN when the
    store has fewer than :data:`TREND_MIN_SIGMAS` noise levels, ``score`` when no training images)."""
    if category == CATEGORIES[0]:
        return f"no λ > {COLLAPSE_LEVEL:g}"
    if category == CATEGORIES[1]:
        tests = []
        if score >= MEMORIZATION_THRESHOLD:
            tests.append(f"training-span score {score:.2f} ≥ {MEMORIZATION_THRESHOLD:g}")
        if trend >= TREND_THRESHOLD:
            tests.append(f"tr J flat in σ: β = {trend:.3f} ≥ {TREND_THRESHOLD:g}")
        return "; ".join(tests)
    if category == CATEGORIES[2]:
        return f"spectral spread {spread:.1e} < {SPREAD_THRESHOLD:g}"
    tests = [_compared("ρ", rho, HARMONICITY_THRESHOLD, ".2f"),
             _compared("PR_Ω", participation, PARTICIPATION_THRESHOLD, ".3f")]
    if category == CATEGORIES[6]:
        return ", ".join(test for test in tests if " < " in test)
    if np.isfinite(excess):
        tests.append(_compared("κ", excess, CONFINEMENT_THRESHOLD, ".2f"))
    return ", ".join(tests)


def _compared(name: str, value: float, threshold: float, style: str) -> str:
    """'name value ≥ threshold' or 'name value < threshold'."""
    return f"{name} {value:{style}} {'≥' if value >= threshold else '<'} {threshold:g}"


def most_frequent(counts: np.ndarray) -> str:
    """The category with the most images, or ``split: A / B`` when several share the largest count."""
    leaders = [name for name, count in zip(CATEGORIES, counts) if count == counts.max()]
    return leaders[0] if len(leaders) == 1 else "split: " + " / ".join(leaders)


GAHB_SHARE = 0.5
"""A model's eigenvectors are called geometry-adaptive harmonic when the bootstrap interval of the share of its
images judged so lies above this share, and not when it lies below (science v3)."""
MODEL_CALLS = ("geometry-adaptive harmonic", "not geometry-adaptive harmonic", "undecided")


def image_categories(summaries: Sequence[xr.Dataset]) -> xr.DataArray:
    """Per image, its most frequent category over the σ of every summary (one summary per noise draw of the same
    images: :func:`gahb_summary` of stores computed with different seeds); a tie is ``split: A / B``
    (:func:`most_frequent`), which is no category: an image is geometry-adaptive harmonic only when that category
    is strictly the most frequent. (Until 2026-12-08, before any v3 store: ties went to the first in
    :data:`CATEGORIES`'s order, which is geometry-adaptive harmonic before the others, so a 3-3 split of six votes
    counted as harmonic.)"""
    stacked = xr.concat([summary.category for summary in summaries], dim="draw")
    counts = np.stack([(stacked == name).sum(("draw", "sigma")).values for name in CATEGORIES], axis=-1)
    return xr.DataArray([most_frequent(row) for row in counts], dims="image",
                        coords={"image": stacked.image}, attrs={"long_name": "most frequent category over σ and draws"})


def model_call(summaries: Sequence[xr.Dataset], *, seed: int = 0) -> tuple[str, float, tuple[float, float]]:
    """A model's GAHB call from its images (science v3, docs/methods/claims.md): the share of images whose most
    frequent category over σ and noise draws (:func:`image_categories`) is geometry-adaptive harmonic, its
    bootstrap interval over images (:func:`biasprobe.statistics.bootstrap_interval`), and the call:
    "geometry-adaptive harmonic" when the interval lies above :data:`GAHB_SHARE`, "not geometry-adaptive
    harmonic" when below, else "undecided"."""
    flags = (image_categories(summaries) == CATEGORIES[3]).values.astype(float)
    share = float(flags.mean()) if len(flags) else float("nan")
    low, high = bootstrap_interval(flags, seed=seed)
    call = MODEL_CALLS[0] if low > GAHB_SHARE else MODEL_CALLS[1] if high < GAHB_SHARE else MODEL_CALLS[2]
    return call, share, (low, high)


def verdict_line(summary: xr.Dataset, sigma: int) -> str:
    """'verdict (n₁ category₁, n₂ category₂ …)' for one σ, counting only non-empty categories."""
    at = summary.isel(sigma=sigma)
    counts = at.category_count
    counts = ", ".join(f"{int(n)} {name}" for name, n in zip(counts["label"].values, counts.values) if n)
    return f"{at.verdict.item()} ({counts})"


__all__ = [
    "CATEGORIES",
    "CONFINEMENT_THRESHOLD",
    "HARMONICITY_THRESHOLD",
    "MEMORIZATION_THRESHOLD",
    "PARTICIPATION_THRESHOLD",
    "SPREAD_THRESHOLD",
    "TREND_MIN_SIGMAS",
    "TREND_THRESHOLD",
    "adaptivity",
    "denoiser_order",
    "denoiser_trace",
    "dimension_trend",
    "eigenspace_overlap",
    "frequency_centroid",
    "gahb_summary",
    "image_categories",
    "model_call",
    "most_frequent",
    "participation_ratio",
    "raw_scale",
    "roughness",
    "spectral_top",
    "support_energy",
    "verdict_line",
    "with_support",
]
