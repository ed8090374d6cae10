"""Variance-preserving noise schedules and the map between diffusion step t and noise level σ.

A DDPM step t corrupts a clean image x₀ as x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε. Dividing by √ᾱ_t gives
the additive form y = x₀ + σ z with

    σ(t) = √((1 − ᾱ_t) / ᾱ_t),        ᾱ_t = 1 / (1 + σ²),

so every step t has one noise level σ (in the network's native units) and back. Steps between
integers are interpolated linearly in log σ, which time-conditioned networks accept because
they embed t continuously.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from biasprobe.errors import InputError

MAX_STEPS = 100_000
"""The longest schedule accepted (DDPM uses 1,000 steps)."""


@dataclass(frozen=True)
class Schedule:
    """A discrete β schedule of ``steps`` steps.

    kind: ``"linear"`` (Ho et al.: β from ``beta_start`` to ``beta_end``) or ``"cosine"``
        (Nichol & Dhariwal: ᾱ_t = cos²(((t/T + s)/(1 + s))·π/2) / cos²(s/(1+s)·π/2), s = 0.008,
        β clipped at 0.999).
    """

    kind: str = "linear"
    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine"):
            raise InputError(f"unknown schedule kind {self.kind!r}; use 'linear' or 'cosine'")
        from biasprobe.validation import count, number

        object.__setattr__(self, "steps", count(self.steps, "steps", minimum=2, maximum=MAX_STEPS))
        for name in ("beta_start", "beta_end"):
            object.__setattr__(self, name, number(getattr(self, name), name, positive=True, maximum=1))

    @property
    def betas(self) -> np.ndarray:
        if self.kind == "linear":
            return np.linspace(self.beta_start, self.beta_end, self.steps, dtype=np.float64)
        s = 0.008
        grid = np.arange(self.steps + 1, dtype=np.float64) / self.steps
        alpha_bar = np.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
        return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999)

    @property
    def alphas_cumprod(self) -> np.ndarray:
        """ᾱ_t for t = 0 … steps − 1."""
        return np.cumprod(1.0 - self.betas)

    @property
    def sigmas(self) -> np.ndarray:
        """σ(t) = √((1 − ᾱ_t)/ᾱ_t) for t = 0 … steps − 1, increasing."""
        alpha_bar = self.alphas_cumprod
        return np.sqrt((1 - alpha_bar) / alpha_bar)

    def sigma(self, t) -> np.ndarray:
        """Native noise level of (possibly fractional) steps t in [0, steps − 1]."""
        t = np.asarray(t, dtype=np.float64)
        if np.any((t < 0) | (t > self.steps - 1)):
            raise InputError(f"diffusion step t must lie in [0, {self.steps - 1}], got {t}")
        return np.exp(np.interp(t, np.arange(self.steps), np.log(self.sigmas)))

    def timestep(self, sigma) -> np.ndarray:
        """The (fractional) step t whose σ(t) equals the native noise level ``sigma``."""
        sigma = np.asarray(sigma, dtype=np.float64)
        low, high = self.sigmas[0], self.sigmas[-1]
        if np.any((sigma < low * (1 - 1e-5)) | (sigma > high * (1 + 1e-5))):  # float32 round-off
            raise InputError(
                f"noise level {sigma} is outside this schedule's range [{low:.4g}, {high:.4g}] "
                "(native units)"
            )
        return np.interp(np.log(sigma), np.log(self.sigmas), np.arange(self.steps, dtype=np.float64))

    def to_dict(self) -> dict:
        return asdict(self)
