"""The store cache of the reports: a store per (analysis, checkpoint, settings), found by its key.

A cached store is the single file ``ANALYSIS-MODEL-KEY.zarr.zip``, KEY being :func:`store_key`: the
first 12 hex digits of sha256 over the analysis, the checkpoint's sha256 and the parameters that
analysis reads, so a retrained checkpoint or changed settings never reuse a stale store. A
:class:`StoreCache` looks a key up

1. in its report folder's ``stores/`` (writable: where computed stores are saved, recorded in the
   folder's mark, :class:`~biasprobe.reports.folder.ReportFolder`), then
2. in read-only caches (such as the stores committed in ``reports/paper/stores``), which are read and
   never written, whatever the report folder.

A store is taken when its file opens and its ``recipe_key`` attr is its key; an interrupted or other
store is computed again (into the report folder). A store file copied into the report folder's ``stores/`` by hand
(computed elsewhere, e.g. by ``report paper --models`` on a GPU machine holding some of the weights) is taken the
same way and adopted into the folder's mark; a copied file that is not the store of its name is never written over. A cache entry of the folder form ``NAME.zarr``
(written before stores were single files) in the report folder is packed into ``NAME.zarr.zip`` on
first use; the folder is then unused, and a run that prunes the cache removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import xarray as xr

from biasprobe.errors import InputError
from biasprobe.reports.folder import ReportFolder
from biasprobe.store import SINGLE_FILE_SUFFIX, pack, save, store_exists
from biasprobe.store import open as open_store

STORES = "stores"
"""The cache's folder inside a report folder."""


def store_key(analysis: str, sha256: str, parameters: Mapping) -> str:
    """The key of the store of ``analysis`` for the checkpoint of ``sha256`` with ``parameters`` (plain
    data: the settings that analysis reads): sha256 of their sorted JSON, first 12 hex digits."""
    text = json.dumps({"kind": analysis, "sha256": sha256, **parameters}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def store_name(analysis: str, model: str, key: str) -> str:
    """The file name of a cached store, ``ANALYSIS-MODEL-KEY.zarr.zip``."""
    return f"{analysis}-{model}-{key}.zarr{SINGLE_FILE_SUFFIX}"


class StoreCache:
    """The cache of the report in ``folder`` (its ``stores/``), with the ``read_only`` cache folders
    consulted after it (one that is the folder's own ``stores/`` is the writable one); ``recompute``:
    find nothing, compute every store."""

    def __init__(self, folder: ReportFolder, read_only: Sequence[str | os.PathLike] = (), *, recompute: bool = False):
        self.folder = folder
        self.recompute = recompute
        own = (folder.path / STORES).resolve()
        self.read_only = list(dict.fromkeys(Path(path) for path in read_only if Path(path).resolve() != own))
        self.found_read_only = 0
        """How many stores :meth:`find` took from the read-only caches."""

    def where(self, analysis: str, model: str, key: str) -> Path | None:
        """Where the store of this key is (the report folder's first; either form there), None if nowhere;
        nothing is opened or recorded."""
        if self.recompute:
            return None
        name = store_name(analysis, model, key)
        own = self.folder.path / STORES / name
        if store_exists(own) or store_exists(own.with_name(own.name.removesuffix(SINGLE_FILE_SUFFIX))):
            return own
        return next((folder / name for folder in self.read_only if store_exists(folder / name)), None)

    def find(self, analysis: str, model: str, key: str) -> xr.Dataset | None:
        """The cached store of this key, None when there is none (or ``recompute``). One in the report folder
        counts as used (a pruning run keeps it)."""
        path = self.where(analysis, model, key)
        if path is None:
            return None
        own = path.parent == self.folder.path / STORES
        placed = own and not self.folder.owns(f"{STORES}/{path.name}")  # copied in by hand, not yet the report's
        if own and not placed:
            path = self._entry(path.name)
        dataset = None
        with contextlib.suppress(InputError):  # an interrupted writer: computed again
            dataset = open_store(path)
        if dataset is None or dataset.attrs.get("recipe_key") != key:
            return None  # a placed file that is not this store stays untouched: saving over it is refused
        if placed:
            self.folder.adopt_store(f"{STORES}/{path.name}")
        elif not own:
            self.found_read_only += 1
        return dataset

    def keep(self, analysis: str, model: str, key: str) -> None:
        """Count the report folder's store of this key as used, if it has one (a store that another store
        was derived from: a pruning run keeps it although it was not opened)."""
        name = store_name(analysis, model, key)
        own = self.folder.path / STORES / name
        if store_exists(own) or store_exists(own.with_name(own.name.removesuffix(SINGLE_FILE_SUFFIX))):
            self._entry(name)

    def save(self, dataset: xr.Dataset, analysis: str, model: str, key: str) -> Path:
        """Save ``dataset`` as the store of this key in the report folder (atomically); its path."""
        path = self._entry(store_name(analysis, model, key))
        save(dataset, path)
        return path

    def compute(self, analysis: str, model: str, key: str, make: Callable[[], xr.Dataset]) -> xr.Dataset:
        """The cached store of this key, or ``make()`` saved into the report folder."""
        found = self.find(analysis, model, key)
        if found is not None:
            return found
        dataset = make()
        self.save(dataset, analysis, model, key)
        return dataset

    def _entry(self, name: str) -> Path:
        """The report folder's path of store ``name`` (recorded as the report's and used), packing an older
        folder form of it into the single file first."""
        path = self.folder.store_path(f"{STORES}/{name}")
        older = path.with_name(path.name.removesuffix(SINGLE_FILE_SUFFIX))
        if not store_exists(path) and store_exists(older):
            with contextlib.suppress(InputError):  # an interrupted older store: computed again
                pack(older, path)
        return path
