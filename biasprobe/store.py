"""Analysis results as xarray Datasets on zarr v3 stores, written atomically with provenance.

:func:`save` writes into a hidden sibling folder, marks it complete as the very last write, and
only then renames it onto the target. A run killed at any point leaves the previous store (or
none) at the target path; a leftover sibling lacks the completion mark and :func:`open` refuses it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import uuid
import warnings
from pathlib import Path

import xarray as xr
import zarr

from biasprobe.errors import InputError

COMPLETE_MARK = "biasprobe_complete"


def provenance(
    *,
    denoiser=None,
    checkpoint: str | os.PathLike | None = None,
    seed: int | None = None,
    device: str | None = None,
    command: str | None = None,
) -> dict:
    """The provenance attrs every store carries (plain JSON-able values)."""
    from biasprobe import __version__
    from biasprobe.denoiser import file_sha256

    attrs = {
        "biasprobe_version": __version__,
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if checkpoint is not None:
        attrs["checkpoint"] = str(checkpoint)
        attrs["checkpoint_sha256"] = file_sha256(checkpoint)
    if denoiser is not None:
        attrs["architecture"] = json.dumps(denoiser.describe(), default=str)
    if seed is not None:
        attrs["seed"] = int(seed)
    if device is not None:
        attrs["device"] = str(device)
    return attrs


def save(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` to a zarr v3 store at ``path``, replacing any store there atomically."""
    path = Path(path)
    if path.exists() and not (path / "zarr.json").exists():
        raise InputError(f"{path} exists and is not a zarr store; choose another " + "{out}", parameters={"out": "path"})
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.tmp-{token}")
    old = path.with_name(f".{path.name}.old-{token}")
    dataset = dataset.copy()
    dataset.attrs.pop(COMPLETE_MARK, None)
    dataset.attrs.setdefault("created", provenance()["created"])
    try:
        with warnings.catch_warnings():  # text variables (verdicts, names) lack a settled zarr v3 dtype spec
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
            dataset.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        zarr.open_group(tmp, mode="r+").attrs[COMPLETE_MARK] = True
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def open(path: str | os.PathLike) -> xr.Dataset:
    """Open a store written by :func:`save`, fully loaded into memory."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise InputError(f"no biasprobe store at {path}: run an analysis that saves its results there first")
    if not zarr.open_group(path, mode="r").attrs.get(COMPLETE_MARK, False):
        raise InputError(f"{path} is an incomplete store (its writer was interrupted); run the analysis again")
    with xr.open_zarr(path, zarr_format=3, consolidated=False) as dataset:
        dataset = dataset.load()
    dataset.attrs.pop(COMPLETE_MARK, None)
    return dataset
