"""How the paper recipe runs an analysis on a zoo model: the inputs it gives each registered analysis
(:data:`RECIPE_INPUTS`) and :func:`compute`, which loads the model and its images and calls it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence

import xarray as xr

from biasprobe.analyses.base import registered
from biasprobe.errors import InputError
from biasprobe.reports.paper.settings import DERIVED, DERIVED_OPTIONS, SURVEY, Settings
from biasprobe.reports.zoo import IDEAL, ZooModel


def _gap_inputs(settings, denoiser, train, test, held_out, source):
    """v2: min(k, N) images of each split; v3 (the paper's): min(k, N) training images against k test images."""
    count = min(settings.k, len(train))
    levels = {"timesteps": list(settings.gap_timesteps)} if denoiser.schedule is not None else {}
    return (denoiser, train[:count], test[: settings.k if settings.version >= 3 else count]), {"seed": 0, **levels}


def _jacobian_inputs(settings, denoiser, train, test, held_out, source):
    """v2: the raw output's Jacobian where there is one; v3: ∂D/∂y for every family."""
    raw = settings.version < 3 and denoiser.sigma_to_t(0.5) is not None  # blind models have no raw output
    return (denoiser, test[:1], [settings.sigma]), {"output": "raw" if raw else "denoised", "seed": 0}


def trained_sigmas(denoiser, sigmas) -> list[float]:
    """The σ of ``sigmas`` within the range ``denoiser`` was trained at: every σ for a scheduled model (trained at
    every step), σ ≤ its training record's ``sigma_max`` for a blind one (none recorded: every σ)."""
    if denoiser.schedule is not None:
        return list(sigmas)
    largest = denoiser.source.training.get("sigma_max")
    return [s for s in sigmas if largest is None or s <= float(largest) + 1e-12]


def require_weights(model: ZooModel, also: Sequence[str] = ()) -> None:
    """Raise :class:`~biasprobe.errors.InputError` if ``model``'s weights are not in its zoo folder (``also``: the
    names of other models whose weights are missing too, named in the message). Zoo v1 weights that zoo v2 replaced
    left the working tree (docs/zoo.md, "Weights that left the tree"); their manifest entries and records stay, so
    the committed stores computed from them are still found by sha256, but a store that must be computed anew
    needs the weights back from the repository's history."""
    if not model.path.exists():
        others = f" (and {len(also)} more: {', '.join(also[:4])}{', …' if len(also) > 4 else ''})" if also else ""
        raise InputError(f"{model.path} ({model.name}){others} is not in the working tree and its store must be "
                         f"computed: restore it from the history (git log --diff-filter=D -- {model.path}, then git "
                         f"checkout COMMIT~1 -- {model.path}), or pass {{zoo}} with the zoo that holds it",
                         parameters=["zoo"])


def trained_at(model: ZooModel, sigma: float) -> bool:
    """Whether ``model`` was trained at noise level ``sigma`` (:func:`trained_sigmas` of its checkpoint)."""
    from biasprobe.formats import load

    require_weights(model)
    return bool(trained_sigmas(load(model.path, device="cpu"), [sigma]))


def _survey_inputs(settings, denoiser, train, test, held_out, source):
    sigmas = trained_sigmas(denoiser, settings.survey_sigmas)
    if not sigmas:
        raise InputError(f"no σ of {settings.survey_sigmas} lies within the range {denoiser.source.path} was trained "
                         "at: leave this model out of the survey")
    return ((denoiser, test[: settings.survey_images], sigmas),
            {"draws": settings.survey_draws, "training_images": train, "training_analysed": min(settings.survey_images,
             len(train)), "held_out_images": held_out, "neighbours": DERIVED_OPTIONS["training-span"]["neighbours"],
             "seed": 0})


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one CPU thread. The locality stores are not committed (their attention maps are large):
    a fresh clone recomputes them, and their sums must not depend on the machine's thread count for
    Fig. 4 to be drawn byte for byte as committed."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


MEMORIZER_WEIGHT_IMAGES = 50
"""Test images over which the memorizer σ's rule averages the ideal memorizer's largest posterior weight (fixed with
the rule, docs/reports.md, at v2's k = 50; not the gap's K, which science v3 raised to 300)."""

RECIPE_INPUTS: dict[str, Callable] = {
    "gap": _gap_inputs,
    "jacobian": _jacobian_inputs,
    "locality": lambda settings, denoiser, train, test, held_out, source: (
        (denoiser, test[: settings.locality_images], [settings.sigma]), {"save_maps": True, "seed": 0}),
    SURVEY: _survey_inputs,
    "memorization": lambda settings, denoiser, train, test, held_out, source: (
        (denoiser, settings.samples, train), {"steps": settings.sampler_steps, "seed": 0}),
    "training-span": lambda settings, denoiser, train, test, held_out, source: (
        (source, train, held_out), DERIVED_OPTIONS["training-span"]),
    IDEAL: lambda settings, denoiser, train, test, held_out, source: (
        (train, test[:1], held_out, sorted({settings.sigma, *settings.memorizer_sigmas})),
        {"weight_images": test[:MEMORIZER_WEIGHT_IMAGES], "seed": 0, **DERIVED_OPTIONS["training-span"]}),
}
"""The recipe's inputs of each registered analysis it runs: (settings, denoiser, training images, test images,
held-out images, source store) -> (positional inputs, keywords) of :func:`~biasprobe.analyses.base.registered`
(kind)."""


def compute(kind: str, model: ZooModel, settings: Settings, device: str | None = None,
            source: xr.Dataset | None = None, progress: bool = False) -> xr.Dataset:
    """Run analysis ``kind`` (gap, jacobian, locality, memorization, gahb-survey) on ``model`` with ``settings``.

    ``training-span`` is derived from the model's jacobian store (``source``; computed when None):
    :func:`~biasprobe.analyses.span.jacobian_memorization` with centred spans of its training
    images and of the ``settings.held_out`` first test images (the control). :data:`IDEAL` reads the
    model's training images only (the checkpoint gives the image shape):
    :func:`~biasprobe.analyses.ideal.ideal_memorizer_span` at ``settings.sigma`` and every σ of
    ``settings.memorizer_sigmas``, on the jacobian's test image, with the weights at the first
    :data:`MEMORIZER_WEIGHT_IMAGES` test images. ``progress`` shows the analysis's own progress (its Jacobians,
    steps or images) below the caller's; it changes nothing in the store."""
    from biasprobe import data
    from biasprobe.formats import load

    if kind not in RECIPE_INPUTS:
        raise InputError(f"the paper recipe has no analysis {kind!r}")
    require_weights(model)
    denoiser = load(model.path, device=device)
    channels, size, _ = denoiser.image_shape
    options = {"size": size, "channels": channels}
    train = data.load(model.data, "train", model.n_train, subset=model.subset, seed=model.seed, **options)
    count = max(settings.k, settings.survey_images) if kind == SURVEY else settings.k
    test = data.load(model.data, "test", count, subset="all", **options)
    if kind in DERIVED:
        source = source if source is not None else compute(DERIVED[kind], model, settings, device, progress=progress)
    held_out = data.load(model.data, "test", settings.held_out, subset="all", **options) \
        if kind in ("training-span", IDEAL, SURVEY) else None
    inputs, keywords = RECIPE_INPUTS[kind](settings, denoiser, train, test, held_out, source)
    analysis = registered(kind)
    if progress and not analysis.derived:  # every analysis of a denoiser takes progress (the Analysis contract)
        keywords = {**keywords, "progress": True}
    with _one_thread() if kind == "locality" else contextlib.nullcontext():
        result = analysis(*inputs, **keywords)
    if kind == "training-span":
        result.attrs.update(source_recipe_key=source.attrs.get("recipe_key", ""))
    elif kind == IDEAL:
        result.attrs.update(data=model.data, subset=model.subset, training_seed=model.seed,
                            grid=list(settings.memorizer_sigmas))
    if kind != IDEAL and result.attrs.get("checkpoint_sha256") != model.sha256:  # the ideal reads no checkpoint
        raise InputError(f"{model.path} does not match the sha256 its zoo manifest gives for {model.name}; "
                         "retrain or fix the manifest")
    result.attrs.update(zoo_model=model.name, n_train=model.n_train, recipe_key=settings.key(kind, model),
                        recipe_settings=json.dumps(settings.used_by(kind)))
    return result
