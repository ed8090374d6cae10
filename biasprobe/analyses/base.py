"""The contract every analysis follows, and the steps they share.

An analysis is a function ``analysis(denoiser, images, *, sigmas=None, timesteps=None, seed=0,
progress=False, **options) -> xarray.Dataset``. Its Dataset has an ``image`` dimension (the
clean images, stored as the variable ``clean``), a ``sigma`` dimension with coordinates ``sigma``
([0, 1] image scale) and ``t`` (the diffusion step, NaN without a schedule), and the provenance
attrs of :func:`biasprobe.store.provenance`. Noise draws are seeded per (image, σ) pair by
:func:`noise_seed`, so one image gives the same noisy observation whatever else is in the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from biasprobe.denoiser import Denoiser
from biasprobe.noise import noise_levels
from biasprobe.store import provenance

SIGMA_UNITS = "noise standard deviation on the [0, 1] image scale"


def prepare(
    denoiser: Denoiser,
    images: torch.Tensor,
    sigmas: Sequence[float] | None,
    timesteps: Sequence[float] | None,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Validated (B, C, H, W) images on the denoiser's device, and the run's (σ, t)."""
    images = denoiser.check_images(torch.as_tensor(images)).to(denoiser.device, torch.float32)
    sigma, steps = noise_levels(denoiser, sigmas, timesteps)
    return images, sigma, steps


def noise_seed(seed: int, image_index: int, sigma_index: int) -> int:
    """The seed of the noise draw for one (image, σ) pair of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, image_index, sigma_index]).generate_state(1)[0])


def base_dataset(images: torch.Tensor, sigma: np.ndarray, steps: np.ndarray) -> xr.Dataset:
    """A Dataset holding the clean images and the labelled noise-level coordinates."""
    clean = images.detach().cpu().numpy()
    return xr.Dataset(
        {"clean": (("image", "channel", "y", "x"), clean, {"long_name": "clean image", "units": "[0, 1]"})},
        coords={
            "image": np.arange(len(clean)),
            "sigma": ("sigma", sigma, {"units": SIGMA_UNITS}),
            "t": ("sigma", steps, {"long_name": "diffusion step of sigma (NaN: no schedule)"}),
        },
    )


def with_provenance(dataset: xr.Dataset, denoiser: Denoiser, analysis: str, seed: int, **extra) -> xr.Dataset:
    """Attach the provenance attrs (checkpoint path and sha256 when the denoiser came from a file)."""
    path = denoiser.describe().get("path")
    dataset.attrs.update(
        provenance(denoiser=denoiser, checkpoint=path, seed=seed, device=str(denoiser.device)),
        analysis=analysis,
        **extra,
    )
    return dataset
