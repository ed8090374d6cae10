"""What every figure module shares: reading its source and making a canvas without pyplot."""

from __future__ import annotations

import os

import xarray as xr
from matplotlib.figure import Figure, SubFigure

from biasprobe.store import open as open_store

Source = xr.Dataset | str | os.PathLike
"""A figure's input: a Dataset, or the path of a store written by :func:`biasprobe.save`."""


def as_dataset(source: Source) -> xr.Dataset:
    """The Dataset itself, or the store at that path."""
    return source if isinstance(source, xr.Dataset) else open_store(source)


def new_canvas(figure: Figure | SubFigure | None, width: float, height: float) -> Figure | SubFigure:
    """``figure`` if given, else a new constrained-layout Figure (Agg, no global pyplot state)."""
    return Figure(figsize=(width, height), layout="constrained") if figure is None else figure
