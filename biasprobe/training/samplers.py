"""Drawing samples with a denoiser, written once in the variance-exploding form y = x + σz.

A variance-preserving DDPM step is the same process rescaled (see :mod:`biasprobe.schedules`),
so with x̂ = D(y, σ) and a decreasing noise grid σ₀ > σ₁ > … the samplers are:

- ``ddim`` (η = 0, the probability-flow ODE):  y' = x̂ + (σ'/σ)(y − x̂)
- ``ddpm`` (ancestral; the DDPM posterior given x̂):  y' = x̂ + (σ'²/σ²)(y − x̂) + σ'·√(1 − σ'²/σ²)·z
- ``ascent`` for blind denoisers (Kadkhodaie & Simoncelli 2021, stochastic coarse-to-fine ascent):
  with d = D(y) − y and σ² = ‖d‖²/N, y ← y + h d + γ z, γ² = ((1 − βh)² − (1 − h)²)σ², and a step
  h_k = h₀k/(1 + h₀(k − 1)) growing until σ falls below ``final_sigma``.

Samples start from y = 1/2 + σ₀z and are returned as the last x̂ (``ascent``: the last D(y)).
All noise comes from one seeded generator, so a seed gives the same samples on any device.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.progress import task

METHODS = ("ddim", "ddpm", "ascent")


def sample(
    denoiser: Denoiser,
    count: int,
    *,
    method: str | None = None,
    steps: int = 100,
    seed: int = 0,
    batch_size: int = 64,
    initial_sigma: float = 1.0,
    final_sigma: float = 0.01,
    beta: float = 0.5,
    first_step: float = 0.01,
    max_iterations: int = 2000,
    progress: bool = False,
) -> torch.Tensor:
    """``count`` samples (count, C, H, W) in [0, 1] units (not clipped).

    ``method`` defaults to ``ddim`` for denoisers with a schedule and ``ascent`` for blind ones.
    The ``ascent`` knobs are ``initial_sigma``, ``final_sigma``, ``beta``, ``first_step`` and
    ``max_iterations``; the scheduled samplers take ``steps`` evenly spaced diffusion steps.
    Image i depends only on (seed, i), never on the batch size.
    """
    scheduled = denoiser.schedule is not None
    method = method or ("ddim" if scheduled else "ascent")
    if method not in METHODS:
        raise InputError(f"unknown sampler {method!r}; use one of {', '.join(METHODS)}")
    if method != "ascent" and not scheduled:
        raise InputError(f"the {method} sampler needs a noise schedule; this denoiser is blind: use ascent")
    if count < 1 or steps < 2:
        raise InputError("count must be positive and steps at least 2")
    batches = [range(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    results = []
    # ascent stops when its effective σ reaches final_sigma: no total, the σ reached is the status
    per_batch = None if method == "ascent" else steps
    unit = "iterations" if method == "ascent" else "steps"
    for number, batch in enumerate(batches, 1):
        generators = [torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
                      for i in batch]
        draw = _per_image_noise(generators, denoiser)
        where = f"sampling ({method}), images {batch.start + 1}-{batch.stop} of {count}"
        if len(batches) > 1:
            where += f" (batch {number}/{len(batches)})"
        with task(where, per_batch, unit=unit, enabled=progress) as advance:
            if method == "ascent":
                results.append(_ascent(denoiser, draw, initial_sigma, final_sigma, beta, first_step, max_iterations,
                                       advance))
            else:
                results.append(_scheduled(denoiser, draw, method, steps, advance))
    return torch.cat(results)


def _per_image_noise(generators, denoiser: Denoiser):
    """A function drawing z ~ N(0, I) for the batch, one seeded stream per image."""
    shape = tuple(denoiser.image_shape)

    def draw() -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(denoiser.device)

    return draw


@torch.no_grad()
def _scheduled(denoiser, draw, method: str, steps: int, advance=lambda: None) -> torch.Tensor:
    schedule = denoiser.schedule
    grid = np.linspace(schedule.steps - 1, 0, steps)
    sigmas = [denoiser.t_to_sigma(float(t)) for t in grid]
    y = 0.5 + sigmas[0] * draw()
    for sigma, following in itertools.pairwise(sigmas):
        estimate = denoiser.denoise(y, sigma)
        if method == "ddim":
            y = estimate + (following / sigma) * (y - estimate)
        else:
            ratio = (following / sigma) ** 2
            y = estimate + ratio * (y - estimate) + following * np.sqrt(1 - ratio) * draw()
        advance()
    result = denoiser.denoise(y, sigmas[-1]).cpu()
    advance()
    return result


@torch.no_grad()
def _ascent(denoiser, draw, initial_sigma, final_sigma, beta, first_step, max_iterations,
            advance=lambda amount=1, status=None: None) -> torch.Tensor:
    y = 0.5 + initial_sigma * draw()
    pixels = float(np.prod(denoiser.image_shape))
    active = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for k in range(1, max_iterations + 1):
        residual = denoiser.denoise(y, initial_sigma) - y
        sigma = residual.flatten(1).norm(dim=1) / np.sqrt(pixels)
        active &= sigma > final_sigma
        if not active.any():
            break
        h = first_step * k / (1 + first_step * (k - 1))
        gamma = np.sqrt(max((1 - beta * h) ** 2 - (1 - h) ** 2, 0.0)) * sigma
        step = h * residual + gamma.view(-1, 1, 1, 1) * draw()
        y = torch.where(active.view(-1, 1, 1, 1), y + step, y)
        advance(1, f"largest σ {float(sigma.max()):.3g}, stops at {final_sigma:g}")
    return denoiser.denoise(y, final_sigma).cpu()
