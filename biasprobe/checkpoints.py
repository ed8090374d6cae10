"""biasprobe's own checkpoint files, as ``.pt`` or ``.safetensors``: the one place they are
written (:func:`save_checkpoint`, used by training and ``biasprobe new``) and read
(:func:`read_checkpoint`). Loading goes through the format plug-in
:mod:`biasprobe.formats.native` like any other format; nothing here is the loader's business.

A ``.pt`` checkpoint is a dictionary of plain data and tensors, read with
``torch.load(weights_only=True)`` so that no code from the file ever runs::

    {"format": "biasprobe", "format_version": 1,
     "family": "dit", "config": {...model keywords...}, "image_shape": [C, H, W],
     "denoiser": {"parameterization": "eps", "native_range": "signed",
                  "conditioning": "timestep", "schedule": {...} or None},
     "training": {...data set, N, steps, seed...},
     "state_dict": {name: tensor}}

A ``.safetensors`` checkpoint holds the state dict as tensors and everything else as JSON
under the metadata key ``"biasprobe"``; one larger than 16 MiB is sharded (:func:`save_checkpoint`),
its main file listing the shards under ``"biasprobe_shards"``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from biasprobe.atomic import replace_file
from biasprobe.denoiser import (
    CONDITIONINGS,
    NATIVE_RANGES,
    PARAMETERIZATIONS,
    CheckpointSource,
    NetworkDenoiser,
)
from biasprobe.errors import CheckpointError
from biasprobe.models import FAMILIES, build_model
from biasprobe.schedules import Schedule
from biasprobe.validation import check_weights, output_file
from biasprobe.weights import read_safetensors, read_torch, safetensors_metadata

FORMAT_NAME = "biasprobe"
FORMAT_VERSION = 1

NATIVE_CONVENTIONS: dict[str, dict] = {
    "unet-bf": {"parameterization": "residual", "native_range": "unit", "conditioning": "none", "schedule": None},
    "unet-ddpm": {"parameterization": "eps", "native_range": "signed", "conditioning": "timestep",
                  "schedule": Schedule().to_dict()},
    "dit": {"parameterization": "eps", "native_range": "signed", "conditioning": "timestep",
            "schedule": Schedule().to_dict()},
}


@dataclass
class Checkpoint:
    """The contents of a biasprobe checkpoint, before the network is built."""

    family: str
    config: dict
    image_shape: tuple[int, int, int]
    state_dict: dict[str, torch.Tensor]
    denoiser: dict
    training: dict = field(default_factory=dict)

    @classmethod
    def from_network(
        cls, network: torch.nn.Module, image_shape, training: dict | None = None, **conventions
    ) -> Checkpoint:
        """A checkpoint of ``network`` with its family's default conventions, overridable."""
        denoiser = {**NATIVE_CONVENTIONS[network.family], **conventions}
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        shape = tuple(int(s) for s in image_shape)
        return cls(network.family, dict(network.config), shape, state, denoiser, dict(training or {}))

    def header(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "family": self.family,
                "config": self.config, "image_shape": list(self.image_shape), "denoiser": self.denoiser, "training": self.training}

    def build(self, info: dict | None = None) -> NetworkDenoiser:
        """Instantiate the network, load the weights strictly and wrap it as a Denoiser.

        The architecture is first built on PyTorch's ``meta`` device (no memory), and must match
        the weights' names and shapes before the real network is built, so that a damaged config
        can neither exhaust memory nor load half."""
        if self.family not in FAMILIES:
            raise CheckpointError(f"unknown model family {self.family!r}; known: {', '.join(FAMILIES)}")
        _check_config(self.config)
        with torch.device("meta"):
            skeleton = _built(self.family, self.config)
        self._check_against(skeleton.state_dict())
        check_weights(self.state_dict, "the checkpoint")
        _check_image_shape(self.family, self.config, self.image_shape)
        network = _built(self.family, self.config)
        network.load_state_dict(self.state_dict)
        network.eval()
        info = {"family": self.family, "config": self.config, **(info or {})}
        return network_denoiser(network, self.image_shape, self.denoiser, info, CheckpointSource(training=self.training))

    def _check_against(self, expected: dict) -> None:
        """The weights have exactly the names and shapes of ``expected``."""
        missing = sorted(set(expected) - set(self.state_dict))
        extra = sorted(set(self.state_dict) - set(expected))
        if missing or extra:
            raise CheckpointError(
                f"weights do not match the {self.family} architecture in the file's config "
                f"(missing {len(missing)} keys such as {missing[:3]}, unexpected {len(extra)} such as {extra[:3]}); "
                "the file is damaged or was written by other code"
            )
        wrong = [k for k, v in self.state_dict.items() if v.shape != expected[k].shape]
        if wrong:
            raise CheckpointError(
                f"weight {wrong[0]!r} has shape {tuple(self.state_dict[wrong[0]].shape)}, the config needs "
                f"{tuple(expected[wrong[0]].shape)} ({len(wrong)} mismatched); the file is damaged"
            )


