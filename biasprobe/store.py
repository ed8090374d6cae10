"""Analysis results as xarray Datasets on zarr v3 stores, written atomically with provenance.

A store takes one of two forms, chosen by its name: a folder (``NAME.zarr``, zarr's directory
layout: one file per chunk) or a single file (``NAME.zarr.zip``: the same layout packed, uncompressed,
into a zip archive, which ``zarr.storage.ZipStore`` reads; :data:`SINGLE_FILE_SUFFIX`). Both hold
the same arrays and attributes and carry the same :data:`STORE_VERSION`; :func:`open` reads either,
:func:`pack` turns a folder into the single file. Plain xarray opens a folder with
``xr.open_zarr(path)`` and a single file with ``xr.open_zarr(zarr.storage.ZipStore(path, mode="r"))``.

A store's root attributes are the Dataset's (provenance and results) plus :data:`VERSION_KEY`; the
completion mark lives in the attributes of the child group :data:`MARK_GROUP`, which xarray does not
show as part of the Dataset (store version 2). Stores of version 1 kept the mark in the root attributes
(:data:`COMPLETE_MARK`); they are read as before.

A folder store: :func:`save` writes into a hidden sibling folder ``.NAME.tmp-TOKEN``, marks it complete as the
very last write (the mark lists how many chunk files each variable has), consolidates its
metadata, and only then swaps it in: the old store is renamed to ``.NAME.old-TOKEN``, the new one
onto the target, and the old one removed. The swap holds a lock on the parent folder, so
concurrent writers to one path take turns (the last one wins) instead of failing.

A run killed at any step leaves either the old store or the new one: if it dies between the two
renames, the next :func:`save` or :func:`open` of that path finishes the swap (the complete new
store, else the old one), and leftovers of dead writers are removed.

A single-file store is written as a folder store in a hidden sibling, packed into a second hidden
sibling file, and renamed onto the target (:func:`biasprobe.atomic.replace_file`): one rename, so a
run killed at any step leaves the old file or the new one.

:func:`save` never replaces what it did not write: a folder (or file) at the target that is not a
biasprobe store (and not empty) is refused unless ``overwrite=True``.

(About 450 lines: both forms, their atomic writes and their readers share one contract, the
completion mark, and are tested together.)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import stat
import sys
import warnings
import zipfile
from pathlib import Path

import xarray as xr

from biasprobe import atomic
from biasprobe.errors import InputError, OutputError, ParameterError

VERSION_KEY = "biasprobe_store_version"
"""Root attribute: the store layout version, written from the first write on (so a store of a newer
layout is recognised as biasprobe's, and refused with "upgrade biasprobe", by any version)."""
STORE_VERSION = 2
"""The store layout this biasprobe writes and the newest it reads (the arrays, attributes and marks
inside a store: the same in the folder and the single-file form). 2: the completion mark in
:data:`MARK_GROUP`; 1: in the root attributes."""
MARK_GROUP = "_biasprobe"
"""The child group whose attributes hold biasprobe's bookkeeping (store version 2 on)."""
MARK_KEY = "complete"
"""The completion mark, written last: the attribute of :data:`MARK_GROUP` ``{array path: number of chunk
files}`` (``True`` for a store without arrays)."""
COMPLETE_MARK = "biasprobe_complete"
"""The completion mark of store version 1 (and stores from before :data:`VERSION_KEY`): a root attribute."""
ROOT_MARK_VERSION = 1
"""The last store version whose completion mark is the root attribute :data:`COMPLETE_MARK`."""
SINGLE_FILE_SUFFIX = ".zip"
"""The last suffix of a single-file store's name (``NAME.zarr.zip``); any other name is a folder store."""


def is_single_file(path: str | os.PathLike) -> bool:
    """Whether a store at ``path`` takes the single-file form (by its name: ``NAME.zarr.zip``)."""
    return Path(path).suffix == SINGLE_FILE_SUFFIX


def store_exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a zarr store of either form (complete or not; :func:`check_store` says which)."""
    path = Path(path)
    if is_single_file(path):
        return path.is_file()
    return (path / "zarr.json").is_file()


def provenance(
    *,
    denoiser=None,
    checkpoint: str | os.PathLike | None = None,
    seed: int | None = None,
    device: str | None = None,
    command: str | None = None,
) -> dict:
    """The provenance attrs every store carries (plain JSON-able values)."""
    from biasprobe.version import __version__
    from biasprobe.denoiser import file_sha256

    attrs = {
        "biasprobe_version": __version__,
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if checkpoint is not None:
        attrs["checkpoint"] = str(checkpoint)  # as given (relative to where the command ran) ...
        attrs["checkpoint_resolved"] = str(Path(checkpoint).resolve())  # ... and wherever that was
        attrs["checkpoint_sha256"] = file_sha256(checkpoint)
    if denoiser is not None:
        attrs["architecture"] = json.dumps(denoiser.describe(), default=str)
    if seed is not None:
        attrs["seed"] = int(seed)
    if device is not None:
        attrs["device"] = str(device)
    return attrs


# ------------------------------------------------------------------------------------------ checks


def _files(path: Path) -> dict[str, callable] | None:
    """The files of the store at ``path`` (a folder, or a single zip file), relative POSIX name -> a
    function that reads it; None when ``path`` holds neither."""
    if path.is_dir():
        return {f.relative_to(path).as_posix(): f.read_bytes for f in path.rglob("*") if f.is_file()}
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (OSError, zipfile.BadZipFile):
        return None

    def reader(name: str):
        def read() -> bytes:
            with zipfile.ZipFile(path) as archive:
                return archive.read(name)
        return read

    return {name: reader(name) for name in names}


def _root_attributes(path: Path, group: str = "") -> dict | None:
    """The attributes of the root group of the zarr store at ``path`` (or of its child ``group``), or None
    if it holds no readable zarr.json there."""
    name = f"{group}/zarr.json" if group else "zarr.json"
    try:
        if path.is_dir():
            raw = (path / name).read_bytes()
        else:
            with zipfile.ZipFile(path) as archive:
                raw = archive.read(name)
        metadata = json.loads(raw)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    attributes = metadata.get("attributes") if isinstance(metadata, dict) else None
    return attributes if isinstance(attributes, dict) else {}


def _store_version(attributes: dict):
    """The store version recorded in root ``attributes`` (as recorded: checked by :func:`check_store`);
    :data:`ROOT_MARK_VERSION` for a store from before :data:`VERSION_KEY` that has the root mark; None if
    neither is there (not biasprobe's, or interrupted before its first write)."""
    return attributes.get(VERSION_KEY, ROOT_MARK_VERSION if COMPLETE_MARK in attributes else None)


def _completion_mark(path: Path, version: int):
    """The completion mark of the store of ``version`` at ``path`` (None when it has none): in the root
    attributes up to :data:`ROOT_MARK_VERSION`, else in :data:`MARK_GROUP`'s."""
    if version <= ROOT_MARK_VERSION:
        return (_root_attributes(path) or {}).get(COMPLETE_MARK)
    return (_root_attributes(path, MARK_GROUP) or {}).get(MARK_KEY)


def is_marked_complete(path: str | os.PathLike) -> bool:
    """Whether the store at ``path`` carries a completion mark (of a version this biasprobe reads); the
    chunk files it lists are checked by :func:`check_store`."""
    path = Path(path)
    version = _store_version(_root_attributes(path) or {})
    if isinstance(version, bool) or not isinstance(version, int) or version > STORE_VERSION:
        return False
    return bool(_completion_mark(path, version))


def is_biasprobe_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a store biasprobe wrote (complete or region-written in place)."""
    attributes = _root_attributes(Path(path))
    return attributes is not None and (COMPLETE_MARK in attributes or VERSION_KEY in attributes)


def check_output(path: str | os.PathLike, overwrite: bool = False, parameter: str = "path") -> Path:
    """Check, before any work, that a store may be written at ``path``: nothing there, an empty
    folder, or a store biasprobe wrote; anything else only with ``overwrite``."""
    from biasprobe.validation import check_path_length, writable_parent

    path = Path(path)
    check_path_length(path, parameter)
    try:  # one lstat, not exists() then is_dir(): a concurrent writer may swap the store in between
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: a file on the way (writable_parent says so)
        mode = None
    if mode is not None:
        single = is_single_file(path)
        if single and not stat.S_ISREG(mode):
            raise ParameterError(parameter, f"{path} exists and is not a store file; choose another path")
        if not single and not stat.S_ISDIR(mode):
            raise ParameterError(parameter, f"{path} exists and is not a store folder; choose another path")
        if not overwrite and _has_files(path) and not is_biasprobe_store(path):
            what = "a file" if single else "files"
            raise ParameterError(
                parameter,
                f"{path} holds {what} biasprobe did not write; choose another path or set {{overwrite}} "
                f"to replace the {'file' if single else 'folder'}",
            )
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ParameterError(parameter, f"cannot be written: no permission to write in {path.parent}")
    writable_parent(path, parameter)
    return path


def _has_files(path: Path) -> bool:
    """Whether the folder at ``path`` holds anything, or the file at ``path`` is not empty."""
    try:
        return any(path.iterdir()) if path.is_dir() else path.stat().st_size > 0
    except FileNotFoundError:  # swapped away by a concurrent writer: nothing of a user's is there
        return False


def _chunk_counts(path: Path) -> dict[str, int]:
    """For each array of the store at ``path`` (either form), the number of files besides its metadata."""
    files = _files(path) or {}
    counts = {}
    for name, read in files.items():
        if name.rsplit("/", 1)[-1] != "zarr.json":
            continue
        try:
            node = json.loads(read())
        except (OSError, ValueError):
            continue
        if isinstance(node, dict) and node.get("node_type") == "array":
            folder = name[: -len("zarr.json")]  # "" for an array at the root, else "NAME/"
            counts[folder.rstrip("/")] = sum(1 for other in files if other.startswith(folder)
                                             and other.rsplit("/", 1)[-1] != "zarr.json")
    return counts


def check_store(path: str | os.PathLike) -> dict:
    """The root attributes of a complete biasprobe store at ``path``; a one-line error for a missing,
    foreign, interrupted, newer or damaged store."""
    path = Path(path)
    if is_single_file(path) and path.is_dir():
        raise InputError(f"{path} is a folder; a store named .zip is a single file: rename the folder (.zarr)")
    if path.is_file() and not is_single_file(path):
        raise InputError(f"{path} is a file, not a biasprobe store: give a store that an analysis wrote (a .zarr "
                         "folder or a .zarr.zip file: jacobian, locality, gap, ...)")
    if not (path.is_file() if is_single_file(path) else (path / "zarr.json").exists()):
        raise InputError(f"no biasprobe store at {path}: run an analysis with --out {path} first")
    attributes = _root_attributes(path)
    if attributes is None:
        where = f"{path}'s zarr.json" if is_single_file(path) else f"{path}/zarr.json"
        raise InputError(f"{where} is unreadable; the store is damaged: run the analysis again")
    version = _store_version(attributes)
    if version is None:
        raise InputError(
            f"{path} is not a biasprobe store (an incomplete one, or written by other software): run the "
            "analysis again, or open it with xarray.open_zarr"
        )
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"{path} records its store format version as {version!r}, not a whole number; the store is damaged")
    if version > STORE_VERSION:
        raise InputError(
            f"{path} was written by a newer biasprobe (store format {version}; this one reads up to "
            f"{STORE_VERSION}): upgrade biasprobe"
        )
    expected = _completion_mark(path, version)
    if not expected:
        raise InputError(f"{path} is an incomplete store (its writer was interrupted); run the analysis again")
    if isinstance(expected, dict):
        found = _chunk_counts(path)
        lost = {name: count - found.get(name, 0) for name, count in expected.items() if found.get(name, 0) < count}
        if lost:
            name, missing = next(iter(lost.items()))
            raise InputError(
                f"{path} is missing {sum(lost.values())} chunk files ({missing} of {name!r}"
                f"{' and others' if len(lost) > 1 else ''}); the store is damaged: run the analysis again"
            )
    return attributes


# --------------------------------------------------------------------------------- the atomic swap


def _step(name: str) -> None:
    """A point between two steps of :func:`save`; the kill tests stop the process here."""


@contextlib.contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder`` (flock on the folder itself: no lock file is left behind)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _recover(path: Path) -> None:
    """Finish a swap a killed writer left half done, and remove the leftovers of dead writers.

    Call with the parent's lock held."""
    dead = {kind: atomic.leftovers(path, kind) for kind in atomic.KINDS}
    if not path.exists():
        # a complete leftover of the target's form (a folder, or a whole packed file) takes its place
        whole = lambda p: p.is_dir() != is_single_file(path) and is_marked_complete(p)
        complete = [p for p in dead["tmp"] if whole(p)]
        previous = [p for p in dead["old"] if whole(p)]
        chosen = max(complete or previous, key=lambda p: p.stat().st_mtime, default=None)
        if chosen is not None:
            os.replace(chosen, path)
    for leftover in dead["tmp"] + dead["old"]:
        if leftover.exists():
            atomic.remove(leftover)


def mark_complete(path: str | os.PathLike) -> None:
    """Write the completion mark (the chunk-file count of every array, in the attributes of the child
    group :data:`MARK_GROUP`) and consolidate the metadata, so that :func:`open` accepts the store and plain
    ``xarray.open_zarr`` reads it without a warning (and without the mark among the Dataset's attributes).
    Sweeps that fill a store region by region call this once every region is written."""
    path = Path(path)
    import zarr  # here, not at the top: training and the analyses run where zarr is not installed

    counts = _chunk_counts(path) or True  # before the mark's group exists (it has no chunks either way)
    group = zarr.open_group(path, mode="r+")
    attributes = {key: value for key, value in group.attrs.asdict().items() if key != COMPLETE_MARK}
    group.attrs.put({**attributes, VERSION_KEY: STORE_VERSION})  # one write; a version-1 mark is dropped
    group.require_group(MARK_GROUP).attrs[MARK_KEY] = counts  # the mark last
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        zarr.consolidate_metadata(path, zarr_format=3)


def save(dataset: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``dataset`` to a zarr v3 store at ``path``, replacing any biasprobe store there atomically.

    The form follows the name: a single file for ``NAME.zarr.zip`` (:data:`SINGLE_FILE_SUFFIX`), else
    a folder. A folder or file at ``path`` that biasprobe did not write is replaced only with
    ``overwrite=True``.
    """
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = dataset.copy()
    dataset.attrs.pop(COMPLETE_MARK, None)  # a version-1 mark of a store read with plain xarray
    dataset.attrs[VERSION_KEY] = STORE_VERSION  # from the first write on, the folder is known as biasprobe's
    dataset.attrs.setdefault("created", provenance()["created"])
    with _locked(path.parent):
        _recover(path)
    tmp, old = atomic.sibling(path, "tmp"), atomic.sibling(path, "old")
    try:
        with warnings.catch_warnings():  # text variables (verdicts, names) lack a settled zarr v3 dtype spec
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
            dataset.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        _step("written")
        mark_complete(tmp)
        _step("marked")
        with _locked(path.parent):
            _recover(path)
            _refuse_if_filled(path, overwrite)
            if is_single_file(path):
                atomic.replace_file(lambda packed: _pack_folder(tmp, packed), path)
            else:
                if path.exists():
                    os.replace(path, old)
                _step("moved-old")
                os.replace(tmp, path)
        _step("moved-new")
    finally:
        atomic.remove(tmp)
        atomic.remove(old)
    _step("removed-old")
    return path


def pack(path: str | os.PathLike, target: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
    """Write the complete folder store at ``path`` as a single-file store at ``target`` (default: its name
    plus ``.zip``), atomically; the folder stays. The arrays, attributes and provenance are copied byte
    for byte: :func:`open` gives the same Dataset from either."""
    path = Path(path)
    if is_single_file(path) or not path.is_dir():
        raise InputError(f"{path} is not a folder store; pack takes a NAME.zarr folder written by biasprobe")
    check_store(path)
    target = check_output(path.with_name(path.name + SINGLE_FILE_SUFFIX) if target is None else target,
                          overwrite, "target")
    if not is_single_file(target):
        raise ParameterError("target", f"{target} does not end in {SINGLE_FILE_SUFFIX}, the single-file form's name")
    with _locked(target.parent):
        _recover(target)
        _refuse_if_filled(target, overwrite)
        atomic.replace_file(lambda packed: _pack_folder(path, packed), target)
    return target


def _refuse_if_filled(path: Path, overwrite: bool) -> None:
    """Refuse to replace what something else put at ``path`` while a store was being written."""
    if path.exists() and not overwrite and _has_files(path) and not is_biasprobe_store(path):
        raise OutputError(f"{path} was filled by something else while this store was written; nothing was replaced")


def _pack_folder(folder: Path, target: Path) -> None:
    """The files of the folder store ``folder`` into the zip file ``target``: stored (chunks are compressed
    already), in name order, with a fixed date, so that the same store gives the same bytes."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            info = zipfile.ZipInfo(file.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.read_bytes())
    _step("packed")


def _loaded(dataset: xr.Dataset, path: Path) -> xr.Dataset:
    """``dataset`` read into memory; a chunk that its codec cannot decode (a truncated or altered file)
    is an :class:`~biasprobe.errors.InputError` naming the variable, not the codec's own exception."""
    try:
        return dataset.load()
    except Exception as err:  # noqa: BLE001 - a damaged chunk fails its decompressor in any way
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__

        def fails(name: str) -> bool:
            try:
                dataset[name].load()
            except Exception:  # noqa: BLE001 - as above
                return True
            return False

        broken = next((str(name) for name in dataset.variables if fails(name)), "a variable")
        raise InputError(f"{path} is damaged: the data of {broken} cannot be read ({reason}); run the analysis "
                         "again") from None


def open(path: str | os.PathLike) -> xr.Dataset:
    """Open a complete store written by :func:`save` (either form), fully loaded into memory."""
    path = Path(path)
    if path.parent.is_dir() and os.access(path.parent, os.W_OK):
        with _locked(path.parent):
            _recover(path)
    check_store(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        if is_single_file(path):
            from zarr.storage import ZipStore

            archive = ZipStore(path, mode="r")
            try:
                with xr.open_zarr(archive, zarr_format=3, consolidated=None) as dataset:
                    dataset = _loaded(dataset, path)
            finally:
                archive.close()
        else:
            with xr.open_zarr(path, zarr_format=3, consolidated=None) as dataset:
                dataset = _loaded(dataset, path)
    for key in (COMPLETE_MARK, VERSION_KEY):
        dataset.attrs.pop(key, None)
    return dataset
