"""Checkpoint formats as plug-ins: each module here defines its :class:`FormatEntrypoint`
(detection, loading, its own options and architecture overrides), and :func:`load` asks them in
turn. Adding a format is adding a module with a subclass of
:class:`~biasprobe.formats.base.FormatEntrypoint`; other packages register theirs under the
``biasprobe.formats`` entry-point group.

biasprobe's own format is such a plug-in too (:mod:`biasprobe.formats.native`); writing its files
is not the loader's business but :func:`biasprobe.checkpoints.save_checkpoint`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import os
import pkgutil
import warnings
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from biasprobe.denoiser import Denoiser
from biasprobe.errors import BiasprobeError, CheckpointError, InputError, UnrecognisedFileError
from biasprobe.formats.base import FormatEntrypoint, Source
from biasprobe.validation import check_weights

ENTRY_POINT_GROUP = "biasprobe.formats"
LOAD_OPTIONS_ALL = ("class_label", "image_size")
"""Every keyword option of :func:`load` some format takes (each format lists its own)."""


@functools.cache
def registry() -> dict[str, FormatEntrypoint]:
    """Every format by name, in the order :func:`load` asks them (``priority``, then name)."""
    found: list[FormatEntrypoint] = []
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found += [
            member() for member in vars(module).values()
            if inspect.isclass(member) and issubclass(member, FormatEntrypoint)
            and not inspect.isabstract(member) and member.__module__ == module.__name__
        ]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.append(entry.load()())
    names = [entry.name for entry in found]
    duplicated = {name for name in names if names.count(name) > 1}
    if duplicated:
        raise CheckpointError(f"more than one checkpoint format is named {', '.join(sorted(duplicated))}")
    return {entry.name: entry for entry in sorted(found, key=lambda entry: (entry.priority, entry.name))}


def supported() -> dict[str, str]:
    """One line per format: what it reads."""
    return {name: entry.description for name, entry in registry().items()}


def load_options() -> dict[str, tuple[str, ...]]:
    """The keyword options of :func:`load` that apply to each format (those with any)."""
    return {name: entry.options for name, entry in registry().items() if entry.options}


def _identify(path: Path) -> tuple[FormatEntrypoint, Source]:
    long = [part for part in path.parts if len(os.fsencode(part)) > 255]
    if long or not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: check the path" + (" (a name is over 255 bytes)" if long else ""))
    if not (path.is_dir() or path.is_file()):  # a named pipe or device would block or never end
        raise CheckpointError(f"{path} is not a regular file nor a folder (a pipe or device?); give a checkpoint file")
    source = Source(path)
    listing = "; ".join(supported().values())
    try:
        for entry in registry().values():
            if entry.guess_can_open(source):
                return entry, source
    except UnrecognisedFileError as err:
        raise UnrecognisedFileError(f"{err}. Supported: {listing}") from None
    raise UnrecognisedFileError(
        f"{path} is not a biasprobe checkpoint nor another format biasprobe recognises. Supported: {listing}"
    )


def detect_format(path: str | os.PathLike) -> str:
    """The name of the format at ``path`` (a key of :func:`registry`), told from its contents."""
    return _identify(Path(path))[0].name


def load(
    path: str | os.PathLike,
    device: str | None = None,
    *,
    arch: Mapping[str, Any] | None = None,
    **options: Any,
) -> Denoiser:
    """Load any supported checkpoint as a ready :class:`~biasprobe.denoiser.Denoiser` (eval mode).

    ``options`` are those of the file's format (``None`` values are ignored): ``class_label``
    conditions class-conditional models (DiT: default the null class, i.e. the unconditional
    model); ``image_size`` sets the side of the images a fully convolutional Kadkhodaie et al.
    network takes (default 80). ``arch`` gives the architecture facts a foreign file's weights do
    not show: ``heads`` (and ``num_classes``) of a facebookresearch DiT, ``first_layer_linear`` of
    a Kadkhodaie ``BF_CNN``, ``pooling`` of their ``UNet``.
    """
    path = Path(path)
    entry, source = _identify(path)
    given = {name: value for name, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(LOAD_OPTIONS_ALL) - set(entry.options))
    if unknown:
        raise InputError(f"load() got unknown options {', '.join(unknown)}")
    misplaced = [name for name in given if name not in entry.options]
    if misplaced:
        raise InputError(
            ", ".join("{" + name + "}" for name in misplaced) + f" does not apply to {entry.description} files",
            parameters=misplaced,
        )
    if source.is_file_of_weights:  # real, finite weights only, before any network is built
        check_weights(source.contents, path)
    try:
        with warnings.catch_warnings():  # a damaged file's empty layers: the loader's checks report them
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            denoiser = entry.open_denoiser(source, arch=dict(arch or {}), **given)
    except BiasprobeError:
        raise
    except Exception as err:  # noqa: BLE001 - an untrusted file can fail a format's loader in any way
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path} looks like a {entry.description} file but cannot be built from its contents ({reason}); "
            "the file is damaged, or give the architecture with {arch}",
            parameters=["arch"],
        ) from None
    network = getattr(denoiser, "network", None)
    if network is not None and not source.is_file_of_weights:  # folders (diffusers): checked once loaded
        check_weights(network.state_dict(), path)
    denoiser.source = dataclasses.replace(denoiser.source, path=str(path), format=entry.name)
    return denoiser.to(device) if device else denoiser


MOVED = {
    "Checkpoint": "biasprobe.checkpoints",
    "read_checkpoint": "biasprobe.checkpoints",
    "save_checkpoint": "biasprobe.checkpoints",
    "file_sha256": "biasprobe.denoiser",
}
"""Names this module exported before biasprobe's own file format became a plug-in like the others:
they keep working for one release, with a DeprecationWarning naming their new module."""


def moved(module: str, name: str, new_module: str):
    """``new_module.name``, with a DeprecationWarning that ``module.name`` is its old place."""
    warnings.warn(
        f"{module}.{name} moved to {new_module}.{name}; the old name goes in the next release",
        DeprecationWarning, stacklevel=3,
    )
    return getattr(importlib.import_module(new_module), name)


def __getattr__(name: str):
    if name == "SUPPORTED":
        return supported()
    if name == "LOAD_OPTIONS":
        return load_options()
    if name in MOVED:
        return moved(__name__, name, MOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SUPPORTED",
    "FormatEntrypoint",
    "Source",
    "detect_format",
    "load",
    "registry",
]
