"""The Jacobian-span diagnostic: do a denoiser's top Jacobian eigenvectors, and D(y), lie in the span
of its training images?

A memorizer's Jacobian is confined to the span of the training images near y (for the exact
posterior mean of N images, J = Σ w_i (x_i − D)(x_i − D)ᵀ/σ², inside span{x_i − x̄}); a
generalizing denoiser's eigenvectors are not. :func:`jacobian_memorization` measures the energy
of each eigenvector in the span of the M training images nearest to D(y), against the span of M
held-out images (the control) and chance (dim/d); :func:`memorization_score` condenses it. The
derived analysis ``training-span`` (:func:`training_span`) stores it for a jacobian store.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import StoreFigure, analysis, single
from biasprobe.analyses.memorization import centred_unit
from biasprobe.analyses.spectra import denoiser_order
from biasprobe.errors import InputError
from biasprobe.store import provenance

SPAN_RANKS = (5, 10, 20)
"""k of the top-k eigenvector energy fractions, E_T(k) and E_H(k)."""
NEIGHBOURS = 10
"""M: the span of at most this many training (and held-out) images nearest to D(y)."""
SPAN_PROVENANCE = ("checkpoint", "checkpoint_sha256", "architecture", "seed", "device", "output")
"""What a training-span store takes over from its jacobian store's provenance (its own command, version and
time are its own)."""


def span_basis(images: np.ndarray) -> np.ndarray:
    """An orthonormal basis Q (d, r) of the span of the rows of ``images`` (m, d), r its numerical rank."""
    u, s, _ = np.linalg.svd(np.asarray(images, dtype=np.float64).T, full_matrices=False)
    return u[:, s > s[0] * max(images.shape) * np.finfo(np.float64).eps] if len(s) and s[0] > 0 else u[:, :0]


def span_energy(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """‖Qᵀv‖² / ‖v‖² for vectors (..., d): the fraction of each one's energy inside span(Q)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return np.square(vectors @ basis).sum(-1) / np.square(vectors).sum(-1).clip(1e-300)


