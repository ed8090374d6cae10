"""The Jacobian analysis: eigen- and singular values of J = ∂D(y)/∂y at noisy images y = x + σz.

At y = x + σz the Jacobian of the [0, 1] denoiser D (``output="denoised"``), or of the network's
raw output r in its own parameterization with respect to the native noisy image y_n
(``output="raw"``: J_raw = ∂r/∂y_n, so D's Jacobian is I − J_raw for residual networks and
I − σ_n J_raw for ε-prediction), is analysed through

- the eigenpairs (λ_k, e_k) of the symmetrised operator S = (J + Jᵀ)/2, λ_0 ≥ λ_1 ≥ …;
- the singular triplets (s_k, u_k, v_k) of J, with cos(u_k, v_k) (1 for a symmetric PSD J);
- the asymmetry ‖J − Jᵀ‖_F / ‖J‖_F and the effective dimensionality tr(J).

The pieces live apart: the products with J in :mod:`biasprobe.autodiff` (:class:`JacobianOperator`),
the ``dense``, ``lanczos`` and ``randomized`` solvers in :mod:`biasprobe.eigensolvers` (see
``docs/methods/jacobian.md``); this module runs them per (image, σ), builds the Dataset and adds
what the verdict reads (:func:`gahb_context`: the support Ω, the dimension trend, the span
diagnostics). The verdict itself is :mod:`biasprobe.analyses.harmonic`'s, which reads the stores
this writes. Its names from before the split are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from biasprobe import validation
from biasprobe.analyses.base import (
    StoreFigure,
    Sweep,
    analysis,
    base_dataset,
    noise_seed,
    prepare,
    single,
    swept,
    with_provenance,
)
from biasprobe.analyses.span import NEIGHBOURS, jacobian_memorization
from biasprobe.analyses.spectra import denoiser_trace, dimension_trend
from biasprobe.analyses.support import with_support
from biasprobe.autodiff import (
    OUTPUTS,
    PRECISIONS,
    JacobianOperator,
    check_precision,
    dense_jacobians,
    images_per_batch,
    jacobian_matrix,
    math_attention,
    output_function,
)
from biasprobe.denoiser import Denoiser
from biasprobe.eigensolvers import (
    DENSE_MAX_DIMENSION,
    METHODS,
    ConvergenceWarning,
    Decomposition,
    MatrixOperator,
    choose_method,
    decompose,
    expected_products,
    krylov_limit,
    warn_unconverged,
)
from biasprobe.errors import InputError
from biasprobe.noise import noisy

if TYPE_CHECKING:
    import xarray as xr


@analysis(
    "jacobian", public="jacobian", sweep=Sweep(needs_images=True),
    figures=[
        StoreFigure("jacobian", "Jacobian eigenvectors at the first image and σ, spectrum and GAHB metrics "
                    "(An et al. Figs. 1 and 3)", "biasprobe.figures.jacobian:jacobian_figure", single),
        StoreFigure("spectrum", "Jacobian eigenvalue spectra, one curve per checkpoint",
                    "biasprobe.figures.jacobian:spectrum_figure", swept, per_checkpoint=True),
    ],
    together=StoreFigure("spectrum", "Jacobian eigenvalue spectra of every store at its first σ (An et al. Fig. 3)",
                         "biasprobe.figures.jacobian:spectrum_figure"),
    numbers="biasprobe.analyses.gahb_tables:jacobian_numbers",
    summary="biasprobe.analyses.gahb_tables:jacobian_summary",
)
def jacobian(
    denoiser: Denoiser,
    images: torch.Tensor,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    *,
    top_k: int | None = None,
    method: str = "auto",
    output: str = "denoised",
    precision: str = "float32",
    tolerance: float = 1e-3,
    memory_budget: float | None = None,
    seed: int = 0,
    progress: bool = False,
    support: str = "object",
    training_images: torch.Tensor | None = None,
    held_out_images: torch.Tensor | None = None,
    neighbours: int | None = None,
    singular: bool = True,
) -> xr.Dataset:
    """Eigen- and singular analysis of the denoiser's Jacobian at y = x + σz, for every image and σ.

    Parameters
    ----------
    denoiser: any :class:`~biasprobe.denoiser.Denoiser`.
    images: clean images (B, C, H, W) or (C, H, W) in [0, 1].
    sigmas, timesteps: the noise levels, as σ on the [0, 1] scale or as diffusion steps t.
    top_k: eigenpairs to compute (matrix-free methods) or eigenvectors to store (dense); default
        every one for d ≤ 1024, else 64.
    method: ``dense``, ``lanczos``, ``randomized`` or ``auto`` (see :func:`choose_method`).
    output: ``denoised`` (J of D) or ``raw`` (J of the network output in native units).
    precision: ``float32``, ``tf32`` (CUDA) or ``bf16`` for the network passes; the linear
        algebra is always float64.
    tolerance: residual ‖Se − λe‖/|λ| at which the matrix-free methods stop. The randomized
        method stops at :func:`krylov_limit` basis vectors even when residuals are larger; every
        (image, σ) whose worst top-k residual misses the tolerance raises a
        :class:`~biasprobe.eigensolvers.ConvergenceWarning` naming it and the residual (stored in
        ``eigen_residual``).
    memory_budget: bytes for one chunk of batched products (default: see :class:`JacobianOperator`).
    seed: seeds the noise (per image and σ, through :func:`~biasprobe.analyses.base.noise_seed`)
        and the random start blocks.
    support, training_images, held_out_images, neighbours: what the GAHB verdict needs besides the
        eigenpairs (:func:`gahb_context`): the support Ω of each clean
        image (``object``, ``edges`` or ``frame``) and, given the training images and held-out
        images (the control), the memorization diagnostics.
    singular: compute the singular triplets of J too (an SVD per dense Jacobian; svds for ``lanczos``);
        False leaves out the ``singular_*`` variables, for callers that read the eigenpairs of S alone
        (the GAHB survey).

    Returns
    -------
    Dataset with, per (image, sigma): ``noisy``, ``denoised``, ``effective_dimension`` (tr J),
    ``asymmetry``; per rank: ``eigenvalue``, ``eigenvector`` (image, sigma, rank, channel, y, x),
    ``eigen_residual``, ``jacobian_residual``, ``singular_value``, ``singular_cosine``,
    ``singular_residual`` (with ``singular``); per index (every computed value): ``spectrum`` and
    ``singular_spectrum`` (with ``singular``); ``support`` (image, y, x) and, with training images, the memorization
    variables of :func:`~biasprobe.analyses.span.jacobian_memorization`.
    """
    from biasprobe.progress import describe, task

    if output not in OUTPUTS:
        raise InputError(f"output must be one of {OUTPUTS}, got {output!r}")
    check_precision(precision)  # before any progress line: a bad value is the only line shown
    images, sigma, steps = prepare(denoiser, images, sigmas, timesteps)
    d = images[0].numel()
    if top_k is not None:
        top_k = validation.count(top_k, "top_k", maximum=d)
    tolerance = validation.number(tolerance, "tolerance", positive=True)
    resolved = choose_method(method, d, top_k)
    count = len(images) * len(sigma)
    results: dict[tuple[int, int], Decomposition] = {}
    noisy_images = np.zeros((len(images), len(sigma), *images.shape[1:]), dtype=np.float32)
    denoised = np.zeros_like(noisy_images)
    vmapped = True
    expected = expected_products(resolved, d, top_k)

    def pair_noisy(i: int, j: int) -> torch.Tensor:
        return noisy(images[i : i + 1], float(sigma[j]), noise_seed(seed, i, j))

    # dense: the images of one σ in batches (dense_jacobians: one backward per block of rows for the batch)
    batch = 1 if resolved != "dense" else min(len(images), images_per_batch(
        denoiser, pair_noisy(0, 0), float(sigma[0]), output=output, precision=precision, memory_budget=memory_budget))
    with task("Jacobians", count, unit="images × σ", enabled=progress) as advance_pairs:
        for j in range(len(sigma)):
            for first in range(0, len(images), batch):
                indices = range(first, min(first + batch, len(images)))
                ys = torch.cat([pair_noisy(i, j) for i in indices])
                where = (f"image {first + 1}" if len(indices) == 1 else f"images {first + 1}-{indices[-1] + 1}") + \
                    f"/{len(images)}, σ = {float(sigma[j]):g}"
                with task(where, expected * len(indices), unit="products", enabled=progress) as advance:
                    if resolved == "dense":
                        matrices, used_vmap = dense_jacobians(
                            denoiser, ys, float(sigma[j]), output=output, precision=precision,
                            memory_budget=memory_budget, on_products=advance)
                        for i, matrix in zip(indices, matrices):
                            results[i, j] = decompose(MatrixOperator(matrix), resolved, top_k, singular=singular)
                    else:
                        (i,) = indices
                        operator = JacobianOperator(denoiser, ys, float(sigma[j]), output=output,
                                                    precision=precision, memory_budget=memory_budget)
                        operator.on_products = advance
                        results[i, j] = decompose(operator, resolved, top_k, tolerance=tolerance,
                                                  seed=noise_seed(seed, i, j) + 1, singular=singular)
                        used_vmap = all(operator.vmap.values())
                vmapped &= used_vmap
                for i, y in zip(indices, ys):
                    warn_unconverged(results[i, j], resolved, tolerance, describe(where))
                    noisy_images[i, j] = y.cpu().numpy()
                    with torch.no_grad():
                        denoised[i, j] = denoiser.denoise(y[None], float(sigma[j]))[0].float().cpu().numpy()
                advance_pairs(len(indices))

    def stack(name: str) -> np.ndarray:
        return np.stack([np.stack([getattr(results[i, j], name) for j in range(len(sigma))])
                         for i in range(len(images))])

    ranks = results[0, 0].eigenvectors.shape[0]
    count = len(results[0, 0].spectrum)
    field = ("image", "sigma", "channel", "y", "x")
    per_rank = ("image", "sigma", "rank")
    per_index = ("image", "sigma", "index")
    dataset = base_dataset(images, sigma, steps)
    dataset = dataset.assign(
        noisy=(field, noisy_images, {"long_name": "noisy image y = x + σz", "units": "[0, 1]"}),
        denoised=(field, denoised, {"long_name": "denoised image D(y)", "units": "[0, 1]"}),
        eigenvalue=(per_rank, stack("spectrum")[..., :ranks], {"long_name": "eigenvalue λ of S = (J + Jᵀ)/2"}),
        eigenvector=(
            ("image", "sigma", "rank", "channel", "y", "x"),
            stack("eigenvectors").reshape(len(images), len(sigma), ranks, *images.shape[1:]).astype(np.float32),
            {"long_name": "unit eigenvector e of S, largest entry positive"},
        ),
        eigen_residual=(per_rank, stack("eigen_residual"), {"long_name": "‖Se − λe‖/|λ|"}),
        jacobian_residual=(per_rank, stack("jacobian_residual"), {"long_name": "‖Je − λe‖/|λ|"}),
        **({} if not singular else {
            "singular_value": (per_rank, stack("singular_spectrum")[..., :ranks],
                               {"long_name": "singular value s of J"}),
            "singular_cosine": (per_rank, stack("singular_cosine"), {"long_name": "cos(u, v) of the singular vectors"}),
            "singular_residual": (
                per_rank, stack("singular_residual"), {"long_name": "√(‖Jv − su‖² + ‖Jᵀu − sv‖²)/s"}
            ),
        }),
        spectrum=(per_index, stack("spectrum"), {"long_name": "eigenvalue λ_k of S = (J + Jᵀ)/2"}),
        **({} if not singular else {"singular_spectrum": (
            per_index, stack("singular_spectrum"), {"long_name": "singular value s_k of the Jacobian J"})}),
        effective_dimension=(
            ("image", "sigma"), stack("trace"),
            {"long_name": "effective dimensionality tr(J)", "estimator": "exact" if resolved == "dense"
             else "Hutchinson (Gaussian probes)"},
        ),
        asymmetry=(
            ("image", "sigma"), stack("asymmetry"),
            {"long_name": "‖J − Jᵀ‖_F / ‖J‖_F", "estimator": "exact" if resolved == "dense"
             else "Gaussian probes"},
        ),
        products=(("image", "sigma"), stack("products"), {"long_name": "Jacobian-vector products spent"}),
    )
    dataset = dataset.assign_coords(
        rank=("rank", np.arange(ranks), {"long_name": "eigenpair index k, λ_0 largest"}),
        index=("index", np.arange(count), {"long_name": "k (values in decreasing order)"}),
    )
    dataset = with_provenance(
        dataset, denoiser, "jacobian", seed,
        method=resolved, output=output, precision=precision, tolerance=tolerance,
        dimension=d, products_through="torch.func.vmap" if vmapped else "batches of copies of y",
    )
    return gahb_context(dataset, support=support, training_images=training_images,
                        held_out_images=held_out_images, neighbours=neighbours)


def gahb_context(
    dataset: xr.Dataset,
    *,
    support: str = "object",
    support_options: dict | None = None,
    training_images=None,
    held_out_images=None,
    neighbours: int | None = None,
) -> xr.Dataset:
    """What the verdict needs beyond the eigenpairs, added to a jacobian Dataset: the support Ω
    (:func:`~biasprobe.analyses.support.with_support`), the dimension trend per image (:func:`~biasprobe.analyses.spectra.dimension_trend`) and, given the
    training images and held-out images, the memorization diagnostics of
    :func:`~biasprobe.analyses.span.jacobian_memorization`."""
    dataset = with_support(dataset, support, **(support_options or {}))
    dataset = dataset.assign(dimension_trend=dimension_trend(denoiser_trace(dataset)))
    if (training_images is None) != (held_out_images is None):
        raise InputError("memorization diagnostics need both {training_images} and {held_out_images} (the control)",
                         parameters=["training_images", "held_out_images"])
    if training_images is not None:
        found = jacobian_memorization(dataset, training_images, held_out_images,
                                      neighbours=neighbours or NEIGHBOURS)
        dataset = dataset.merge(found.drop_vars(["image", "sigma"]), combine_attrs="override")
        dataset.attrs = {**dataset.attrs, **{f"memorization_{k}": v for k, v in found.attrs.items()}}
    return dataset


__all__ = [
    "DENSE_MAX_DIMENSION",
    "METHODS",
    "OUTPUTS",
    "PRECISIONS",
    "ConvergenceWarning",
    "Decomposition",
    "JacobianOperator",
    "choose_method",
    "decompose",
    "gahb_context",
    "jacobian",
    "jacobian_matrix",
    "krylov_limit",
    "math_attention",
    "output_function",
]
