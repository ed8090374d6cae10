"""Sweeps on dask.distributed: one analysis over many checkpoints into one store, and training recipes.

- :func:`sweep`: analysis × checkpoints → one zarr store with a ``checkpoint`` dimension, each task
  writing its own region, resumable;
- :func:`select` / :func:`split`: one checkpoint's result (the analysis's own Dataset) from a sweep;
- :func:`train_recipe`: the models of a TOML recipe, each a resumable task, and their manifest.
"""

from biasprobe.sweeps.analyses import SWEEPABLE, SweepError, sweep
from biasprobe.sweeps.store import is_sweep, select, split

__all__ = ["SWEEPABLE", "SweepError", "is_sweep", "select", "split", "sweep"]
