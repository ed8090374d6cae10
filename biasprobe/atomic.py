"""Hidden sibling files for atomic writes, and the clean-up of those a killed writer left behind.

A writer of ``NAME`` works in ``.NAME.KIND-PID-HEX`` beside it (KIND ``tmp`` or ``old``) and renames
it into place; a leftover whose process ``PID`` no longer runs belongs to a killed writer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

KINDS = ("tmp", "old")


def sibling(path: Path, kind: str) -> Path:
    """A fresh hidden sibling of ``path`` for this process (``kind`` one of :data:`KINDS`)."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def leftovers(path: Path, kind: str) -> list[Path]:
    """The hidden ``kind`` siblings of ``path`` whose writers no longer run."""
    prefix = f".{path.name}.{kind}-"
    try:
        found = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []
    return [p for p in found if not _alive(p.name[len(prefix):])]


def _alive(token: str) -> bool:
    """Whether the process named by ``token`` (``PID-HEX``) still runs on this machine."""
    try:
        os.kill(int(token.split("-")[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove(leftover: Path) -> None:
    """Delete a leftover file or folder, ignoring one that is already gone."""
    if leftover.is_dir() and not leftover.is_symlink():
        shutil.rmtree(leftover, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            leftover.unlink()


def replace_file(write, path: Path) -> Path:
    """Write a file atomically: ``write(tmp)`` into a hidden sibling, then rename it onto ``path``.

    Every atomic write of biasprobe goes through here (a folder store's two-rename swap aside:
    :mod:`biasprobe.store`). ``write`` may also make a folder at ``tmp``, renamed onto a ``path``
    where nothing is. Leftovers of killed writers of ``path`` are removed first; ``tmp`` never
    outlives the call."""
    for leftover in leftovers(path, "tmp"):
        remove(leftover)
    tmp = sibling(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        remove(tmp)
    return path
