"""Sweeps on dask.distributed: one analysis over many checkpoints into one store, and training recipes.

- :func:`sweep`: analysis × checkpoints → one zarr store with a ``checkpoint`` dimension, each task
  writing its own region, resumable;
- :func:`select` / :func:`split`: one checkpoint's result (the analysis's own Dataset) from a sweep;
- :func:`train_recipe`: the models of a TOML recipe, each a resumable task, and their manifest.
"""

from biasprobe.sweeps.engine import SweepError

__all__ = ["SWEEPABLE", "SweepError", "is_sweep", "select", "split", "sweep"]

_LAZY = {"SWEEPABLE": "analyses", "sweep": "analyses", "is_sweep": "store", "select": "store", "split": "store"}


def __getattr__(name: str):
    # Analysis sweeps need zarr; training recipes (biasprobe.sweeps.recipes) must import without it,
    # on GPU machines that have torch but no zarr.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"biasprobe.sweeps.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
