"""What every figure module shares: reading its source, choosing a noise level, labelling axes from the
variables' attrs, and making a canvas without pyplot.

The rules every figure function follows: it takes a Dataset or a store path (:data:`Source`) and an
optional ``figure`` (Figure or SubFigure) to draw into; it selects noise levels by value
(``sigma=0.1``, the nearest stored level, :func:`at_sigma`); it labels axes and colour bars with
:func:`label` (the variable's ``long_name`` and ``units``); and it returns the root
:class:`~matplotlib.figure.Figure` (:func:`root`), ready for ``savefig``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure, SubFigure

from biasprobe.errors import InputError
from biasprobe.store import open as open_store

Source = xr.Dataset | str | os.PathLike
"""A figure's input: a Dataset, or the path of a store written by :func:`biasprobe.save`."""


def of_analysis(dataset: xr.Dataset, analysis: str | tuple[str, ...] | None) -> xr.Dataset:
    """``dataset`` itself, refused when its ``analysis`` attr names another analysis than ``analysis`` (one
    name or several; None accepts any): a figure drawn from another analysis's store."""
    wanted = (analysis,) if isinstance(analysis, str) else tuple(analysis or ())
    found = dataset.attrs.get("analysis")
    if wanted and found is not None and found not in wanted:
        raise InputError(f"this store holds the {found} analysis; this figure draws stores of {' or '.join(wanted)}")
    return dataset


def as_dataset(source: Source, analysis: str | tuple[str, ...] | None = None) -> xr.Dataset:
    """The Dataset itself, or the store at that path; a sweep of one checkpoint gives that checkpoint's
    result (a sweep of several: pick one with :func:`biasprobe.sweeps.select`). With ``analysis``, a
    store of another analysis is refused (:func:`of_analysis`)."""
    from biasprobe.sweeps.store import is_sweep, select

    dataset = of_analysis(source if isinstance(source, xr.Dataset) else open_store(source), analysis)
    if not is_sweep(dataset):
        return dataset
    if dataset.sizes["checkpoint"] != 1:
        names = ", ".join(map(str, dataset.checkpoint.values))
        raise InputError(f"this is a sweep over {dataset.sizes['checkpoint']} checkpoints ({names}); draw one with "
                         "bp.sweeps.select(dataset, NAME), or use a figure that compares checkpoints")
    return select(dataset, 0)


def as_datasets(sources: Source | Mapping[str, Source] | Sequence[Source],
                analysis: str | tuple[str, ...] | None = None) -> dict[str, xr.Dataset]:
    """Labelled Datasets for figures that compare runs: a mapping as given, a sequence labelled by
    checkpoint file stem, a sweep split by checkpoint name, a single Dataset or store as itself; with
    ``analysis``, stores of other analyses are refused (:func:`of_analysis`)."""
    from biasprobe.sweeps.store import is_sweep, split

    if isinstance(sources, xr.Dataset | str | os.PathLike):  # a Dataset is a Mapping too: test it first
        dataset = of_analysis(sources if isinstance(sources, xr.Dataset) else open_store(sources), analysis)
        return split(dataset) if is_sweep(dataset) else {_label(dataset, 0): dataset}
    if isinstance(sources, Mapping):
        return {str(label): as_dataset(source, analysis) for label, source in sources.items()}
    datasets = [as_dataset(source, analysis) for source in sources]
    return {_label(dataset, index): dataset for index, dataset in enumerate(datasets)}


def _label(dataset: xr.Dataset, index: int) -> str:
    checkpoint = dataset.attrs.get("checkpoint")
    return Path(checkpoint).stem if checkpoint else f"run {index + 1}"


def checkpoint_label(path: str | os.PathLike | None, fallback: str = "denoiser") -> str:
    """A short name for a checkpoint: its file stem (or folder name); ``fallback`` without one."""
    if not path:
        return fallback
    path = Path(str(path))
    return path.stem if path.suffix else path.name


def new_canvas(figure: Figure | SubFigure | None, width: float, height: float) -> Figure | SubFigure:
    """``figure`` if given, else a new constrained-layout Figure (Agg, no global pyplot state)."""
    return Figure(figsize=(width, height), layout="constrained") if figure is None else figure


def root(canvas: Figure | SubFigure) -> Figure:
    """The Figure at the root of ``canvas`` (itself for a Figure): what every figure function returns."""
    return canvas.figure if isinstance(canvas, SubFigure) else canvas


def label(variable: xr.DataArray, name: str | None = None) -> str:
    """An axis or colour-bar label from the variable's attrs, as xarray's plotting makes them:
    ``long_name (units)``; ``name`` (or the variable's own name) without a long_name, no units
    where they are ``1`` (dimensionless) or absent."""
    words = variable.attrs.get("long_name") or name or str(variable.name)
    units = variable.attrs.get("units")
    return f"{words} ({units})" if units not in (None, "", "1") else words


SIGMA_RTOL = 0.01
"""How far (relatively) a requested σ may be from the nearest stored one."""


def at_sigma(dataset: xr.Dataset, sigma: float | None) -> xr.Dataset:
    """The dataset at the stored noise level nearest ``sigma`` (within 1 %; the first if None):
    ``dataset.sel(sigma=sigma, method="nearest")``; a level the store lacks is an error listing its levels."""
    if sigma is None:
        return dataset.isel(sigma=0)
    try:
        return dataset.sel(sigma=float(sigma), method="nearest", tolerance=SIGMA_RTOL * abs(float(sigma)))
    except KeyError:
        levels = ", ".join(f"{value:g}" for value in np.atleast_1d(dataset.sigma.values))
        raise InputError(f"no noise level sigma={float(sigma):g} in this store; it has {levels}") from None


def log_ticks(axis, which: str = "x") -> None:
    """Label a log axis at 1, 2 and 5 × 10ᵏ in plain numbers (0.02, 0.05, 0.1 …) and leave the minor
    ticks unlabelled, so that short ranges do not print overlapping minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = axis.xaxis if which == "x" else axis.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())
