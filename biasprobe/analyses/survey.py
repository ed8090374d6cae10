"""The GAHB survey of one model (science v3, docs/methods/claims.md): the denoiser's Jacobian ∂D/∂y at many
noisy test and training images, noise levels and noise draws, reduced to what the verdict and the claims read.

For every analysed image x_i (the test images, then the first ``training_analysed`` training images, told apart
by the ``split`` coordinate), σ and draw r, with y = x_i + σ z_{i,σ,r}: the Jacobian J = ∂D/∂y
(:func:`~biasprobe.analyses.jacobian.jacobian`, ``output="denoised"``, the draw's own noise seed), its GAHB
metrics and category (:func:`~biasprobe.analyses.harmonic.gahb_summary`: only eigenvectors with λ ≤ 1 judged;
given the training images, with the memorization diagnostics the calibrated verdict reads),
every eigenvalue of S = (J + Jᵀ)/2 (``spectrum``), tr J and ‖J − Jᵀ‖_F / ‖J‖_F, and, given the training images,
‖P_T e_j‖² of the top :data:`SPAN_RANKS` eigenvectors in the centred span of the ``neighbours`` training images
nearest to D(y) (:func:`~biasprobe.analyses.span.jacobian_memorization`, with its held-out control). The
eigenvectors themselves are kept only for the first image and draw (``eigenvector``, what a figure draws): a
survey of a 32×32 model is about 1 MB where its Jacobian stores would be about 800 MB.

The model's call over images (:func:`~biasprobe.analyses.harmonic.model_call`) reads :func:`draw_summaries`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from biasprobe import validation
from biasprobe.analyses.base import StoreFigure, Sweep, analysis, prepare, single, with_provenance
from biasprobe.analyses.harmonic import gahb_summary, model_call
from biasprobe.analyses.jacobian import DENSE_MAX_DIMENSION, jacobian
from biasprobe.analyses.span import jacobian_memorization
from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.progress import stage

SURVEY_RANKS = 128
"""Eigenvectors the summary may judge: K ≤ d/16 = 64 at 32×32 after up to 64 skipped λ > 1."""
SPAN_RANKS = 16
"""Ranks whose training-span energy is kept (the significant ranks of the memorizer span score are at most 10)."""
SPLITS = ("test", "train")
VERDICT_SIGMAS = (0.05, 0.2, 1.0)
"""The σ ([0, 1] scale) the v3 GAHB call reads (docs/methods/claims.md, "What is measured")."""
SUMMARY_VARIABLES = ("category", "reason", "top", "count_above_one", "harmonicity", "participation", "confinement",
                     "confinement_excess", "spectral_spread", "count_above_half")
"""The per-(image, σ) outputs of :func:`~biasprobe.analyses.harmonic.gahb_summary` a survey keeps."""
SPAN_VARIABLES = ("train_span_fraction", "held_out_span_fraction", "train_span_chance", "held_out_span_chance",
                  "denoiser_eigenvalue", "nearest_train_cosine")
"""The outputs of :func:`~biasprobe.analyses.span.jacobian_memorization` a survey keeps."""


def draw_seed(seed: int, draw: int) -> int:
    """The seed of noise draw ``draw`` of a survey seeded with ``seed`` (independent of every other pair)."""
    return int(np.random.SeedSequence([seed, draw, 0x5A]).generate_state(1)[0] % (2**31))


@analysis(
    "gahb-survey", public="gahb_survey", sweep=Sweep(needs_images=True),
    figures=[StoreFigure("survey", "GAHB categories per σ over images and noise draws, spectra of ∂D/∂y and the first "
                         "image's top eigenvectors (science v3)", "biasprobe.figures.survey:survey_figure", single)],
    numbers="biasprobe.analyses.survey:survey_numbers",
)
def gahb_survey(
    denoiser: Denoiser,
    images: torch.Tensor,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    *,
    draws: int = 2,
    training_images: torch.Tensor | None = None,
    training_analysed: int = 0,
    held_out_images: torch.Tensor | None = None,
    neighbours: int = 10,
    precision: str = "float32",
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    """The GAHB survey of ``denoiser`` (module docstring): ∂D/∂y at every analysed image × σ × draw.

    Parameters
    ----------
    images: clean test images (B, C, H, W) in [0, 1].
    sigmas, timesteps: the noise levels ([0, 1] scale, or diffusion steps).
    draws: noise draws per (image, σ), each seeded by :func:`draw_seed`.
    training_images: the model's training images: the first ``training_analysed`` are analysed too
        (``split`` = ``train``), and with ``held_out_images`` (the control) every analysed image gets the span
        energies of :data:`SPAN_VARIABLES`.
    neighbours: training (and held-out) images whose centred span is tested.
    precision: of the network passes (``float32``, ``tf32``, ``bf16``).

    Returns
    -------
    Dataset over (image, sigma, draw): the :data:`SUMMARY_VARIABLES`, ``effective_dimension`` (tr J),
    ``asymmetry``, ``largest_eigenvalue`` λ₀; over (image, sigma, draw, index): ``spectrum``; over
    (image, sigma, draw, denoiser_rank) the span energies; ``clean`` (image, …) with the ``split`` coordinate;
    ``eigenvector`` (sigma, rank, channel, y, x) of the first image and draw.
    """
    draws = validation.count(draws, "draws")
    training_analysed = validation.count(training_analysed, "training_analysed", minimum=0)
    if training_analysed and training_images is None:
        raise InputError("training_analysed needs training_images", parameters=["training_analysed"])
    if held_out_images is not None and training_images is None:
        raise InputError("held_out_images (the control) need training_images", parameters=["held_out_images"])
    tested, _, _ = prepare(denoiser, images, sigmas, timesteps)
    analysed = tested
    if training_analysed:
        trained, _, _ = prepare(denoiser, training_images[:training_analysed], sigmas, timesteps)
        analysed = torch.cat([tested, trained])
    d = analysed[0].numel()
    if d > DENSE_MAX_DIMENSION:
        raise InputError(f"a survey decomposes every Jacobian densely (d ≤ {DENSE_MAX_DIMENSION}); these images have "
                         f"d = {d}: use jacobian() with a matrix-free method")
    split = np.array([SPLITS[0]] * len(tested) + [SPLITS[1]] * (len(analysed) - len(tested)))
    per_draw = []
    for draw in range(draws):
        with stage(f"draw {draw + 1}/{draws}"):  # the progress lines say which draw
            store = jacobian(denoiser, analysed, sigmas, timesteps, top_k=min(SURVEY_RANKS, d), method="dense",
                             output="denoised", precision=precision, seed=draw_seed(seed, draw), progress=progress,
                             training_images=training_images if held_out_images is not None else None,
                             held_out_images=held_out_images, neighbours=neighbours, singular=False)
        per_draw.append(_reduce(store, training_images, held_out_images, neighbours, keep_vectors=draw == 0))
    shared = per_draw[0][["eigenvector", "clean"]]  # the first draw's eigenvectors; the clean images of all
    survey = xr.concat([part.drop_vars(["eigenvector", "clean"], errors="ignore") for part in per_draw], dim="draw",
                       data_vars="all", coords="minimal", compat="override", join="override")
    survey = survey.merge(shared).assign_coords(
        draw=("draw", np.arange(draws), {"long_name": "noise draw"}),
        split=("image", split, {"long_name": "which images: test, or the model's own training images"}))
    return with_provenance(survey, denoiser, "gahb-survey", seed, output="denoised", method="dense",
                           precision=precision, draws=draws, neighbours=neighbours, dimension=d,
                           training_analysed=training_analysed)


def _reduce(store: xr.Dataset, training_images, held_out_images, neighbours: int, keep_vectors: bool) -> xr.Dataset:
    """One draw's jacobian store reduced to the survey's variables."""
    summary = gahb_summary(store)
    part = xr.Dataset({
        **{name: summary[name] for name in SUMMARY_VARIABLES},
        "spectrum": store.spectrum,
        "largest_eigenvalue": store.spectrum.isel(index=0, drop=True).assign_attrs(
            long_name="largest eigenvalue λ₀ of S = (J + Jᵀ)/2"),
        "effective_dimension": store.effective_dimension,
        "asymmetry": store.asymmetry,
        "clean": store.clean,
    })
    if keep_vectors:
        part["eigenvector"] = store.eigenvector.isel(image=0, rank=slice(0, 64), drop=True).assign_attrs(
            long_name="unit eigenvector e_k of S at the first image and draw")
    if training_images is not None and held_out_images is not None:
        found = jacobian_memorization(store, training_images, held_out_images, neighbours=neighbours, centred=True)
        found = found[list(SPAN_VARIABLES)].isel(denoiser_rank=slice(0, SPAN_RANKS))
        part = part.merge(found, combine_attrs="override")
        part.attrs.update(span_chance=found.attrs.get("chance"), span_centred=1)
    return part


def draw_summaries(survey: xr.Dataset, sigmas: Sequence[float] | None = None, split: str = "test") -> list[xr.Dataset]:
    """The survey as one summary per draw (what :func:`~biasprobe.analyses.harmonic.model_call` takes), over the
    images of ``split`` and the σ of ``sigmas`` (all when None; each must be in the survey)."""
    chosen = survey.isel(image=np.flatnonzero(survey.split.values == split))
    if sigmas is not None:
        missing = [s for s in sigmas if not np.isclose(chosen.sigma.values, s).any()]
        if missing:
            raise InputError(f"the survey has no σ = {missing[0]:g} (it has {', '.join(f'{s:g}' for s in chosen.sigma.values)})")
        chosen = chosen.isel(sigma=[int(np.argmin(np.abs(chosen.sigma.values - s))) for s in sigmas])
    return [chosen.isel(draw=draw) for draw in range(chosen.sizes["draw"])]


def survey_numbers(parts) -> list[tuple[str, str]]:
    """A report's key numbers of survey stores: per store the GAHB call over its test images (at
    :data:`VERDICT_SIGMAS` where the survey has them all, else at every σ it has)
    (:func:`~biasprobe.analyses.harmonic.model_call`: the share of harmonic images and its 95 % bootstrap
    interval), and per σ the median #λ > 1 (max), the mean asymmetry ‖J − Jᵀ‖_F/‖J‖_F and the median λ₀."""
    rows = []
    for name, survey in parts.items():
        tested = survey.isel(image=np.flatnonzero(survey.split.values == SPLITS[0]))
        verdict = [s for s in VERDICT_SIGMAS if np.isclose(survey.sigma.values, s).any()]
        call, share, (low, high) = model_call(draw_summaries(
            survey, verdict if len(verdict) == len(VERDICT_SIGMAS) else None))
        rows.append((f"{name}: GAHB call ({tested.sizes['image']} test images × {survey.sizes['draw']} draws)",
                     f"{call} (harmonic share {share:.2f}, 95 % interval {low:.2f}-{high:.2f})"))
        for j, sigma in enumerate(survey.sigma.values):
            at = tested.isel(sigma=j)
            rows.append((f"{name}, σ = {sigma:.3g}",
                         f"#λ > 1 median {float(at.count_above_one.median()):.0f} (max {int(at.count_above_one.max())}); "
                         f"asymmetry {float(at.asymmetry.mean()):.2f}; λ₀ median {float(at.largest_eigenvalue.median()):.3g}"))
    return rows


__all__ = ["SPAN_RANKS", "SURVEY_RANKS", "VERDICT_SIGMAS", "draw_seed", "draw_summaries", "gahb_survey", "survey_numbers"]
