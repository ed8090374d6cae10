"""The format plug-in for biasprobe's own checkpoints (``.pt`` and ``.safetensors``). The files
themselves, their writing and reading, are :mod:`biasprobe.checkpoints`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from biasprobe.checkpoints import FORMAT_NAME, read_checkpoint
from biasprobe.denoiser import NetworkDenoiser
from biasprobe.formats.base import FormatEntrypoint, Source

_MOVED = ("Checkpoint", "save_checkpoint", "read_checkpoint", "check_header", "network_denoiser",
          "NATIVE_CONVENTIONS", "SUFFIXES", "FORMAT_VERSION", "MAX_FILE_BYTES", "SHARDS_KEY")


def __getattr__(name: str):
    """Names that lived here before the file format moved to :mod:`biasprobe.checkpoints`."""
    if name in _MOVED:
        from biasprobe.formats import moved

        return moved(__name__, name, "biasprobe.checkpoints")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BiasprobeTorch(FormatEntrypoint):
    """biasprobe's own ``.pt`` checkpoints (a dict with ``format = "biasprobe"``)."""

    name = "biasprobe-pt"
    description = "biasprobe checkpoint (.pt, written by `biasprobe new` / `biasprobe train`)"
    priority = 10

    def guess_can_open(self, source: Source) -> bool:
        return (source.is_file_of_weights and source.path.suffix != ".safetensors"
                and source.contents.get("format") == FORMAT_NAME)

    def open_denoiser(self, source: Source, *, arch: Mapping[str, Any]) -> NetworkDenoiser:
        self.check_arch(arch)
        return read_checkpoint(source.path).build()


class BiasprobeSafetensors(BiasprobeTorch):
    """biasprobe's own ``.safetensors`` checkpoints (``format = "biasprobe"`` in the header metadata)."""

    name = "biasprobe-safetensors"
    description = "biasprobe checkpoint (.safetensors with biasprobe metadata)"

    def guess_can_open(self, source: Source) -> bool:
        return source.is_file_of_weights and FORMAT_NAME in source.metadata
