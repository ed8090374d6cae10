"""The ideal memorizer: the exact posterior mean of the training images, analysed like a model.

It is the known answer of the span test (:mod:`biasprobe.analyses.span`): its Jacobian lies in the
span of the training images wherever its posterior weights are spread, so a span diagnostic that
misses it there is broken. :func:`ideal_memorizer_span` is the derived analysis ``ideal-memorizer``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import StoreFigure, analysis, noise_seed
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.reference import posterior_mean_denoiser, posterior_weights
from biasprobe.analyses.span import NEIGHBOURS, SPAN_RANKS, jacobian_memorization
from biasprobe.errors import InputError
from biasprobe.noise import noisy
from biasprobe.store import provenance
from biasprobe.validation import numbers


@analysis(
    "ideal-memorizer", derived=True,
    figures=[StoreFigure("span", "The ideal memorizer (the posterior mean of the training images): energy of each "
                         "eigenvector of its Jacobian in the span of the training images and in the held-out control "
                         "span, at each σ", "biasprobe.figures.jacobian:ideal_memorizer_figure")],
    numbers="biasprobe.analyses.ideal:ideal_memorizer_numbers",
)
def ideal_memorizer_span(
    training_images: torch.Tensor,
    images: torch.Tensor,
    held_out_images: torch.Tensor,
    sigmas,
    *,
    weight_images: torch.Tensor | None = None,
    seed: int = 0,
    neighbours: int = NEIGHBOURS,
    ranks: tuple[int, ...] = SPAN_RANKS,
    centred: bool = False,
) -> xr.Dataset:
    """The known answer of the span test: the ideal memorizer, analysed like a model, at each σ.

    The ideal memorizer is the exact posterior mean of the N training images x_i,
    D(y) = Σ_i w_i(y) x_i (:func:`~biasprobe.analyses.reference.posterior_mean_denoiser`), whose Jacobian
    J = Σ_i w_i (x_i − D)(x_i − D)ᵀ/σ² lies in span{x_i − x̄} and is 0 where the weights are one-hot.
    At each σ of ``sigmas`` (separately, so that y = x + σz draws the z that a one-σ
    :func:`~biasprobe.analyses.jacobian.jacobian` run of a model with the same ``seed`` draws), this runs
    the Jacobian analysis on it at ``images`` (``output="denoised"``, every eigenvector) and
    :func:`~biasprobe.analyses.span.jacobian_memorization` with the training images and the control ``held_out_images``, and
    concatenates the results along ``sigma``. Added: the largest posterior weight
    max_i w_i(y) at each ``weight_images`` image (default ``images``), y = x + σz with the noise of that
    image's index (``max_posterior_weight``, dimension ``weight_image``), and its mean over them
    (``mean_max_posterior_weight``): near 1 the weights are one-hot and J ≈ 0, so there is nothing in the
    span to find.
    """
    sigmas = [float(s) for s in numbers(sigmas, "sigmas", positive=True)]
    if not sigmas:
        raise InputError("{sigmas} needs at least one noise level", parameters=["sigmas"])
    training = torch.as_tensor(training_images).double()
    images = torch.as_tensor(images).double()
    weighed = images if weight_images is None else torch.as_tensor(weight_images).double()
    ideal = posterior_mean_denoiser(training)
    per_sigma, weights = [], np.zeros((len(weighed), len(sigmas)))
    for s, sigma in enumerate(sigmas):
        found = jacobian(ideal, images, [sigma], output="denoised", seed=seed)
        per_sigma.append(jacobian_memorization(found, training, held_out_images, neighbours=neighbours, ranks=ranks,
                                               centred=centred))
        for i in range(len(weighed)):
            y = noisy(weighed[i : i + 1], sigma, noise_seed(seed, i, 0))
            weights[i, s] = float(posterior_weights(y, training, sigma).max())
    result = xr.concat(per_sigma, dim="sigma", data_vars="minimal", coords="minimal", compat="override",
                       combine_attrs="override")
    result["max_posterior_weight"] = (("weight_image", "sigma"), weights, {
        "long_name": "max_i w_i(y): the ideal memorizer's largest posterior weight at y = x + σz"})
    result["mean_max_posterior_weight"] = ("sigma", weights.mean(0), {
        "long_name": "mean over the weighed images of max_i w_i(y)"})
    result = result.assign_coords(weight_image=("weight_image", np.arange(len(weighed)), {
        "long_name": "index of the image the posterior weights are taken at"}))
    result.attrs.update(**provenance(seed=seed), analysis="ideal-memorizer")
    return result


def ideal_memorizer_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of an ideal-memorizer store: its training images and chance, and per σ the mean
    largest posterior weight and the energy of the top 10 eigenvectors in the training and held-out spans."""
    dataset = next(iter(parts.values()))
    chance = float(dataset.train_span_chance.mean())
    images = f"{dataset.attrs.get('n_train')} of {dataset.attrs.get('data')} {dataset.attrs.get('subset')}"
    rows = [("training images", f"{images}; chance dim/d = {chance:.4f}")]
    for sigma in dataset.sigma.values:
        at = dataset.sel(sigma=sigma)
        train, held_out = (float(at[name].sel(top=10).mean()) if 10 in at.top else float("nan")
                           for name in ("train_span_energy", "held_out_span_energy"))
        rows.append((f"σ = {float(sigma):g}: mean max wᵢ; top 10 in training / held-out span",
                     f"{float(at.mean_max_posterior_weight):.3f}; {train:.3f} / {held_out:.3f}"))
    return rows
