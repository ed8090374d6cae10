"""Checks of what users hand to biasprobe, one function per kind of input, each failing with one line.

Numeric arguments (:func:`count`, :func:`number`, :func:`numbers`) raise
:class:`~biasprobe.errors.ParameterError` naming the parameter; output paths (:func:`output_file`,
:func:`output_folder`, :func:`output_figure`) are checked before any work starts; weights
(:func:`check_weights`) must be real and finite. Images live in :mod:`biasprobe.images`, stores
in :mod:`biasprobe.store`, checkpoint headers in :mod:`biasprobe.checkpoints`.
"""

from __future__ import annotations

import math
import numbers as _numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from biasprobe.errors import CheckpointError, ParameterError

NAME_MAX = 255
"""Longest file name (bytes) on common file systems."""
PATH_MAX = 4096
"""Longest path (bytes) Linux accepts."""


def count(value, parameter: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]; booleans, fractions and NaN are refused."""
    if isinstance(value, bool) or not isinstance(value, _numbers.Integral):
        if isinstance(value, _numbers.Real) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise ParameterError(parameter, f"must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ParameterError(parameter, f"must be {bound}, got {value}")
    return value


def number(
    value,
    parameter: str,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """``value`` as a finite float (``positive``: > 0; else within [minimum, maximum] when given)."""
    if isinstance(value, bool) or not isinstance(value, _numbers.Real):
        raise ParameterError(parameter, f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ParameterError(parameter, f"must be a finite number, got {value}")
    if positive and value <= 0:
        raise ParameterError(parameter, f"must be positive, got {value:g}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "-inf" if minimum is None else f"{minimum:g}"
        high = "inf" if maximum is None else f"{maximum:g}"
        raise ParameterError(parameter, f"must lie in [{low}, {high}], got {value:g}")
    return value


def numbers(values: Iterable, parameter: str, **bounds) -> list[float]:
    """A non-empty list of :func:`number` values."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        values = [values]
    values = list(values)
    if not values:
        raise ParameterError(parameter, "needs at least one value")
    checked = []
    for value in values:
        try:
            checked.append(number(value, parameter, **bounds))
        except ParameterError as err:
            raise ParameterError(parameter, f"{err.problem} (in {values})") from None
    return checked


# ---------------------------------------------------------------------------------------------- weights


def check_weights(state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Refuse weights a network cannot run faithfully: complex values (the imaginary part would be
    dropped on loading), non-numeric tensors, and NaN or infinite values. Nested dictionaries (a
    training checkpoint's ``model`` and ``ema``) are searched too; other values are ignored."""
    for name, tensor in state.items():
        if isinstance(tensor, Mapping):
            check_weights(tensor, source)
        if not isinstance(tensor, torch.Tensor):
            continue
        if tensor.is_complex():
            raise CheckpointError(f"{source}: weight {name!r} is complex ({tensor.dtype}); networks take real weights")
        if tensor.is_floating_point():
            if tensor.numel() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(
                    f"{source}: weight {name!r} holds NaN or infinite values; the model diverged or the file "
                    "is damaged (use an earlier checkpoint)"
                )
        elif tensor.dtype not in _INTEGER_DTYPES:
            raise CheckpointError(f"{source}: weight {name!r} has dtype {tensor.dtype}, not a number type")


_INTEGER_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


# ---------------------------------------------------------------------------------------------- outputs


def check_path_length(path: Path, parameter: str) -> None:
    """A path the file system can take: no name over :data:`NAME_MAX` bytes, the whole under :data:`PATH_MAX`."""
    if len(os.fsencode(str(path.absolute()))) > PATH_MAX:
        raise ParameterError(parameter, f"path is longer than {PATH_MAX} bytes; choose a shorter one")
    long = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if long:
        raise ParameterError(
            parameter, f"has a name of {len(os.fsencode(long[0]))} bytes (at most {NAME_MAX}); choose a shorter one"
        )


def writable_parent(path: Path, parameter: str) -> None:
    """The folder that will hold ``path`` is, or can be made, a writable folder."""
    check_path_length(path, parameter)
    ancestor = path.absolute().parent
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise ParameterError(parameter, f"{ancestor} is a broken link; fix it or choose another path")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ParameterError(parameter, f"cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ParameterError(parameter, f"cannot be written: no permission to write in {ancestor}")


def output_file(
    path: str | os.PathLike,
    parameter: str,
    *,
    suffixes: Iterable[str] | None = None,
    overwrite: bool = True,
) -> Path:
    """Check that a file can be written at ``path`` before any work starts.

    ``suffixes`` lists the accepted extensions; an existing file is refused unless ``overwrite``,
    and a folder or other non-file at ``path`` always.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise ParameterError(parameter, "is empty; give a file name")
    check_path_length(path, parameter)
    if suffixes is not None:
        suffixes = list(suffixes)
        if path.suffix.lower() not in suffixes:
            raise ParameterError(
                parameter, f"must end in {' or '.join(suffixes)}, got {path.name!r}"
            )
    if path.exists() or path.is_symlink():
        if path.is_dir():
            raise ParameterError(parameter, f"{path} is a folder; give a file name inside it")
        if not path.is_file():
            raise ParameterError(parameter, f"{path} is not a regular file; choose another path")
        if not overwrite:
            raise ParameterError(parameter, f"{path} exists; choose another path or set {{overwrite}} to replace it")
        if not os.access(path, os.W_OK):
            raise ParameterError(parameter, f"{path} exists and is read-only")
    writable_parent(path, parameter)
    return path


def output_folder(path: str | os.PathLike, parameter: str) -> Path:
    """Check that ``path`` is, or can be created as, a writable folder."""
    path = Path(path)
    check_path_length(path, parameter)
    if path.exists() and not path.is_dir():
        raise ParameterError(parameter, f"{path} is a file, not a folder; choose another path")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ParameterError(parameter, f"cannot be written: no permission to write in {path}")
        return path
    writable_parent(path, parameter)
    return path


def figure_suffixes() -> list[str]:
    """The file extensions matplotlib can draw figures to (``.png``, ``.pdf``, ``.svg``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(f".{suffix}" for suffix in FigureCanvasBase.get_supported_filetypes())


def output_figure(path: str | os.PathLike, parameter: str = "figure") -> Path:
    """Check a figure path: a format matplotlib writes, not a folder, in a writable place."""
    return output_file(path, parameter, suffixes=figure_suffixes())
