"""The format plug-in contract: what a checkpoint format must say and do to be loadable.

A format is a :class:`FormatEntrypoint` (as xarray's ``BackendEntrypoint``): it says whether it
can open a path (:meth:`~FormatEntrypoint.guess_can_open`, told from the contents, never from
the name alone) and opens it as a :class:`~biasprobe.denoiser.Denoiser`
(:meth:`~FormatEntrypoint.open_denoiser`) with the keyword ``options`` it declares and, for
files whose weights cannot reveal the whole architecture, the ``arch`` overrides it declares.
:func:`biasprobe.formats.load` asks the registered formats in ``priority`` order.

Both methods receive a :class:`Source`, which reads the file once, whatever number of formats
look at it: a state dict is unpickled with ``weights_only=True`` or read from safetensors.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.weights import read_safetensors, read_torch, safetensors_metadata


class Source:
    """A checkpoint path and its contents, read at most once (lazily) for every format that asks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def is_file_of_weights(self) -> bool:
        """A single ``.pt``/``.pth``/``.bin``/``.safetensors``-like file (not a folder)."""
        return self.path.is_file()

    @functools.cached_property
    def metadata(self) -> dict[str, str]:
        """The safetensors header metadata (empty for other files)."""
        return safetensors_metadata(self.path) if self.path.suffix == ".safetensors" else {}

    @functools.cached_property
    def contents(self) -> dict:
        """The file's dictionary: safetensors tensors, or a ``weights_only`` torch unpickling."""
        return read_safetensors(self.path) if self.path.suffix == ".safetensors" else read_torch(self.path)

    @functools.cached_property
    def state(self) -> dict:
        """:attr:`contents` with ``module.`` (``nn.DataParallel``) prefixes removed from its string keys."""
        return {k.removeprefix("module."): v for k, v in self.contents.items() if isinstance(k, str)}


class FormatEntrypoint(abc.ABC):
    """One checkpoint format. Subclass it in a module of :mod:`biasprobe.formats` (or register it
    under the ``biasprobe.formats`` entry-point group) and :func:`biasprobe.formats.load` finds it.

    Class attributes
    ----------------
    name: the format's identifier (``biasprobe info`` prints it; ``file_format`` in provenance).
    description: one line naming the files it reads, listed when no format recognises a path.
    options: the keyword options of :func:`~biasprobe.formats.load` that apply to it.
    arch_keys: the architecture facts ``arch={...}`` may set, for files that do not record them.
    priority: lower asks first (own formats before foreign ones, specific before general).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    arch_keys: ClassVar[tuple[str, ...]] = ()
    priority: ClassVar[int] = 50

    @abc.abstractmethod
    def guess_can_open(self, source: Source) -> bool:
        """Whether this format reads the checkpoint at ``source`` (cheap checks first)."""

    @abc.abstractmethod
    def open_denoiser(self, source: Source, *, arch: Mapping[str, Any], **options) -> Denoiser:
        """The checkpoint as a Denoiser (:func:`~biasprobe.formats.load` then records its path and
        format in :attr:`~biasprobe.denoiser.Denoiser.source`; the format sets its training metadata)."""

    def check_arch(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``arch`` as a dict, refused where it names a key this format does not take."""
        unknown = sorted(set(arch) - set(self.arch_keys))
        if unknown:
            accepted = f"it takes {', '.join(self.arch_keys)}" if self.arch_keys else "its files record it"
            raise InputError(
                f"architecture override {', '.join(unknown)} does not apply to {self.description} files: "
                f"{accepted}"
            )
        return dict(arch)

    def __repr__(self) -> str:
        return f"<format {self.name}>"