MAX_CONFIG_INTEGER = 1 << 20
"""Config integers above this (about a million) are taken as damage: no sensible network has them."""


def _check_config(config: dict) -> None:
    """Keys are names and values plain, bounded data (a guard before anything is built from them)."""
    for key, value in config.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if not isinstance(key, str) or len(values) > 10_000:
            raise CheckpointError(f"the checkpoint config has an invalid entry {str(key)[:40]!r}; the file is damaged")
        for item in values:
            if item is not None and not isinstance(item, (bool, int, float, str)):
                raise CheckpointError(f"config {key} holds a {type(item).__name__}; the file is damaged")
            if isinstance(item, (int, float)) and not isinstance(item, bool) and abs(item) > MAX_CONFIG_INTEGER:
                raise CheckpointError(f"config {key} = {item} is implausibly large; the file is damaged")


def _built(family: str, config: dict) -> torch.nn.Module:
    """``build_model(family, **config)``, any failure of a damaged config as a CheckpointError."""
    try:
        with warnings.catch_warnings():  # a damaged config's empty layers: the shape check reports them
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            return build_model(family, **config)
    except Exception as err:  # noqa: BLE001 - an untrusted config can fail a constructor in any way
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"the checkpoint has an invalid {family} config ({reason}); the file is damaged") from None


def _check_image_shape(family: str, config: dict, image_shape) -> None:
    """The recorded image shape is one the network takes: its channels, its size, its divisibility."""
    channels, height, width = image_shape
    if config.get("channels", channels) != channels:
        raise CheckpointError(
            f"the header's image shape {tuple(image_shape)} has {channels} channels but the {family} "
            f"network takes {config['channels']}; the file is damaged"
        )
    size = config.get("image_size")
    if size is not None and (height, width) != (size, size):
        raise CheckpointError(
            f"the header's image shape {tuple(image_shape)} is not the network's {size}×{size}; the file is damaged"
        )
    if family == "unet-bf":
        factor = 2 ** config.get("num_blocks", 3)
        if height % factor or width % factor:
            raise CheckpointError(
                f"the header's image shape {tuple(image_shape)} has sides not divisible by {factor}, which "
                "this bias-free UNet needs; the file is damaged"
            )


def network_denoiser(
    network: torch.nn.Module,
    image_shape,
    conventions: dict,
    info: dict | None = None,
    source: CheckpointSource | None = None,
):
    """Wrap ``network`` as a Denoiser under the conventions recorded in a checkpoint."""
    schedule = Schedule(**conventions["schedule"]) if conventions.get("schedule") else None
    return NetworkDenoiser(
        network,
        image_shape,
        parameterization=conventions["parameterization"],
        native_range=conventions["native_range"],
        conditioning=conventions["conditioning"],
        schedule=schedule,
        output_channels=image_shape[0],
        source=source,
        info=info,
    )


MAX_FILE_BYTES = 16 * 2**20
"""Largest file a ``.safetensors`` checkpoint is written as; larger state dicts are sharded."""

SHARDS_KEY = "biasprobe_shards"
"""Metadata key of a sharded checkpoint's main file: the JSON list of its sibling shard files."""

SUFFIXES = (".pt", ".pth", ".safetensors")
"""The file names biasprobe writes checkpoints to: PyTorch (.pt, .pth) or safetensors containers."""


