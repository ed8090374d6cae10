"""The network families biasprobe builds and trains, by registry name.

Every model stores ``model.config``, a JSON-serialisable dict of all its constructor keywords,
so that ``build_model(model.family, **model.config)`` rebuilds it; ``model.conditioning`` is
``"none"`` for blind denoisers called as ``model(y)`` and ``"timestep"`` for ``model(x, t)``.
"""

from __future__ import annotations

import copy
import inspect

from torch import nn

from biasprobe.errors import InputError, ParameterError
from biasprobe.models.attention import (
    ATTENTION_KERNELS,
    GridAttention,
    attention_modules,
    attention_switched,
    explicit_math,
    set_attention_kernel,
    window_mask,
)
from biasprobe.models.dit import DiT
from biasprobe.models.unet_bf import BiasFreeBatchNorm, BiasFreeUNet
from biasprobe.models.unet_ddpm import DDPMUNet
from biasprobe.validation import count

__all__ = [
    "ATTENTION_KERNELS",
    "FAMILIES",
    "PRESETS",
    "BiasFreeBatchNorm",
    "BiasFreeUNet",
    "DDPMUNet",
    "DiT",
    "GridAttention",
    "attention_modules",
    "attention_switched",
    "build_model",
    "forward_flops",
    "preset_config",
    "set_attention_kernel",
    "window_mask",
]

FAMILIES: dict[str, type[nn.Module]] = {"unet-bf": BiasFreeUNet, "unet-ddpm": DDPMUNet, "dit": DiT}

PRESETS: dict[str, dict[str, dict]] = {
    "unet-bf": {
        # Kadkhodaie et al.'s default: receptive field 90×90.
        "default": {"num_blocks": 3, "base_width": 64},
        # The shipped zoo's size: 0.46M parameters, receptive field large enough for 32×32 images.
        "small": {"num_blocks": 2, "base_width": 32},
        "tiny": {"num_blocks": 2, "base_width": 8, "num_enc_conv": 1, "num_mid_conv": 1, "num_dec_conv": 1},
    },
    "unet-ddpm": {
        # Close to the improved-DDPM CIFAR-10 model.
        "default": {
            "base_width": 128,
            "channel_mult": [1, 2, 2, 2],
            "num_res_blocks": 2,
            "attention_resolutions": [16],
            "dropout": 0.1,
        },
        # The paper zoo's baseline (issue 16): FLOPs per forward matched to DiT "zoo" (4.84 against 4.43
        # GFLOP at 32×32 grey by forward_flops; 4.66 without its attention products) with 6.7M parameters, so that seven fit the zoo's size budget (13 MB each
        # in bfloat16). Three levels at constant width 96, three residual blocks per level.
        "zoo": {
            "base_width": 96,
            "channel_mult": [1, 1, 1],
            "num_res_blocks": 3,
            "attention_resolutions": [16],
            "dropout": 0.1,
        },
        # Attention at image_size // 2 for the default image_size of 32.
        "tiny": {
            "base_width": 16,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_resolutions": [16],
        },
    },
    "dit": {
        "xs": {"depth": 12, "width": 252, "heads": 4, "patch_size": 1},
        # The paper zoo's size (issue 16): the paper's patch-1, 12-layer adaLN DiT (1024 tokens at 32×32)
        # at width 64 (2 heads of 32): 4.43 GFLOP per forward at 32×32 grey, 0.93M parameters (1.9 MB in
        # bfloat16), so that the zoo's 19 DiTs fit its size budget and train in a few 30-minute GPU
        # sessions; the DDPM UNet "zoo" preset matches its FLOPs. See docs/zoo.md.
        "zoo": {"depth": 12, "width": 64, "heads": 2, "patch_size": 1},
        # The pilot's size (docs/zoo.md): width 128, 11.3 GFLOP, 3.6M parameters.
        "zoo128": {"depth": 12, "width": 128, "heads": 2, "patch_size": 1},
        # Zoo v2's pilot widths (issue 26, docs/zoo.md "Zoo v2 pilot"): heads of 64 as in zoo128; width 256
        # with 4 heads is DiT-XS/1 at an aligned width (14 M parameters, ~32 GFLOP per forward at 32×32 grey).
        "zoo192": {"depth": 12, "width": 192, "heads": 3, "patch_size": 1},
        "zoo256": {"depth": 12, "width": 256, "heads": 4, "patch_size": 1},
        "s": {"depth": 12, "width": 384, "heads": 6, "patch_size": 1},
        # The shipped zoo's size: 12 layers like the paper's, 0.93M parameters, 16×16 tokens at 32×32.
        "small": {"depth": 12, "width": 64, "heads": 4, "patch_size": 2},
        "tiny": {"depth": 4, "width": 32, "heads": 2, "patch_size": 2},
    },
}


