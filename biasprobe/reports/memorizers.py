"""The memorizers' checks of the claims page (docs/reports.md, "The memorizers item"): does an N = 10 model copy
its training images, and do its Jacobian's top eigenvectors lie in the span of its training images — and the
memorizer σ at which the ideal memorizer's own eigenvectors do. The claims built on them are in
:mod:`biasprobe.reports.claims`; the memorizers table and figure of the paper recipe read them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import xarray as xr

from biasprobe.reports.zoo import FAMILY_NAMES, Cell

MEMORIZED_SHARE = 0.5
"""A memorizer: at least this share of its samples within similarity 0.95 of a training image."""
SPAN_TOP = 10
"""k: the top-k eigenvectors of the denoiser's Jacobian whose training-span energy is judged."""
SPAN_FRACTION = 0.5
"""… and their mean energy in the (centred) span of its training images is at least this (chance 9/1024),"""
SPAN_MARGIN = 0.1
"""… and above the largest-N model's of the same family and variant by at least this."""


MAX_WEIGHT = 0.5
"""The memorizer σ: the ideal memorizer's posterior weights must have spread, mean max_i w_i ≤ this."""


def ideal_in_span(ideal: xr.Dataset, sigma: float) -> bool:
    """Whether the ideal memorizer's top eigenvectors pass the span part of the memorizer rule at ``sigma``:
    E_T(k) ≥ :data:`SPAN_FRACTION` and E_T(k) ≥ E_H(k) + :data:`SPAN_MARGIN` (k = :data:`SPAN_TOP`; the
    held-out span stands in for the largest-N contrast, which the ideal memorizer has none of)."""
    at = ideal.sel(sigma=sigma)
    span, held_out = top_mean(at, "train_span_fraction"), top_mean(at, "held_out_span_fraction")
    return bool(span >= SPAN_FRACTION and span >= held_out + SPAN_MARGIN)


def memorizer_sigma(ideals: Sequence[xr.Dataset], grid: Sequence[float]) -> float | None:
    """The memorizer σ: the smallest σ of ``grid`` at which, for every store of ``ideals`` (the ideal
    memorizer of each N = 10 model's training set,
    :func:`~biasprobe.analyses.ideal.ideal_memorizer_span`), the weights have spread — mean
    max_i w_i ≤ :data:`MAX_WEIGHT` — and the ideal memorizer's top eigenvectors pass the span rule
    (:func:`ideal_in_span`); None when no σ of the grid does (or there is no store). The rule was fixed
    before the trained models' stores at any σ but 0.1 were computed; it reads the ideal memorizers only."""
    if not ideals:
        return None
    for sigma in sorted(float(s) for s in grid):
        if all(float(ideal.mean_max_posterior_weight.sel(sigma=sigma)) <= MAX_WEIGHT and ideal_in_span(ideal, sigma)
               for ideal in ideals):
            return sigma
    return None


@dataclass(frozen=True)
class MemorizerCheck:
    """The two checks of one N = 10 model (None: its store, or its contrast's, is missing).

    ``share``: the memorized share of its samples; ``span``: E_T(k) = (1/k) Σ_{j<k} ‖P_T e_j‖² over the
    top k = :data:`SPAN_TOP` eigenvectors of ∂D/∂y, P_T the projector onto span{x_i − x̄} of its
    training images; ``held_out`` the same for the held-out control span, ``chance`` dim(span)/d;
    ``contrast`` E_T(k) of the largest-N model of the family (the span of its 10 training images
    nearest to D(y)); ``raw_top`` the mean fraction of the bottom k of ∂D/∂y, the raw output's top k;
    ``top_eigenvalue`` λ₀ of ∂D/∂y; ``denoised_cosine`` the mean-removed cosine of D(y) to its nearest
    training image (near 1: D copies a training image at this σ; not part of the rule)."""

    cell: Cell
    share: float | None
    span: float | None
    held_out: float | None
    chance: float | None
    contrast: float | None
    contrast_n: int | None
    raw_top: float | None
    top_eigenvalue: float | None
    denoised_cosine: float | None = None
    span_store: xr.Dataset | None = None
    contrast_store: xr.Dataset | None = None
    share_needed: float = MEMORIZED_SHARE

    @property
    def label(self) -> str:
        variant = "" if self.cell.variant == "global" else f" {self.cell.variant}"
        subset = f" {self.cell.subset.upper()}" if self.cell.family == "unet-bf" else ""
        return f"{FAMILY_NAMES.get(self.cell.family, self.cell.family)}{variant} N={self.cell.n}{subset}"

    @property
    def copies(self) -> bool | None:
        return None if self.share is None else self.share >= MEMORIZED_SHARE

    @property
    def in_span(self) -> bool | None:
        if self.span is None or self.contrast is None:
            return None
        return self.span >= SPAN_FRACTION and self.span >= self.contrast + SPAN_MARGIN

    @property
    def passed(self) -> bool | None:
        if self.copies is None or self.in_span is None:
            return None
        return self.copies and self.in_span

    @property
    def verdict(self) -> str:
        parts = {True: "passes", False: "fails", None: "not tested"}
        each = f"copies: {parts[self.copies]}; in span: {parts[self.in_span]}"
        if self.passed is None:
            return each
        return "**passes**" if self.passed else f"**fails** ({each})"


def top_mean(store: xr.Dataset, name: str, bottom: bool = False) -> float:
    """E(k) = (1/k) Σ_{j<k} of the per-rank variable ``name`` (k = :data:`SPAN_TOP`), averaged over images and
    σ; ``bottom``: the last k ranks instead."""
    ranks = store.sizes["denoiser_rank"]
    take = slice(max(ranks - SPAN_TOP, 0), ranks) if bottom else slice(0, SPAN_TOP)
    return float(store[name].isel(denoiser_rank=take).mean())


def memorizer_check(cell: Cell, memorization: xr.Dataset | None, span: xr.Dataset | None,
                    contrast: xr.Dataset | None) -> MemorizerCheck:
    """The checks of the N = 10 model of ``cell`` from its memorization and training-span stores and its
    contrast's training-span store (a contrast trained on no more images than the cell's is none)."""
    if contrast is not None and int(contrast.attrs.get("n_train", 0)) <= (cell.n or 0):
        contrast = None
    return MemorizerCheck(
        cell, None if memorization is None else float(memorization.memorized_share),
        None if span is None else top_mean(span, "train_span_fraction"),
        None if span is None else top_mean(span, "held_out_span_fraction"),
        None if span is None else float(span.train_span_chance.mean()),
        None if contrast is None else top_mean(contrast, "train_span_fraction"),
        None if contrast is None else int(contrast.attrs["n_train"]),
        None if span is None else top_mean(span, "train_span_fraction", bottom=True),
        None if span is None else float(span.denoiser_eigenvalue.isel(denoiser_rank=0).mean()),
        None if span is None else float(span.nearest_train_cosine.mean()), span, contrast)
