"""The support Ω of a clean image, and the graph Laplacian of the pixel grid restricted to it.

GAHB eigenvectors are confined to an image's object and contours and oscillate there; measured
over the whole frame, that confinement reads as "not spread out". These helpers define where the
image is, so that :mod:`biasprobe.analyses.harmonic` measures energy, spread and oscillation on Ω.

Supports (``method``):

``object``
    Objects on a background (Fashion-MNIST, discs): the background b is the median of the frame's
    border pixels; Ω = dilate({p : max_c |x_c(p) − b_c| > ``threshold``}, ``dilation`` pixels).
``edges``
    Natural images: a band around strong edges. With g(p) = |∇x̄(p)| (Sobel, on the channel mean
    x̄), Ω = dilate({p : g(p) ≥ ``threshold`` · max g}, ``dilation`` pixels).
``frame``
    Every pixel (the full-frame metrics).

The graph is the 4-neighbour pixel grid; L_Ω is the Laplacian of the subgraph induced by Ω
(free, i.e. Neumann, boundary), so for a field e on Ω, per channel,

    eᵀ L_Ω e = Σ_{p~q, p, q ∈ Ω} (e_p − e_q)²,

which is 0 for a constant on Ω and at most 8 eᵀe (a checkerboard).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage

from biasprobe.errors import InputError

SUPPORTS = ("object", "edges", "frame")
DEFAULTS = {"object": {"threshold": 0.1, "dilation": 1}, "edges": {"threshold": 0.25, "dilation": 1},
            "frame": {"threshold": 0.0, "dilation": 0}}
"""Default ``threshold`` and ``dilation`` of each support: intensity 0.1 above the background, or
a quarter of the strongest edge; one pixel of dilation (the 3×3 cross)."""


def support_mask(
    image: np.ndarray, method: str = "object", *, threshold: float | None = None, dilation: int | None = None
) -> np.ndarray:
    """Ω of one clean image (C, H, W) in [0, 1], as a boolean (H, W) array (see the module docstring)."""
    if method not in SUPPORTS:
        raise InputError(f"{{support}} must be one of {SUPPORTS}, got {method!r}", parameters=["support"])
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3:
        raise InputError(f"support_mask takes one (C, H, W) image, got shape {image.shape}")
    threshold = DEFAULTS[method]["threshold"] if threshold is None else float(threshold)
    dilation = DEFAULTS[method]["dilation"] if dilation is None else int(dilation)
    if method == "frame":
        return np.ones(image.shape[1:], dtype=bool)
    if method == "object":
        border = np.concatenate([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], axis=1)
        background = np.median(border, axis=1)
        core = (np.abs(image - background[:, None, None]) > threshold).any(axis=0)
    else:
        grey = image.mean(axis=0)
        gradient = np.hypot(ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1))
        core = gradient >= threshold * gradient.max() if gradient.max() > 0 else np.zeros_like(grey, dtype=bool)
    if dilation > 0 and core.any():
        core = ndimage.binary_dilation(core, iterations=dilation)
    return core


def support_masks(images: np.ndarray, method: str = "object", **options) -> np.ndarray:
    """Ω of each image of a (B, C, H, W) stack, (B, H, W) booleans."""
    return np.stack([support_mask(image, method, **options) for image in np.asarray(images)])


def with_support(dataset: xr.Dataset, support: str = "object", **options) -> xr.Dataset:
    """The Dataset with ``support`` (image, y, x): Ω of each clean image by ``support``
    (``object``, ``edges`` or ``frame``; ``options``: threshold, dilation), recorded in its attrs."""
    if support not in SUPPORTS:
        raise InputError(f"{{support}} must be one of {SUPPORTS}, got {support!r}", parameters=["support"])
    masks = support_masks(dataset.clean.values, support, **options)
    return dataset.assign(support=(("image", "y", "x"), masks, {
        "long_name": "support Ω of the clean image", "method": support,
        **{key: float(value) for key, value in options.items() if value is not None}}))


def grid_roughness(fields: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """eᵀ L_Ω e / eᵀ e on Ω for fields (..., C, H, W) and a mask (H, W): 0 for a constant on Ω,
    up to 8 for a checkerboard; NaN where e has no energy on Ω."""
    inside = np.where(mask, fields, 0.0)
    across = mask[:, :-1] & mask[:, 1:]
    down = mask[:-1, :] & mask[1:, :]
    horizontal = np.where(across, np.diff(inside, axis=-1), 0.0) ** 2
    vertical = np.where(down, np.diff(inside, axis=-2), 0.0) ** 2
    numerator = horizontal.sum(axis=(-3, -2, -1)) + vertical.sum(axis=(-3, -2, -1))
    energy = (inside**2).sum(axis=(-3, -2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(energy > 1e-12, numerator / energy, np.nan)


def grid_laplacian(mask: np.ndarray) -> np.ndarray:
    """L_Ω as a dense (|Ω|, |Ω|) matrix, pixels of Ω in row-major order."""
    index = -np.ones(mask.shape, dtype=int)
    index[mask] = np.arange(int(mask.sum()))
    laplacian = np.zeros((int(mask.sum()),) * 2)
    for a, b in ((index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :])):
        pairs = (a >= 0) & (b >= 0)
        p, q = a[pairs], b[pairs]
        np.add.at(laplacian, (p, q), -1.0)
        np.add.at(laplacian, (q, p), -1.0)
        np.add.at(laplacian, (p, p), 1.0)
        np.add.at(laplacian, (q, q), 1.0)
    return laplacian


__all__ = ["SUPPORTS", "grid_laplacian", "grid_roughness", "support_mask", "support_masks"]
