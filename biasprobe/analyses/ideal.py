"""The ideal memorizer: the exact posterior mean of the training images, analysed like a model.

It is the known answer of the span test (:mod:`biasprobe.analyses.span`): its Jacobian lies in the
span of the training images wherever its posterior weights are spread, so a span diagnostic that
misses it there is broken. :func:`ideal_memorizer_span` is the derived analysis ``ideal-memorizer``.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import noise_seed
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.reference import posterior_mean_denoiser, posterior_weights
from biasprobe.analyses.span import NEIGHBOURS, SPAN_RANKS, jacobian_memorization
from biasprobe.errors import InputError
from biasprobe.noise import noisy
from biasprobe.validation import numbers


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
    result.attrs.update(analysis="ideal-memorizer", seed=seed)
    return result
