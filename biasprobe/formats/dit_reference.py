"""facebookresearch/DiT ``.pt`` files: released weights and ``train.py`` checkpoints.

A released file (``DiT-XL-2-256x256.pt``) is the model's state dict; a ``train.py`` checkpoint is
``{"model", "ema", "opt", "args"}``, of which the EMA weights are taken (else ``model``) and
``args`` (an ``argparse.Namespace``) names the model. Depth, width, patch size, latent size,
channels, MLP ratio, class count and ``learn_sigma`` are read off the weight shapes; the head
count, which no shape shows, comes from ``args.model`` or the released configurations' widths.

DiTs are latent-space models: the Denoiser takes (C, H/8, W/8) latents of the Stable Diffusion
autoencoder (already multiplied by its 0.18215 scaling), as they are (native range ``"unit"``),
so σ is in latent units. They predict ε under the linear schedule of 1000 steps, β from 1e-4 to
0.02; only the ε half of a learned-variance output is used.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from typing import Any

from biasprobe.denoiser import CheckpointSource, NetworkDenoiser
from biasprobe.errors import CheckpointError, InputError
from biasprobe.formats.base import FormatEntrypoint, Source
from biasprobe.models.dit_reference import ClassConditionalDiT
from biasprobe.schedules import Schedule
from biasprobe.weights import load_strictly

HEADS_BY_SIZE = {"S": 6, "B": 12, "L": 16, "XL": 16}
"""Heads of the released DiT-S, -B, -L and -XL."""
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16}
"""The same, by their widths."""
SCHEDULE = Schedule("linear", 1000, 1e-4, 0.02)
LATENT_SCALING = 0.18215
"""Factor the DiT code applies to the autoencoder's latents before diffusion."""
REQUIRED_KEYS = ("x_embedder.proj.weight", "y_embedder.embedding_table.weight", "pos_embed")


def model_state(data: dict) -> tuple[str, dict] | None:
    """Which weights of a loaded file are the DiT's (``"ema"``, else ``"model"``, else the file's
    own state dict) and those weights, ``module.`` prefixes removed; None if the file is no DiT."""
    source = next((key for key in ("ema", "model") if isinstance(data.get(key), dict)), None)
    weights = data[source] if source else data
    state = {k.removeprefix("module."): v for k, v in weights.items() if isinstance(k, str)}
    return (source or "state dict", state) if all(key in state for key in REQUIRED_KEYS) else None


def _heads(width: int, args) -> int:
    """The head count: from ``args.model`` (``DiT-XL/2``), else from a released model's width."""
    name = getattr(args, "model", None)
    found = re.fullmatch(r"DiT-(S|B|L|XL)/\d+", name) if isinstance(name, str) else None
    if found:
        return HEADS_BY_SIZE[found.group(1)]
    if width in HEADS_BY_WIDTH:
        return HEADS_BY_WIDTH[width]
    raise CheckpointError(
        f"cannot tell the attention heads of a DiT of width {width}: the file names no model (args.model) "
        f"and the width is none of the released ones {sorted(HEADS_BY_WIDTH)}; give the head count "
        "with {arch} (heads=N)",
        parameters=["arch"],
    )


def dit_config(state: dict, args=None, arch: Mapping[str, Any] | None = None) -> dict:
    """ClassConditionalDiT keywords read off the weight shapes (and ``args`` for heads and classes);
    ``arch`` gives the facts the file does not record (``heads``, ``num_classes``)."""
    arch = dict(arch or {})
    width, channels, patch, _ = state["x_embedder.proj.weight"].shape
    tokens = state["pos_embed"].shape[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise CheckpointError(f"the DiT position embedding has {tokens} tokens, not a square grid")
    out_channels = state["final_layer.linear.weight"].shape[0] // patch**2
    if out_channels not in (channels, 2 * channels):
        raise CheckpointError(f"the DiT outputs {out_channels} channels for {channels} input channels")
    rows = state["y_embedder.embedding_table.weight"].shape[0]
    num_classes = int(arch.get("num_classes", getattr(args, "num_classes", rows - 1)))  # released models: label dropout 0.1
    if rows not in (num_classes, num_classes + 1):
        raise CheckpointError(f"the DiT label table has {rows} rows for {num_classes} classes")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    return {
        "input_size": grid * patch,
        "in_channels": channels,
        "patch_size": patch,
        "depth": depth,
        "width": width,
        "heads": _check_heads(int(arch["heads"]), width) if "heads" in arch else _heads(width, args),
        "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / width,
        "num_classes": num_classes,
        "null_class": rows == num_classes + 1,
        "learn_sigma": out_channels == 2 * channels,
    }


def _check_heads(heads: int, width: int) -> int:
    if heads < 1 or width % heads:
        raise InputError("{arch} " + f"heads={heads} does not divide the DiT's width {width}", parameters=["arch"])
    return heads


def load_dit(
    data: dict, *, class_label: int | None = None, arch: Mapping[str, Any] | None = None
) -> NetworkDenoiser:
    """An ε-prediction latent Denoiser from a loaded DiT file, conditioned on ``class_label``
    (default: the null class, i.e. the unconditional model); ``arch`` as in :func:`dit_config`."""
    source, state = model_state(data)
    args = data.get("args") if isinstance(data.get("args"), argparse.Namespace) else None
    config = dit_config(state, args, arch)
    network = load_strictly(ClassConditionalDiT(**config, class_label=class_label), state, "DiT")
    channels, size = config["in_channels"], config["input_size"]
    info = {
        "family": network.family,
        "config": config,
        "latent_scaling": LATENT_SCALING,
        "class_label": network.class_label,
        "weights": source,
    }
    return NetworkDenoiser(
        network,
        (channels, size, size),
        parameterization="eps",
        native_range="unit",
        conditioning="timestep",
        schedule=SCHEDULE,
        output_channels=channels,
        space="latent",
        source=CheckpointSource(training=dict(vars(args)) if args is not None else {}),
        info=info,
    )


class DiTReference(FormatEntrypoint):
    """facebookresearch/DiT ``.pt`` files (released weights or ``train.py`` checkpoints)."""

    name = "dit-pt"
    description = "facebookresearch DiT .pt (released weights, or a train.py checkpoint with model/ema/args)"
    options = ("class_label",)
    arch_keys = ("heads", "num_classes")
    priority = 30

    def guess_can_open(self, source: Source) -> bool:
        return source.is_file_of_weights and model_state(source.contents) is not None

    def open_denoiser(self, source: Source, *, arch: Mapping[str, Any], class_label=None):
        return load_dit(source.contents, class_label=class_label, arch=self.check_arch(arch))
