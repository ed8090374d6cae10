"""Synthetic infinite families: C^α contours (Kadkhodaie et al., ICLR 2024, Sec. 5) and random discs.

Image ``i`` of a split is a function of ``(seed, split, i)`` alone: its parameters come from a generator
seeded with that triple, and it is rendered analytically on the unit square sampled at pixel centres, so
the same image can be drawn at any size and train and test never share an image. Edges are blurred by a
Gaussian of half a pixel to avoid aliasing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from biasprobe.data.base import Info, Request
from biasprobe.errors import InputError

SPLIT_CODES = {"train": 0, "test": 1}
EDGE_BLUR_PIXELS = 0.5
DEFAULT_ALPHA = 1.0
FREQUENCIES = 256
"""Terms of the boundary's Fourier series: the contour is the same curve at every image size."""
CONTOUR_STD = 0.1
MAX_DISCS = 4

Parameters = dict[str, np.ndarray | float]


def pixel_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of the pixel centres of a size×size image on the unit square centred at 0, each (1, H, W)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return x[None], y[None]


def soft_step(signed_distance: torch.Tensor, size: int) -> torch.Tensor:
    """A step edge (1 where the distance is positive) blurred by a Gaussian of :data:`EDGE_BLUR_PIXELS`."""
    return 0.5 * (1 + torch.erf(signed_distance * (size / (EDGE_BLUR_PIXELS * math.sqrt(2)))))


def contrasting(rng: np.random.Generator, level: float, count: int | None = None) -> np.ndarray:
    """Intensities in [0.1, 0.9] that differ from ``level`` (itself in [0.1, 0.9]) by 0.2 to 0.4."""
    shifted = level + rng.choice([-1, 1], count) * rng.uniform(0.2, 0.4, count)
    return np.where((shifted >= 0.1) & (shifted <= 0.9), shifted, 2 * level - shifted)


def draw_contour(rng: np.random.Generator) -> Parameters:
    """Parameters of one C^α image: boundary orientation, offset and Fourier coefficients; the two sides'
    mean intensities (0.2 to 0.4 apart) and linear gradients."""
    mean = rng.uniform(0.1, 0.9)
    return {
        "angle": rng.uniform(0, 2 * np.pi),
        "offset": rng.uniform(-0.15, 0.15),
        "amplitudes": rng.standard_normal(FREQUENCIES),
        "phases": rng.uniform(0, 2 * np.pi, FREQUENCIES),
        "means": np.array([mean, contrasting(rng, mean)]),
        "slopes": rng.uniform(-0.1, 0.1, 2),
        "gradient_angles": rng.uniform(0, 2 * np.pi, 2),
    }


def render_contour(params: dict[str, torch.Tensor], size: int, alpha: float) -> torch.Tensor:
    """C^α images: the boundary v = f(u) across the image, f a random Fourier series with coefficients
    decaying as k^-(α+1/2) (Hölder regularity α); its standard deviation is :data:`CONTOUR_STD`."""
    x, y = pixel_grid(size)
    angle = params["angle"][:, None, None]
    along = -x * torch.sin(angle) + y * torch.cos(angle)
    across = x * torch.cos(angle) + y * torch.sin(angle) - params["offset"][:, None, None]

    # f on a fine periodic grid over u in [-1, 1) through one inverse FFT, then linear interpolation.
    frequencies = torch.arange(1, FREQUENCIES + 1, dtype=torch.float32)
    decay = frequencies ** -(alpha + 0.5)
    decay *= CONTOUR_STD / torch.sqrt((decay**2).sum() / 2)
    samples = max(4 * FREQUENCIES, 16 * size)
    spectrum = torch.zeros(len(angle), samples // 2 + 1, dtype=torch.complex64)
    coefficients = params["amplitudes"] * decay * torch.exp(1j * params["phases"])
    spectrum[:, 1 : FREQUENCIES + 1] = coefficients * (samples / 2)
    curve = torch.fft.irfft(spectrum, n=samples)
    position = ((along + 1) / 2 * samples).flatten(1)
    left = position.floor().long()
    weight = position - left
    boundary = torch.lerp(curve.gather(1, left), curve.gather(1, left + 1), weight)

    side = soft_step(across - boundary.view_as(across), size)
    gradient_angles = params["gradient_angles"][:, :, None, None]
    intensities = params["means"][:, :, None, None] + params["slopes"][:, :, None, None] * (
        x[:, None] * torch.cos(gradient_angles) + y[:, None] * torch.sin(gradient_angles)
    )
    return torch.lerp(intensities[:, 1], intensities[:, 0], side)


def draw_discs(rng: np.random.Generator) -> Parameters:
    """Parameters of one disc image: background, disc count (1 to :data:`MAX_DISCS`), centres, radii, and
    intensities 0.2 to 0.4 away from the background."""
    background = rng.uniform(0.1, 0.9)
    return {
        "background": background,
        "count": rng.integers(1, MAX_DISCS + 1),
        "centres": rng.uniform(-0.4, 0.4, (MAX_DISCS, 2)),
        "radii": rng.uniform(0.05, 0.25, MAX_DISCS),
        "intensities": contrasting(rng, background, MAX_DISCS),
    }


def render_discs(params: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """Discs painted in order over a uniform background, later discs occluding earlier ones."""
    x, y = pixel_grid(size)
    image = params["background"][:, None, None].expand(-1, size, size)
    for disc in range(MAX_DISCS):
        centre = params["centres"][:, disc, :, None, None]
        distance = torch.hypot(x - centre[:, 0], y - centre[:, 1])
        cover = soft_step(params["radii"][:, disc, None, None] - distance, size)
        cover = cover * (params["count"] > disc)[:, None, None]
        image = torch.lerp(image, params["intensities"][:, disc, None, None].expand_as(image), cover)
    return image


class Generated:
    """One split of an infinite family; ``take`` draws and renders the requested indices."""

    def __init__(
        self,
        request: Request,
        draw: Callable[[np.random.Generator], Parameters],
        render: Callable[[dict[str, torch.Tensor], int], torch.Tensor],
    ) -> None:
        self.key = (request.seed, SPLIT_CODES[request.split])
        self.size, self.draw, self.render = request.size, draw, render

    def take(self, indices: np.ndarray) -> tuple[torch.Tensor, Info]:
        drawn = [self.draw(np.random.default_rng([*self.key, int(i)])) for i in indices]
        if not drawn:
            return torch.empty(0, 1, self.size, self.size), {"index": indices}
        params = {}
        for name in drawn[0]:
            column = torch.from_numpy(np.stack([parameters[name] for parameters in drawn]))
            params[name] = column.float() if column.is_floating_point() else column
        return self.render(params, self.size).unsqueeze(1), {"index": indices}


def c_alpha(request: Request) -> Generated:
    """The C^α family; ``c-alpha:0.5`` sets α (default :data:`DEFAULT_ALPHA`)."""
    try:
        alpha = DEFAULT_ALPHA if request.argument is None else float(request.argument)
    except ValueError:
        alpha = math.nan
    if not (math.isfinite(alpha) and alpha > 0):
        raise InputError(f"c-alpha:{request.argument}: α must be a positive number, e.g. c-alpha:0.5")
    return Generated(request, draw_contour, partial(render_contour, alpha=alpha))


def discs(request: Request) -> Generated:
    """The random-disc family."""
    return Generated(request, draw_discs, render_discs)