def save_checkpoint(
    checkpoint: Checkpoint, path: str | os.PathLike, *, dtype: torch.dtype | None = None,
    max_file_bytes: int = MAX_FILE_BYTES, overwrite: bool = True,
) -> Path:
    """Write ``checkpoint`` atomically; the suffix (.pt, .pth or .safetensors) picks the container.

    An existing file at ``path`` is replaced only with ``overwrite``. ``dtype`` (e.g.
    ``torch.bfloat16``) stores floating-point tensors in that type; they load back into the
    network's own precision. A ``.safetensors`` checkpoint larger than ``max_file_bytes`` is split:
    ``path`` holds the header and the first tensors, and lists its sibling shards
    ``STEM.shard-I-of-K.safetensors`` (written first, so ``path`` never names missing shards).
    """
    path = output_file(path, "path", suffixes=SUFFIXES, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
             for k, v in checkpoint.state_dict.items()}
    metadata = {FORMAT_NAME: json.dumps(checkpoint.header())}
    if path.suffix != ".safetensors":
        return replace_file(lambda tmp: torch.save({**checkpoint.header(), "state_dict": state}, tmp), path)
    from safetensors.torch import save_file

    parts = _split(state, max_file_bytes - len(metadata[FORMAT_NAME]) - 2**16)
    shards = [f"{path.stem}.shard-{i + 2}-of-{len(parts)}.safetensors" for i in range(len(parts) - 1)]
    for name, part in zip(shards, parts[1:]):
        replace_file(lambda tmp, part=part: save_file(part, tmp), path.with_name(name))
    if shards:
        metadata[SHARDS_KEY] = json.dumps(shards)
    replace_file(lambda tmp: save_file(parts[0], tmp, metadata=metadata), path)
    for stale in path.parent.glob(f"{path.stem}.shard-*-of-*.safetensors"):
        if stale.name not in shards:
            stale.unlink(missing_ok=True)
    return path


def _split(state: dict[str, torch.Tensor], budget: int) -> list[dict[str, torch.Tensor]]:
    """Consecutive groups of tensors of at most ``budget`` bytes each (a larger tensor alone)."""
    parts: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if parts[-1] and size + nbytes > budget:
            parts.append({})
            size = 0
        parts[-1][name] = tensor.contiguous()
        size += nbytes
    return parts


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a biasprobe checkpoint without running any code from it."""
    path = Path(path)
    header, state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    check_header(header, path)
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path} has no valid state dict; the file is damaged")
    check_weights(state, path)
    return Checkpoint(header["family"], header["config"], tuple(header["image_shape"]), state,
                      header["denoiser"], header.get("training") or {})


def check_header(header, path) -> None:
    """Refuse a header that is not a complete, well-typed biasprobe header of a version this code reads."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a biasprobe checkpoint (its header is not a biasprobe one)")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(
            f"{path} records its format version as {version!r}, not a whole number; the file is damaged or was "
            "edited by hand"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has biasprobe format version {version}; this biasprobe reads up to version "
            f"{FORMAT_VERSION}: upgrade biasprobe"
        )
    if version < 1:
        raise CheckpointError(f"{path} has format version {version}, which no biasprobe wrote; the file is damaged")
    fields = {"family": str, "config": dict, "image_shape": list, "denoiser": dict}
    wrong = [k for k, kind in fields.items() if not isinstance(header.get(k), kind)]
    if wrong:
        raise CheckpointError(f"{path} lacks valid checkpoint fields {wrong}; the file is damaged")
    shape = header["image_shape"]
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 1 << 16 for s in shape):
        raise CheckpointError(f"{path} has image_shape {shape}, not three positive sizes (C, H, W); the file is damaged")
    conventions = header["denoiser"]
    allowed = {"parameterization": PARAMETERIZATIONS, "native_range": tuple(NATIVE_RANGES),
               "conditioning": CONDITIONINGS}
    for key, choices in allowed.items():
        if conventions.get(key) not in choices:
            raise CheckpointError(
                f"{path} has denoiser {key} {conventions.get(key)!r}, not one of {', '.join(choices)}; the file is damaged"
            )
    schedule = conventions.get("schedule")
    if schedule is not None:
        try:
            Schedule(**schedule)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path} has an invalid noise schedule ({err}); the file is damaged") from None
    if not isinstance(header.get("training") or {}, dict):
        raise CheckpointError(f"{path} has training metadata of type {type(header['training']).__name__}; "
                              "the file is damaged")


def _read_torch(path: Path) -> tuple[dict, dict]:
    data = read_torch(path)
    header = {k: v for k, v in data.items() if k != "state_dict"}
    return header, data.get("state_dict")


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    metadata = safetensors_metadata(path)
    try:
        header = json.loads(metadata[FORMAT_NAME])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is a safetensors file without biasprobe metadata") from None
    state = read_safetensors(path)
    for name in json.loads(metadata.get(SHARDS_KEY, "[]")):
        shard = path.with_name(name)
        if not shard.is_file():
            raise CheckpointError(f"{path} is sharded but its shard {name} is missing: copy all its files together")
        state.update(read_safetensors(shard))
    return header, state

