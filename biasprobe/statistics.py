"""Numbers with their uncertainty: estimates with standard errors, their comparison, bootstrap intervals.

The statistics every comparison of biasprobe reads (the GAHB call over images, the claims' rules of
:mod:`biasprobe.reports.rules`):

- an :class:`Estimate` is a value with its standard error, the seeds behind it and the training
  steps it was measured at; a cell of k seeds with values gᵢ and image standard errors sᵢ is

      ḡ = mean gᵢ,   se = max(sd(g)/√k, √(Σ sᵢ²)/k)     (k ≥ 2; se = s₁ for one seed)   (:func:`combine_seeds`)

  — the seeds' scatter, never less than the image noise it contains (two or three seeds give a
  rough s.d.);
- two estimates differ at z standard errors when |a − b| > z·√(se_a² + se_b²) (:func:`compare`) — the band of two
  independent samples; where both were measured on the same images (the same training images, test images and
  noise), the band is z times the standard error of the per-image differences, d = ā − b̄ over each split,
  se_d = √(Σ_split var(Δ)/n) (:func:`paired_difference`), usually several times narrower;
- :func:`bootstrap_interval`: the percentile interval of a statistic over resamples of the images
  (coverage :data:`CONFIDENCE`, :data:`RESAMPLES` resamples, seeded).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
"""Coverage of every bootstrap interval."""
RESAMPLES = 2000
"""Bootstrap resamples (over images), drawn from a generator seeded with the call's seed (0 by default)."""


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error, the seeds behind it and the training steps it was measured at."""

    value: float
    se: float
    seeds: int = 1
    steps: int | None = None

    def text(self, digits: int = 2) -> str:
        """``2.14 ± 0.12 (3 seeds, 16.0k steps)``; one seed is said."""
        seeds = f"{self.seeds} seeds" if self.seeds > 1 else "1 seed"
        steps = "" if self.steps is None else f", {thousands(self.steps)} steps"
        return f"{self.value:.{digits}f} ± {self.se:.{digits}f} ({seeds}{steps})"


def thousands(steps: int) -> str:
    """``16.0k`` for 16000 steps, the number itself below 1000."""
    return f"{steps / 1000:.1f}k" if steps >= 1000 else str(steps)


def over_images(values: Sequence[float] | np.ndarray, steps: int | None = None) -> Estimate:
    """The mean of one value per image with its standard error s/√n over the finite values (NaN value without any,
    NaN standard error with fewer than two)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    se = float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    return Estimate(mean, se, 1, steps)


def combine_seeds(values: Sequence[float], ses: Sequence[float], steps: int | None = None) -> Estimate:
    """One cell's estimate from its seeds' values and image standard errors (module doc)."""
    values, ses = np.asarray(values, float), np.asarray(ses, float)
    if len(values) == 0 or len(values) != len(ses):
        raise ValueError("combine_seeds needs one standard error per value, and at least one value")
    k = len(values)
    if not (np.isfinite(values).all() and np.isfinite(ses).all()):  # a diverged seed: no number, never a pass
        return Estimate(float("nan"), float("nan"), k, steps)
    if k == 1:
        return Estimate(float(values[0]), float(ses[0]), 1, steps)
    se = max(float(values.std(ddof=1)) / math.sqrt(k), float(np.sqrt((ses**2).sum())) / k)
    return Estimate(float(values.mean()), se, k, steps)


def finite(*estimates: Estimate | None) -> bool:
    """Whether every estimate is given, with a finite value and standard error."""
    return all(e is not None and math.isfinite(e.value) and math.isfinite(e.se) for e in estimates)


def compare(a: Estimate, b: Estimate, z: float, difference: Estimate | None = None) -> int:
    """+1 when a > b beyond z·√(se_a² + se_b²), −1 when a < b beyond it, 0 within it; given the paired
    ``difference`` a − b (:func:`paired_difference`: both measured on the same images), the band is z·se_d.
    Refuses a non-finite estimate (ValueError): a missing number must not read as "within noise"."""
    if not finite(a, b) or (difference is not None and not finite(difference)):
        raise ValueError("compare needs finite estimates (a diverged model's NaN is not a number to judge)")
    if difference is None:
        band, gap = z * math.hypot(a.se, b.se), a.value - b.value
    else:
        band, gap = z * difference.se, difference.value
    return 1 if gap > band else -1 if gap < -band else 0


def paired_difference(first: Mapping[str, Sequence[float]], second: Mapping[str, Sequence[float]],
                      steps: int | None = None) -> Estimate:
    """The difference of two gaps measured on the same images, with its paired standard error: per split (train,
    test) the per-image differences Δᵢ of the two models' t-averaged PSNR, d = mean Δ_train − mean Δ_test and
    se_d = √(var(Δ_train)/n_train + var(Δ_test)/n_test) (sample variances); NaN images are left out of both.
    Raises ValueError when the splits' image counts differ (not the same images)."""
    value, variance = 0.0, 0.0
    for split, sign in (("train", 1.0), ("test", -1.0)):
        a, b = np.asarray(first[split], float), np.asarray(second[split], float)
        if a.shape != b.shape:
            raise ValueError(f"the {split} splits hold {len(a)} and {len(b)} images: not the same images")
        delta = (a - b)[np.isfinite(a) & np.isfinite(b)]
        if len(delta) < 2:
            return Estimate(float("nan"), float("nan"), 1, steps)
        value += sign * float(delta.mean())
        variance += float(delta.var(ddof=1)) / len(delta)
    return Estimate(value, math.sqrt(variance), 1, steps)


def bootstrap_interval(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean,
                       *, seed: int = 0) -> tuple[float, float]:
    """The percentile interval (coverage :data:`CONFIDENCE`) of ``statistic`` over :data:`RESAMPLES` resamples of
    ``values`` (one per image; rows of a 2-D array are resampled together); NaNs for fewer than two values."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return (float("nan"), float("nan"))
    generator = np.random.default_rng(seed)
    picks = generator.integers(0, len(values), size=(RESAMPLES, len(values)))
    draws = np.array([statistic(values[p]) for p in picks])
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)
