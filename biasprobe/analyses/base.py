"""The contract every analysis follows, as code (:class:`Analysis`), and the steps they share.

An analysis is one :class:`Analysis` object: a function ``analysis(denoiser, *inputs, seed=0,
progress=False, **options) -> xarray.Dataset`` with what the rest of biasprobe reads of it (how it
sweeps, its report figures, its key numbers, its command's tables, its public name), registered once
with the :func:`analysis` decorator in the module that defines it. The decorator checks the contract
when the function is defined (a first parameter ``denoiser``; keyword-only ``seed`` (default 0) and
``progress`` (default False)) and on every call (a :class:`~biasprobe.denoiser.Denoiser` in, a
Dataset out whose attrs name the analysis and carry the provenance of
:func:`biasprobe.store.provenance`). :func:`registry` finds every analysis, biasprobe's own and
those of other packages (entry points), as :func:`biasprobe.formats.registry` finds formats; the
sweep runner, ``biasprobe report``, the CLI and ``biasprobe.__init__`` all read it. Analyses over noisy images (jacobian, locality) also share
the layout built by :func:`base_dataset`: an ``image`` dimension (the clean images, stored as the
variable ``clean``), a ``sigma`` dimension with coordinates ``sigma`` ([0, 1] image scale) and
``t`` (the diffusion step, NaN without a schedule). Noise draws are seeded per (image, σ) pair by
:func:`noise_seed`, so one image gives the same noisy observation whatever else is in the run.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

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

ENTRY_POINT_GROUP = "biasprobe.analyses"
"""The entry-point group under which other packages add analyses (a module that registers its own with
:func:`analysis`, or an :class:`Analysis`)."""

ANALYSES: dict[str, Analysis] = {}
"""Every analysis registered so far, by name (:func:`registry` loads them all)."""

Reference = Callable | str
"""A callable, or ``"module:attribute"`` naming one in a layer above the analyses (figures, say), which is
imported when it is first used, as entry points are: registering an analysis imports nothing above it."""


def resolve(reference: Reference) -> Callable:
    """The callable a :data:`Reference` names."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return functools.reduce(getattr, attribute.split("."), importlib.import_module(module))


def single(dataset: xr.Dataset) -> bool:
    """Whether a store holds one checkpoint (no ``checkpoint`` dimension)."""
    return "checkpoint" not in dataset.dims


def swept(dataset: xr.Dataset) -> bool:
    """Whether a store holds several checkpoints (a sweep's ``checkpoint`` dimension)."""
    return "checkpoint" in dataset.dims


def always(dataset) -> bool:
    return True


@dataclass(frozen=True)
class StoreFigure:
    """One figure drawn from a store: its short name (part of the file name), caption and drawing.

    ``draw`` (a :data:`Reference`) takes the store's Dataset, or with ``per_checkpoint`` its Datasets by
    checkpoint name (one entry per checkpoint of a sweep store), and returns a Figure; ``applies`` says
    whether the store has what the figure needs (the figure is skipped when it does not). As an
    analysis's ``together`` figure, ``draw`` and ``applies`` take {label: Dataset} of several stores.
    ``caption`` is text, or a function of the store's Dataset giving it (a caption naming only the panels
    drawn).
    """

    name: str
    caption: str | Callable[[xr.Dataset], str]
    draw: Reference
    applies: Callable[[xr.Dataset], bool] = always
    per_checkpoint: bool = False

    def caption_of(self, dataset) -> str:
        """The caption under the figure drawn from ``dataset``."""
        return self.caption(dataset) if callable(self.caption) else self.caption


@dataclass(frozen=True)
class Sweep:
    """How an analysis runs in a sweep (:func:`biasprobe.sweeps.sweep`): whether every checkpoint gets the
    sweep's clean images, and ``run(denoiser, images, *, seed, **options) -> Dataset`` (a
    :data:`Reference`; default: the analysis itself, called with the images when it takes them)."""

    needs_images: bool = True
    run: Reference | None = None