def _family(family: str) -> type[nn.Module]:
    if family not in FAMILIES:
        raise InputError(f"unknown model family {family!r}; known families: {', '.join(FAMILIES)}")
    return FAMILIES[family]


def build_model(family: str, **config) -> nn.Module:
    """A freshly initialised network of ``family`` with constructor keywords ``config``."""
    cls = _family(family)
    keywords = inspect.signature(cls).parameters
    unknown = sorted(set(config) - set(keywords))
    if unknown:
        raise InputError(
            f"unknown keywords for {family}: {', '.join(unknown)}; it takes {', '.join(keywords)}"
        )
    return cls(**config)


def preset_config(family: str, preset: str) -> dict:
    """A copy of the constructor keywords of a named preset (the rest take their defaults)."""
    _family(family)
    presets = PRESETS[family]
    if preset not in presets:
        raise InputError(f"unknown preset {preset!r} for {family}; known presets: {', '.join(presets)}")
    return copy.deepcopy(presets[preset])


PRESET_IMAGE_SIZE = 32
"""Presets are stated for 32×32 images; the DDPM UNet's attention resolutions scale with the size."""


def from_preset(
    family: str,
    preset: str | None = None,
    *,
    image_size: int = PRESET_IMAGE_SIZE,
    channels: int | None = None,
    windows: list[int] | None = None,
    qk_norm: bool = False,
) -> tuple[nn.Module, tuple[int, int, int]]:
    """A fresh network from a preset, and the (C, H, W) images it takes.

    ``channels`` defaults to 1 for the bias-free UNet and 3 otherwise. ``windows`` (DiT only) gives
    the k×k attention windows of the first layers; the remaining layers stay global. ``qk_norm`` (DiT only)
    RMS-normalises every head's queries and keys (:class:`~biasprobe.models.dit.DiT`).
    """
    cls = _family(family)
    config = preset_config(family, preset or next(iter(PRESETS[family])))
    channels = count((1 if family == "unet-bf" else 3) if channels is None else channels, "channels", maximum=4096)
    image_size = count(image_size, "image_size", maximum=1 << 14)
    factor = 2 ** config.get("num_blocks", 0)
    if image_size % factor:
        raise ParameterError(
            "image_size", f"must be a multiple of {factor} for this {family} (2^num_blocks), got {image_size}"
        )
    accepted = inspect.signature(cls).parameters
    config.update({k: v for k, v in {"image_size": image_size, "channels": channels}.items() if k in accepted})
    if "attention_resolutions" in config:
        config["attention_resolutions"] = [r * image_size // PRESET_IMAGE_SIZE for r in config["attention_resolutions"]]
    if windows:
        if "windows" not in accepted:
            raise InputError(f"attention windows apply to dit only, not {family}")
        if len(windows) > config["depth"]:
            raise InputError(f"{len(windows)} windows given for a {config['depth']}-layer DiT")
        config["windows"] = list(windows) + [None] * (config["depth"] - len(windows))
    if qk_norm:
        if "qk_norm" not in accepted:
            raise InputError(f"query-key normalisation applies to dit only, not {family}")
        config["qk_norm"] = True
    return build_model(family, **config), (channels, image_size, image_size)


def forward_flops(network: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass of ``network`` on one image of ``image_shape`` (C, H, W).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (a multiply-add is 2 FLOPs) on a copy
    built on the ``meta`` device: no weights are copied and nothing is computed. Attention runs its
    explicit path, so the counter sees its two products, QKᵀ and PV: 4·T²·w per layer over T tokens
    of width w (the fused kernels hide them from the counter). A layer with a k×k window counts as
    the dense product it masks: the cost of the explicit and SDPA paths (block-sparse FlexAttention
    skips whole blocks outside the windows, so it runs fewer).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        copy_ = build_model(network.family, **network.config).eval()
        image = torch.zeros((1, *image_shape))
        inputs = (image,) if network.conditioning == "none" else (image, torch.zeros(1))
    with torch.no_grad(), explicit_math(attention_modules(copy_).values()), FlopCounterMode(display=False) as counter:
        copy_(*inputs)
    return int(counter.get_total_flops())
