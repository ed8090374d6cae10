"""A jacobian Dataset read in the denoiser's terms: the order of its eigenpairs, its trace and how
the trace changes with σ.

A raw-output store (``output="raw"``) decomposes J_raw = ∂r/∂y_n of the network's own output, and
the denoiser's Jacobian is J = I − s·J_raw (:func:`raw_scale`), so its eigenvalues are λ = 1 − s·μ
in reverse order (:func:`denoiser_order`) and tr J = d − s·tr J_raw (:func:`denoiser_trace`). The
dimension trend β = d log tr J / d log σ (:func:`dimension_trend`) is fitted per image by least
squares. The verdict (:mod:`biasprobe.analyses.harmonic`) and the span diagnostics
(:mod:`biasprobe.analyses.span`) read stores through these.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from biasprobe.errors import InputError

FIELD = ("channel", "y", "x")
"""The dimensions of one image (and one eigenvector)."""


def raw_scale(dataset: xr.Dataset) -> xr.DataArray | float | None:
    """s in J = I − s·J_raw for a raw-output store (1 for residual networks, σ_n for ε-prediction),
    0 for x̂₀ networks and wrapped callables (J = J_raw), None for a denoised store."""
    if dataset.attrs.get("output", "denoised") != "raw":
        return None
    architecture = json.loads(dataset.attrs.get("architecture", "{}"))
    parameterization = architecture.get("parameterization")
    if parameterization == "residual":
        return 1.0
    if parameterization == "eps":
        scale = 2.0 if architecture.get("native_range") == "signed" else 1.0
        return dataset.sigma * scale
    return 0.0


def denoiser_order(dataset: xr.Dataset) -> xr.Dataset:
    """The Dataset as eigenpairs of the denoiser's Jacobian, largest λ first.

    A raw-output store decomposes J_raw = ∂r/∂y_n, and J = I − s·J_raw (:func:`raw_scale`), so the
    denoiser's eigenvalues are λ = 1 − s·μ in reverse order: the raw output's top eigenvectors are
    the denoiser's bottom ones (the directions it removes as noise). The map needs every eigenvector
    (a dense run with d ≤ 1024); otherwise this raises."""
    scale = raw_scale(dataset)
    if scale is None or (isinstance(scale, float) and scale == 0.0):
        return dataset
    d = int(np.prod([dataset.sizes[dim] for dim in FIELD]))
    if dataset.sizes["rank"] < d or dataset.sizes["index"] < d:
        raise InputError(
            "this store holds the raw output's Jacobian (ε̂ or residual), whose top eigenvectors are the "
            "denoiser's bottom ones (λ = 1 − s·μ); GAHB metrics need the denoiser's top eigenvectors: "
            "rerun with {output}=denoised, or with {method}=dense and every eigenvector stored (d ≤ 1024)",
            parameters=["output", "method"],
        )
    flipped = dataset.isel(rank=slice(None, None, -1), index=slice(None, None, -1))
    flipped = flipped.assign_coords(rank=dataset["rank"].values, index=dataset["index"].values)
    mapped = flipped.assign(
        eigenvalue=1 - scale * flipped.eigenvalue, spectrum=1 - scale * flipped.spectrum,
        effective_dimension=d - scale * flipped.effective_dimension,
    )
    for name in ("eigenvalue", "spectrum", "effective_dimension"):
        mapped[name].attrs = dict(dataset[name].attrs)
    mapped.attrs = {**dataset.attrs, "output": "denoised", "mapped_from": "raw"}
    return mapped



def denoiser_trace(dataset: xr.Dataset) -> xr.DataArray:
    """tr J of the denoiser: the store's ``effective_dimension``, or d − s·tr J_raw for a raw-output
    store (J = I − s·J_raw, :func:`raw_scale`)."""
    scale = raw_scale(dataset)
    if scale is None or (isinstance(scale, float) and scale == 0.0):
        return dataset.effective_dimension
    d = int(np.prod([dataset.sizes[dim] for dim in FIELD]))
    return (d - scale * dataset.effective_dimension).assign_attrs(dataset.effective_dimension.attrs)


def dimension_trend(effective_dimension: xr.DataArray) -> xr.DataArray:
    """β = least-squares slope of log tr J against log σ per image (NaN with one σ or tr J ≤ 0):
    Kadkhodaie et al. find tr J falling with σ for generalizing denoisers (β < 0) and flat for
    memorizers (β ≈ 0), whose J is confined to the ≤ N − 1 directions of the training set."""
    log_sigma = np.log(effective_dimension.sigma.values)
    attrs = {"long_name": "dimension trend β = d log tr J / d log σ", "units": "1", "sigmas": len(log_sigma)}
    if len(log_sigma) < 2:
        return xr.full_like(effective_dimension.isel(sigma=0, drop=True), np.nan, dtype=float).assign_attrs(attrs)
    trace = effective_dimension.transpose("image", "sigma").values
    log_trace = np.log(np.where(trace > 0, trace, np.nan))
    centred = log_sigma - log_sigma.mean()
    slope = ((log_trace - log_trace.mean(1, keepdims=True)) * centred).sum(1) / (centred**2).sum()
    return xr.DataArray(slope, dims=["image"], coords={"image": effective_dimension.image}, attrs=attrs)