class Analysis:
    """One analysis, as code: what it computes, how it sweeps, its figures, its numbers and its name in the API.

    - ``function``: ``function(denoiser, *inputs, seed=0, progress=False, **options) -> xarray.Dataset``,
      checked when defined (first parameter the denoiser; keyword-only ``seed`` and ``progress``) and on
      every call (a :class:`~biasprobe.denoiser.Denoiser` in; a Dataset out with the provenance attrs of
      :data:`PROVENANCE_ATTRS` and ``analysis`` = ``name``). A ``derived`` analysis computes from other
      stores or images rather than a denoiser: only its result is checked.
    - ``sweep``: how it runs over many checkpoints (:class:`Sweep`; None: it does not sweep).
    - ``figures``: the :class:`StoreFigure` of each of its stores that ``biasprobe report`` draws;
      ``together``: one figure of several of its stores.
    - ``numbers(parts) -> [(quantity, value)]``: its key numbers on a report page; ``summary(parts) ->``
      :data:`biasprobe.summary.Summary`: the tables (records) its command prints. Both take
      {checkpoint name: Dataset}, the Datasets the analysis returned (:data:`Reference`).
    - ``public``: its name in ``biasprobe`` (``bp.jacobian``), or None.

    Calling it calls the function and checks the result; its name, signature and docstring are the
    function's. Register one with the :func:`analysis` decorator, in the module that defines it.
    """

    def __init__(self, name: str, function: Callable[..., xr.Dataset], *, derived: bool = False,
                 sweep: Sweep | None = None, figures: Sequence[StoreFigure] = (), together: StoreFigure | None = None,
                 numbers: Reference | None = None, summary: Reference | None = None,
                 public: str | None = None) -> None:
        if not derived:
            parameters = list(inspect.signature(function).parameters.values())
            if not parameters or parameters[0].name not in ("denoiser", "first"):
                raise TypeError(f"analysis {name!r}: the first parameter must be the denoiser")
            keywords = {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
            for keyword, default in (("seed", 0), ("progress", False)):
                if keyword not in keywords or keywords[keyword].default != default:
                    raise TypeError(f"analysis {name!r} needs a keyword-only parameter {keyword}={default!r}")
        self.name = name
        self.function = function
        self.derived = derived
        self.sweep = sweep
        self.figures = tuple(figures)
        self.together = together
        self.numbers = numbers
        self.summary = summary
        self.public = public
        functools.update_wrapper(self, function)

    def __call__(self, *inputs, **options) -> xr.Dataset:
        denoiser = inputs[0] if inputs else options.get("denoiser", options.get("first"))
        if not self.derived and not isinstance(denoiser, Denoiser):
            raise InputError(
                f"{self.name} analyses a biasprobe Denoiser (from biasprobe.load or Denoiser.wrap), "
                f"got {type(denoiser).__name__}"
            )
        dataset = self.function(*inputs, **options)
        missing = [key for key in PROVENANCE_ATTRS if key not in getattr(dataset, "attrs", {})]
        if not isinstance(dataset, xr.Dataset) or missing or dataset.attrs["analysis"] != self.name:
            raise TypeError(f"analysis {self.name!r} broke its contract: it must return a Dataset with the "
                            f"provenance attrs (missing: {missing}) and analysis={self.name!r}")
        return dataset

    def key_numbers(self, parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
        """Its key numbers of the stores ``parts`` ({checkpoint name: Dataset}): [] when it has none."""
        return resolve(self.numbers)(parts) if self.numbers is not None else []

    def summarize(self, parts: Mapping[str, xr.Dataset]) -> list:
        """Its command's tables of ``parts`` (:data:`biasprobe.summary.Summary`): [] when it has none."""
        return resolve(self.summary)(parts) if self.summary is not None else []

    def run_in_sweep(self, denoiser: Denoiser, images, *, seed: int = 0, **options) -> xr.Dataset:
        """One checkpoint's result in a sweep (see :class:`Sweep`)."""
        if self.sweep is None:
            raise InputError(f"cannot sweep {self.name!r}; sweepable analyses: {', '.join(sweepable())}")
        if self.sweep.run is not None:
            return resolve(self.sweep.run)(denoiser, images, seed=seed, **options)
        inputs = (images,) if self.sweep.needs_images else ()
        return self(denoiser, *inputs, seed=seed, **options)

    def __repr__(self) -> str:
        return f"<analysis {self.name}>"

    def __reduce__(self):
        return registered, (self.name,)


def analysis(name: str, **parts) -> Callable[[Callable[..., xr.Dataset]], Analysis]:
    """Register ``function`` as the analysis ``name``, with the ``parts`` of :class:`Analysis` (``sweep``,
    ``figures``, ``together``, ``numbers``, ``summary``, ``public``, ``derived``)."""

    def register(function: Callable[..., xr.Dataset]) -> Analysis:
        if name in ANALYSES:
            raise TypeError(f"an analysis named {name!r} is already registered")
        ANALYSES[name] = Analysis(name, function, **parts)
        return ANALYSES[name]

    return register


@functools.cache
def registry() -> dict[str, Analysis]:
    """Every analysis by name: those of the modules of :mod:`biasprobe.analyses` (each registers its own)
    and those other packages add under the :data:`ENTRY_POINT_GROUP` entry points. A plug-in that fails
    to load is warned about and skipped."""
    package = importlib.import_module(__name__.rpartition(".")[0])
    for module_info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module_info.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            if isinstance(loaded, Analysis) and ANALYSES.get(loaded.name, loaded) is not loaded:
                raise TypeError(f"an analysis named {loaded.name!r} is already registered")
            if isinstance(loaded, Analysis):
                ANALYSES[loaded.name] = loaded
        except Exception as error:  # noqa: BLE001 - a third party's plug-in may fail in any way
            warnings.warn(f"the analysis plug-in {entry.name} ({entry.value}) could not be loaded and is skipped: "
                          f"{type(error).__name__}: {error}", RuntimeWarning, stacklevel=2)
    return dict(ANALYSES)


def registered(name: str) -> Analysis:
    """The analysis ``name`` (see :func:`registry`)."""
    analyses = ANALYSES if name in ANALYSES else registry()
    if name not in analyses:
        raise InputError(f"no analysis named {name!r}; there are {', '.join(sorted(analyses))}")
    return analyses[name]


def sweepable() -> list[str]:
    """The names of the analyses that sweep."""
    return [name for name, found in registry().items() if found.sweep is not None]


def public() -> dict[str, Analysis]:
    """The analyses exported by ``biasprobe``, by their public name."""
    return {found.public: found for found in registry().values() if found.public}


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
