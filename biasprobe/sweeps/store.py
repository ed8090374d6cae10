"""Sweep stores: one zarr store whose every variable has a leading ``checkpoint`` dimension.

The layout is written first (:func:`create`): the ``checkpoint`` coordinate (names) with the facts
known before any analysis runs (path, sha256, family, N, subset, windows, steps, parameters), a
``region_complete`` flag per checkpoint and the sweep's specification. The first finished task adds
the result variables (:func:`write_region`, under a lock), every task then writes only its own
region ``checkpoint = i`` (chunks of one checkpoint, so writers never share a chunk) and sets its
flag last. A region whose flag is unset is recomputed on resume; when all are set, :func:`finish`
adds the attrs the checkpoints share and the completion mark of :mod:`biasprobe.store`, so
:func:`biasprobe.open` opens the store like any other.

Every variable of a checkpoint's result Dataset, its non-index coordinates included (``t`` along
``sigma`` differs between scheduled and blind models), gains the ``checkpoint`` dimension; index
coordinates (``sigma``, ``image``, ``layer``, ...) must agree across checkpoints. Each result's
attrs are kept as JSON in the ``analysis_attrs`` variable, so :func:`select` returns exactly the
Dataset the analysis returned for that checkpoint.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dask
import numpy as np
import xarray as xr
import zarr

from biasprobe.atomic import replace_file
from biasprobe.errors import InputError
from biasprobe.store import is_marked_complete, mark_complete

SWEEP_ATTR = "sweep"
"""Root attr holding the sweep's specification (JSON): analysis, options, checkpoints and sha256."""
FLAG = "region_complete"
ATTRS = "analysis_attrs"
FACTS = {
    "checkpoint_path": ("", "checkpoint file or folder"),
    "checkpoint_sha256": ("", "SHA-256 of the checkpoint"),
    "family": ("", "model family"),
    "n_train": (-1, "training set size N (-1: not recorded)"),
    "subset": ("", "training subset (s1, s2, all)"),
    "seed": (-1, "training seed (-1: not recorded)"),
    "model_windows": ("", "attention window per layer, comma-separated ('-': global; empty: no attention)"),
    "steps_done": (-1, "optimisation steps done (-1: not recorded)"),
    "parameters": (-1, "number of network parameters"),
}
"""Per-checkpoint coordinates written with the layout: name -> (fill value, long_name)."""


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():  # text variables lack a settled zarr v3 dtype spec
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*StringDType.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def checkpoint_facts(name: str, path: str | os.PathLike, description: dict, sha256: str) -> dict:
    """The :data:`FACTS` of one checkpoint from its ``Denoiser.describe()`` (fills where unknown)."""
    training = description.get("training") or {}
    windows = description.get("attention_windows") or []
    return {
        "checkpoint": name,
        "checkpoint_path": str(path),
        "checkpoint_sha256": sha256,
        "family": str(description.get("family", description.get("file_format", ""))),
        "n_train": int(training.get("n_train", -1)),
        "subset": str(training.get("subset", "")),
        "seed": int(training.get("seed", -1)),
        "model_windows": ",".join("-" if w is None else str(w) for w in windows),
        "steps_done": int(training.get("steps_done", -1)) + int(training.get("warm_start_steps", 0)),
        "parameters": int(description.get("parameters", -1)),
    }


def create(path: str | os.PathLike, facts: list[dict], specification: dict, attrs: Mapping | None = None) -> Path:
    """Write the layout of a sweep over ``facts`` (one dict per checkpoint, from :func:`checkpoint_facts`)
    atomically: to a hidden sibling, renamed onto ``path`` when whole."""
    path = Path(path)
    count = len(facts)
    coords = {"checkpoint": ("checkpoint", np.array([f["checkpoint"] for f in facts], dtype=object),
                             {"long_name": "checkpoint name"})}
    for key, (fill, long_name) in FACTS.items():
        values = [f.get(key, fill) for f in facts]
        coords[key] = ("checkpoint", np.array(values, dtype=object if isinstance(fill, str) else np.int64),
                       {"long_name": long_name})
    layout = xr.Dataset(
        {FLAG: ("checkpoint", np.zeros(count, np.int8), {"long_name": "region written completely (1) or not (0)"}),
         ATTRS: ("checkpoint", np.full(count, "", dtype=object), {"long_name": "the analysis attrs (JSON)"})},
        coords=coords,
        attrs={**(attrs or {}), SWEEP_ATTR: json.dumps(specification, sort_keys=True)},
    )
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with _quiet():
            layout.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False,
                           encoding={FLAG: {"chunks": (1,)}, ATTRS: {"chunks": (1,)}})

    return replace_file(write, path)