def memorization_score(train: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """(E_T − E_H)/(1 − E_H): the share of the energy that the held-out span misses which the
    training span holds (1: all of it, 0: no more than the control; negative: less)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (train - held_out) / np.clip(1 - held_out, 1e-12, None)


def _nearest(query: torch.Tensor, pool_units: torch.Tensor, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``count`` pool images of highest mean-removed cosine to ``query``, and those cosines
    (``pool_units``: the pool as :func:`~biasprobe.analyses.memorization.centred_unit` gives it, computed once)."""
    similarity = (pool_units @ centred_unit(query[None]).T)[:, 0]
    best = torch.topk(similarity, min(count, len(pool_units)))
    return best.indices.numpy(), best.values.numpy()


def jacobian_memorization(
    dataset: xr.Dataset,
    training_images: torch.Tensor,
    held_out_images: torch.Tensor,
    *,
    neighbours: int = NEIGHBOURS,
    ranks: tuple[int, ...] = SPAN_RANKS,
    centred: bool = False,
) -> xr.Dataset:
    """Do the Jacobian's top eigenvectors and D(y) live in the span of the training images?

    For each image and σ, with T the M = min(``neighbours``, N) training images of highest
    mean-removed cosine to D(y) (all of them when N ≤ M) and H the M held-out images nearest to
    D(y) (the control; held-out copies of the clean image itself are dropped), P_T and P_H the
    orthogonal projectors onto their spans — span{x_i : i ∈ T}, or with ``centred`` the span of the
    differences from their mean, span{x_i − x̄_T} (dimension M − 1), likewise for H — and e_j the
    unit eigenvectors of the denoiser's Jacobian, largest λ_j first:

    - f_T(j) = ‖P_T e_j‖² for every stored rank j (``train_span_fraction``, dimension
      ``denoiser_rank``), f_H(j) likewise, and the chance level c_T = dim(span T)/d, the expected
      fraction E‖P_T u‖² of a uniformly random unit vector u (``train_span_chance``);
    - E_T(k) = (1/k) Σ_{j<k} ‖P_T e_j‖², E_H(k) likewise, for k in ``ranks``;
    - the eigenvalue-weighted fractions E^λ_T = Σ_{j<K} λ_j⁺ ‖P_T e_j‖² / Σ_{j<K} λ_j⁺ over the top
      K = max(ranks), E^λ_H likewise, and the memorization score (:func:`memorization_score`);
    - ‖P_T D(y)‖² / ‖D(y)‖² and ‖P_H D(y)‖² / ‖D(y)‖²;
    - the mean-removed cosine of D(y) to its nearest training and nearest held-out image.

    A random direction has E = M/d in either span (M − 1 centred; the ``chance`` attr). The exact
    posterior mean of N ≤ M training images, D(y) = Σ w_i(y) x_i, has J = Σ w_i (x_i − D)(x_i − D)ᵀ/σ²,
    whose eigenvectors of λ > 0 lie in span{x_i − x̄}: centring keeps all of a memorizer's directions
    and drops one dimension, the part of x̄ outside the differences' span (the direction all the
    images share, which image-like vectors overlap whether or not the denoiser memorized; 15 % of
    x̄'s energy for ten Fashion-MNIST images at 16×16), so it is the tighter test. The
    variables on ``denoiser_rank`` do not share the ``rank`` dimension: a raw-output store keeps its
    own order, these are in the denoiser's (``denoiser_eigenvalue``). ``dataset`` is a
    :func:`~biasprobe.analyses.jacobian.jacobian` Dataset, in the denoiser's order or mapped to it
    (:func:`~biasprobe.analyses.spectra.denoiser_order`, which needs every eigenvector of a raw
    store).
    """
    dataset = denoiser_order(dataset)
    training = torch.as_tensor(training_images).double().flatten(1).cpu()
    held_out = torch.as_tensor(held_out_images).double().flatten(1).cpu()
    d = training.shape[1]
    if held_out.shape[1] != d or dataset.clean[0].size != d:
        raise InputError(f"training_images, held_out_images and the analysed images must have one shape; got "
                         f"{tuple(training_images.shape[1:])}, {tuple(held_out_images.shape[1:])} and "
                         f"{dataset.clean.shape[1:]}")
    if neighbours < 1:
        raise InputError(f"{{neighbours}} must be at least 1, got {neighbours}", parameters=["neighbours"])
    count = min(neighbours, len(training))
    ranks = tuple(k for k in ranks if k <= dataset.sizes["rank"]) or (dataset.sizes["rank"],)
    top = max(ranks)
    stored = dataset.sizes["rank"]
    sizes = (dataset.sizes["image"], dataset.sizes["sigma"])
    results = {name: np.zeros(sizes + shape) for name, shape in (
        ("train_energy", (len(ranks),)), ("held_out_energy", (len(ranks),)), ("train_weighted", ()),
        ("held_out_weighted", ()), ("denoised_train", ()), ("denoised_held_out", ()), ("train_cosine", ()),
        ("held_out_cosine", ()), ("train_index", ()), ("train_fraction", (stored,)),
        ("held_out_fraction", (stored,)), ("train_chance", ()), ("held_out_chance", ()))}
    training_units = centred_unit(training)
    for i in range(sizes[0]):
        clean = torch.as_tensor(dataset.clean.values[i]).double().flatten()
        others = held_out[(held_out - clean).abs().amax(1) > 1e-6]
        if len(others) < count:
            raise InputError(f"{{held_out_images}} needs at least {count} images other than the analysed ones, "
                             f"got {len(others)}", parameters=["held_out_images"])
        pools = (("train", training, training_units), ("held_out", others, centred_unit(others)))
        for s in range(sizes[1]):
            at = dataset.isel(image=i, sigma=s)
            denoised = torch.as_tensor(at.denoised.values).double().flatten()
            vectors = at.eigenvector.values.reshape(stored, d)
            weights = np.clip(at.eigenvalue.values[:top], 0, None)
            for side, pool, pool_units in pools:
                index, cosine = _nearest(denoised, pool_units, count)
                chosen = pool[index].numpy()
                basis = span_basis(chosen - chosen.mean(0) if centred else chosen)
                fraction = span_energy(vectors, basis)
                results[f"{side}_fraction"][i, s] = fraction
                results[f"{side}_chance"][i, s] = basis.shape[1] / d
                energy = fraction[:top]
                results[f"{side}_energy"][i, s] = [energy[:k].mean() for k in ranks]
                results[f"{side}_weighted"][i, s] = (weights * energy).sum() / weights.sum() if weights.sum() > 0 \
                    else np.nan
                results[f"denoised_{side}"][i, s] = span_energy(denoised.numpy(), basis)
                results[f"{side}_cosine"][i, s] = cosine[0]
                if side == "train":
                    results["train_index"][i, s] = index[0]
    per_pair, per_top, per_rank = ("image", "sigma"), ("image", "sigma", "top"), ("image", "sigma", "denoiser_rank")
    which = "differences from their mean of the " if centred else ""
    span = f"the span of the {which}{count} training images nearest to D(y)"
    control = f"the span of the {which}{count} held-out images nearest to D(y)"
    result = xr.Dataset(
        {
            "train_span_fraction": (per_rank, results["train_fraction"], {
                "long_name": f"‖P_T e_j‖²: energy of eigenvector j (the denoiser's order) in {span}"}),
            "held_out_span_fraction": (per_rank, results["held_out_fraction"], {
                "long_name": f"‖P_H e_j‖²: energy of eigenvector j (the denoiser's order) in {control}"}),
            "train_span_chance": (per_pair, results["train_chance"], {
                "long_name": f"dim/d: the energy of a random unit vector expected in {span}"}),
            "held_out_span_chance": (per_pair, results["held_out_chance"], {
                "long_name": f"dim/d: the energy of a random unit vector expected in {control}"}),
            "denoiser_eigenvalue": (per_rank, dataset.eigenvalue.values, {
                "long_name": "eigenvalue λ_j of the denoiser's Jacobian (symmetrised), largest first"}),
            "train_span_energy": (per_top, results["train_energy"], {"long_name": f"energy of the top-k eigenvectors in {span}"}),
            "held_out_span_energy": (per_top, results["held_out_energy"], {"long_name": f"energy of the top-k eigenvectors in {control}"}),
            "train_span_energy_weighted": (per_pair, results["train_weighted"], {
                "long_name": f"λ-weighted energy of the top {top} eigenvectors in {span}"}),
            "held_out_span_energy_weighted": (per_pair, results["held_out_weighted"], {
                "long_name": f"λ-weighted energy of the top {top} eigenvectors in {control}"}),
            "memorization_score": (per_pair, memorization_score(results["train_weighted"], results["held_out_weighted"]), {
                "long_name": "memorization score (E^λ_T − E^λ_H)/(1 − E^λ_H)"}),
            "denoised_train_span_energy": (per_pair, results["denoised_train"], {"long_name": f"energy of D(y) in {span}"}),
            "denoised_held_out_span_energy": (per_pair, results["denoised_held_out"], {
                "long_name": f"energy of D(y) in {control}"}),
            "nearest_train_cosine": (per_pair, results["train_cosine"], {
                "long_name": "mean-removed cosine of D(y) to its nearest training image"}),
            "nearest_held_out_cosine": (per_pair, results["held_out_cosine"], {
                "long_name": "mean-removed cosine of D(y) to its nearest held-out image"}),
            "nearest_train_index": (per_pair, results["train_index"].astype(np.int64), {
                "long_name": "index of D(y)'s nearest training image"}),
        },
        coords={"image": dataset.image, "sigma": dataset.sigma, "top": ("top", list(ranks), {"long_name": "k"}),
                "denoiser_rank": ("denoiser_rank", np.arange(stored), {
                    "long_name": "rank j in the denoiser's order (largest λ of ∂D/∂y first)"})},
    )
    result.attrs.update(neighbours=count, n_train=len(training), n_held_out=len(held_out),
                        chance=(count - 1 if centred else count) / d, centred=int(centred))
    return result


@analysis(
    "training-span", derived=True,
    figures=[StoreFigure("span", "Energy of each eigenvector of the denoiser's Jacobian in the span of the training "
                         "images, the held-out control span and chance", "biasprobe.figures.jacobian:training_span_figure",
                         single)],
    numbers="biasprobe.analyses.span:training_span_numbers",
)
def training_span(
    jacobian_store: xr.Dataset,
    training_images: torch.Tensor,
    held_out_images: torch.Tensor,
    *,
    neighbours: int = NEIGHBOURS,
    ranks: tuple[int, ...] = SPAN_RANKS,
    centred: bool = False,
) -> xr.Dataset:
    """The span diagnostic of a jacobian store as a store of its own, derived from it and the model's
    training images: :func:`jacobian_memorization` with the provenance of ``jacobian_store``
    (:data:`SPAN_PROVENANCE`) and its own (``analysis="training-span"``, ``source_command``)."""
    result = jacobian_memorization(jacobian_store, training_images, held_out_images, neighbours=neighbours,
                                   ranks=ranks, centred=centred)
    result.attrs.update({name: jacobian_store.attrs[name] for name in SPAN_PROVENANCE if name in jacobian_store.attrs},
                        **provenance(), analysis="training-span", source_command=jacobian_store.attrs.get("command", ""))
    return result


def training_span_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of a training-span store: the spans, chance, and the mean energy of the top k
    eigenvectors in the training and held-out spans."""
    dataset = next(iter(parts.values()))
    centred = ", mean removed" if dataset.attrs.get("centred") else ""
    spans = f"{dataset.attrs.get('neighbours')} images{centred}; chance dim/d = {float(dataset.train_span_chance.mean()):.4f}"
    rows = [("spans", spans)]
    for k in dataset.top.values:
        train, held_out = (float(dataset[name].sel(top=k).mean()) for name in ("train_span_energy", "held_out_span_energy"))
        rows.append((f"mean ‖P e_j‖² over the top {k} of ∂D/∂y, training / held-out span", f"{train:.3f} / {held_out:.3f}"))
    return rows
