"""The contract every analysis follows, as code (:class:`Analysis`), and the steps they share.

An analysis is a function ``analysis(denoiser, *inputs, seed=0, progress=False, **options) ->
xarray.Dataset`` registered with the :func:`analysis` decorator, which checks the contract when
the function is defined (a first parameter ``denoiser``; keyword-only ``seed`` (default 0) and
``progress`` (default False)) and on every call (a :class:`~biasprobe.denoiser.Denoiser` in, a
Dataset out whose attrs name the analysis and carry the provenance of
:func:`biasprobe.store.provenance`). Analyses over noisy images (jacobian, locality) also share
the layout built by :func:`base_dataset`: an ``image`` dimension (the clean images, stored as the
variable ``clean``), a ``sigma`` dimension with coordinates ``sigma`` ([0, 1] image scale) and
``t`` (the diffusion step, NaN without a schedule). Noise draws are seeded per (image, σ) pair by
:func:`noise_seed`, so one image gives the same noisy observation whatever else is in the run.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.noise import noise_levels
from biasprobe.store import provenance

SIGMA_UNITS = "[0, 1] scale"
SIGMA_ATTRS = {"long_name": "noise level σ", "units": SIGMA_UNITS,
               "description": "noise standard deviation on the [0, 1] image scale"}
"""The attrs of every store's ``sigma`` coordinate (figures label their axes with them)."""
STEP_ATTRS = {"long_name": "diffusion step t", "description": "the step of the schedule at sigma (NaN: no schedule)"}
"""The attrs of every store's ``t`` coordinate."""
PROVENANCE_ATTRS = ("biasprobe_version", "command", "created", "analysis", "seed")
"""Attrs every analysis Dataset carries (with ``checkpoint`` and ``checkpoint_sha256`` for files)."""

ANALYSES: dict[str, Analysis] = {}
"""Every registered analysis by name."""


class Analysis:
    """One analysis of a denoiser: a function under the contract of this module, checked.

    Calling it calls the function and checks the result; its name, signature and docstring are the
    function's. Use the :func:`analysis` decorator rather than this class directly.
    """

    def __init__(self, name: str, function: Callable[..., xr.Dataset]) -> None:
        parameters = list(inspect.signature(function).parameters.values())
        if not parameters or parameters[0].name not in ("denoiser", "first"):
            raise TypeError(f"analysis {name!r}: the first parameter must be the denoiser")
        keywords = {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        for keyword, default in (("seed", 0), ("progress", False)):
            if keyword not in keywords or keywords[keyword].default != default:
                raise TypeError(f"analysis {name!r} needs a keyword-only parameter {keyword}={default!r}")
        self.name = name
        self.function = function
        functools.update_wrapper(self, function)

    def __call__(self, denoiser: Denoiser, *inputs, **options) -> xr.Dataset:
        if not isinstance(denoiser, Denoiser):
            raise InputError(
                f"{self.name} analyses a biasprobe Denoiser (from biasprobe.load or Denoiser.wrap), "
                f"got {type(denoiser).__name__}"
            )
        dataset = self.function(denoiser, *inputs, **options)
        missing = [key for key in PROVENANCE_ATTRS if key not in getattr(dataset, "attrs", {})]
        if not isinstance(dataset, xr.Dataset) or missing or dataset.attrs["analysis"] != self.name:
            raise TypeError(f"analysis {self.name!r} broke its contract: it must return a Dataset with the "
                            f"provenance attrs (missing: {missing}) and analysis={self.name!r}")
        return dataset

    def __repr__(self) -> str:
        return f"<analysis {self.name}>"

    def __reduce__(self):
        return registered, (self.name,)


def analysis(name: str) -> Callable[[Callable[..., xr.Dataset]], Analysis]:
    """Register ``function`` as the analysis ``name`` (see :class:`Analysis` for the contract it must meet)."""

    def register(function: Callable[..., xr.Dataset]) -> Analysis:
        if name in ANALYSES:
            raise TypeError(f"an analysis named {name!r} is already registered")
        ANALYSES[name] = Analysis(name, function)
        return ANALYSES[name]

    return register


def registered(name: str) -> Analysis:
    """The analysis ``name``; the built-in ones register when first used (``biasprobe`` loads its
    public names lazily), so they are loaded here when ``name`` is not yet known."""
    import biasprobe

    if name not in ANALYSES:
        for public in biasprobe.__all__:
            getattr(biasprobe, public)
    if name not in ANALYSES:
        raise InputError(f"no analysis named {name!r}; there are {', '.join(sorted(ANALYSES))}")
    return ANALYSES[name]


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
            "sigma": ("sigma", sigma, SIGMA_ATTRS),
            "t": ("sigma", steps, STEP_ATTRS),
        },
    )


def with_provenance(dataset: xr.Dataset, denoiser: Denoiser, analysis: str, seed: int, **extra) -> xr.Dataset:
    """Attach the provenance attrs (checkpoint path and sha256 when the denoiser came from a file)."""
    path = denoiser.source.path
    dataset.attrs.update(
        provenance(denoiser=denoiser, checkpoint=path, seed=seed, device=str(denoiser.device)),
        analysis=analysis,
        **extra,
    )
    return dataset