def specification(path: str | os.PathLike) -> dict | None:
    """The sweep specification recorded at ``path``; None if there is no store; an error if it is
    another kind of store."""
    path = Path(path)
    if not path.exists():
        return None
    if not (path / "zarr.json").exists():
        raise InputError(f"{path} exists and is not a zarr store; choose another {{out}}", parameters=["out"])
    attrs = zarr.open_group(path, mode="r").attrs
    if SWEEP_ATTR not in attrs:
        raise InputError(f"{path} is a store of a single analysis, not a sweep; choose another {{out}}",
                         parameters=["out"])
    return json.loads(attrs[SWEEP_ATTR])


def completed(path: str | os.PathLike) -> np.ndarray:
    """Per checkpoint, whether its region was written completely."""
    with _quiet():
        return zarr.open_group(path, mode="r")[FLAG][:].astype(bool)


def is_complete(path: str | os.PathLike) -> bool:
    """Whether the sweep at ``path`` is finished (every region written and the store marked complete)."""
    return is_marked_complete(path)


def per_checkpoint(result: xr.Dataset) -> xr.Dataset:
    """``result`` with a leading ``checkpoint`` dimension of length 1 on every variable except the index
    coordinates; text as variable-length strings; its attrs as JSON in :data:`ATTRS`."""
    variables = {}
    for name, variable in result.variables.items():
        if name in result.indexes:
            continue
        values = variable.values
        if values.dtype.kind in "USO":
            values = values.astype(object)
        variables[name] = xr.Variable(("checkpoint", *variable.dims), values[None], variable.attrs)
    variables[ATTRS] = xr.Variable(("checkpoint",), np.array([json.dumps(result.attrs, default=_plain)], dtype=object))
    indexes = {name: result.variables[name] for name in result.indexes}
    for name, variable in indexes.items():  # text axes (split) as variable-length strings, like all text here
        if variable.dtype.kind in "US":
            indexes[name] = variable.copy(data=variable.values.astype(object))
    expanded = xr.Dataset(variables, coords=indexes)
    return expanded.set_coords([name for name in result.coords if name not in result.indexes])


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else str(value)


def _template(expanded: xr.Dataset, count: int) -> xr.Dataset:
    """Lazy, fill-valued copies of ``expanded``'s per-checkpoint variables at full length (chunks of 1)."""
    import dask.array as dask_array

    def fill(dtype):
        return "" if dtype.kind == "O" else np.nan if dtype.kind in "fc" else False if dtype.kind == "b" else 0

    def full(variable):
        shape = (count, *variable.shape[1:])
        if variable.dtype.kind == "O":  # text is small: written now (object dask arrays would be computed anyway)
            return np.full(shape, "", dtype=object)
        return dask_array.full(shape, fill(variable.dtype), dtype=variable.dtype, chunks=(1, *variable.shape[1:]))

    def lazy(variable):
        made = xr.Variable(variable.dims, full(variable), variable.attrs)
        if variable.dtype.kind == "O":  # numpy-backed text: chunks of one checkpoint too, or regions share a chunk
            made.encoding["chunks"] = (1, *variable.shape[1:])
        return made

    variables = {name: lazy(variable) for name, variable in expanded.variables.items()
                 if name not in expanded.indexes and name != ATTRS}
    template = xr.Dataset(variables, coords={name: expanded.variables[name] for name in expanded.indexes})
    return template.set_coords([name for name in expanded.coords if name in variables])


def _check_layout(path: Path, expanded: xr.Dataset, name: str) -> None:
    """An error naming the checkpoint if its result does not fit the variables already in the store."""
    group = zarr.open_group(path, mode="r")
    present = set(group.array_keys())
    missing = sorted(set(expanded.variables) - present)
    extra = sorted(key for key in present - set(expanded.variables) if key not in (FLAG, "checkpoint", *FACTS))
    if missing or extra:
        raise InputError(f"checkpoint {name} gives other results ({', '.join(missing or extra)}) than the sweep's "
                         "first checkpoint: sweep checkpoints of one kind (same family and options)")
    for index in expanded.indexes:
        stored = group[index][:]
        ours = expanded[index].values
        if stored.shape != ours.shape or not np.array_equal(stored.astype(ours.dtype), ours):
            raise InputError(f"checkpoint {name} gives a different {index!r} axis than the sweep's first "
                             f"checkpoint ({len(ours)} vs {len(stored)} values): sweep checkpoints of one kind")
    for variable in expanded.data_vars:
        if variable != ATTRS and tuple(group[variable].shape[1:]) != expanded[variable].shape[1:]:
            raise InputError(f"checkpoint {name} gives {variable} of another shape than the sweep's first checkpoint")


def write_region(path: str | os.PathLike, index: int, result: xr.Dataset, name: str, lock=None) -> None:
    """Write one checkpoint's ``result`` into region ``checkpoint = index``, then set its flag.

    ``lock`` (a context manager shared by all writers) guards the one-time creation of the result
    variables; the region itself is written outside it, since no other writer touches its chunks.
    """
    path = Path(path)
    expanded = per_checkpoint(result)
    group = zarr.open_group(path, mode="r")
    count = group["checkpoint"].shape[0]
    with lock if lock is not None else _no_lock():
        current = zarr.open_group(path, mode="r")
        if not set(expanded.data_vars) - {ATTRS} <= set(current.array_keys()):
            template = _template(expanded, count).assign_attrs(dict(current.attrs))  # to_zarr replaces the attrs
            with _quiet(), dask.config.set(scheduler="synchronous"):  # never the cluster this task runs on
                template.to_zarr(path, mode="a", compute=False, zarr_format=3, consolidated=False)
    with _quiet():
        _check_layout(path, expanded, name)
    region = expanded.drop_vars(list(expanded.indexes))
    with _quiet(), dask.config.set(scheduler="synchronous"):
        region.to_zarr(path, region={"checkpoint": slice(index, index + 1)}, mode="r+", zarr_format=3,
                       consolidated=False)
    zarr.open_group(path, mode="r+")[FLAG][index] = 1


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def finish(path: str | os.PathLike) -> None:
    """Mark a sweep whose regions are all written as complete: the attrs every checkpoint's result
    shares become the store's attrs, the metadata is consolidated, the completion mark set last."""
    with _quiet():
        _finish(Path(path))


def _finish(path: Path) -> None:
    group = zarr.open_group(path, mode="r+")
    if not group[FLAG][:].all():
        raise InputError(f"{path}: some checkpoints are not written yet; run the sweep again to finish them")
    attrs = [json.loads(text) for text in group[ATTRS][:]]
    shared = {key: value for key, value in attrs[0].items() if all(a.get(key) == value for a in attrs[1:])}
    for key in ("checkpoint", "checkpoint_sha256", "created", "command"):
        shared.pop(key, None)
    group.attrs.update(shared)
    mark_complete(path)  # chunk counts, store version, consolidated metadata; the completion mark last


def is_sweep(dataset: xr.Dataset) -> bool:
    """Whether ``dataset`` was read from a sweep store."""
    return SWEEP_ATTR in dataset.attrs and "checkpoint" in dataset.dims


def select(dataset: xr.Dataset, checkpoint: str | int) -> xr.Dataset:
    """One checkpoint's result from a sweep Dataset, by name or position: the Dataset the analysis
    returned for it (its own attrs, no ``checkpoint`` dimension)."""
    if not is_sweep(dataset):
        raise InputError("not a sweep: select() takes a Dataset opened from a store written by bp.sweep")
    names = [str(name) for name in dataset.checkpoint.values]
    if isinstance(checkpoint, str):
        if checkpoint not in names:
            raise InputError(f"no checkpoint {checkpoint!r} in this sweep; it has {', '.join(names)}")
        checkpoint = names.index(checkpoint)
    row = dataset.isel(checkpoint=checkpoint)
    attrs = json.loads(str(row[ATTRS].values))
    row = row.drop_vars([FLAG, ATTRS, "checkpoint", *FACTS], errors="ignore")
    for name, variable in list(row.variables.items()):
        if variable.dtype.kind in "OT" or str(variable.dtype).startswith("StringDType"):
            text = variable.copy(data=np.asarray(variable.values.tolist(), dtype=str))
            row = row.assign_coords({name: text}) if name in row.coords else row.assign({name: text})
    row.attrs = attrs
    return row


def split(dataset: xr.Dataset) -> dict[str, xr.Dataset]:
    """A sweep Dataset as one result Dataset per checkpoint name (see :func:`select`)."""
    return {str(name): select(dataset, i) for i, name in enumerate(dataset.checkpoint.values)}
