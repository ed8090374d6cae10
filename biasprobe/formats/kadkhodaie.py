"""``model.pt`` files of Kadkhodaie, Guth, Simoncelli & Mallat's released code.

Their training script saves ``model.state_dict()`` of an ``nn.DataParallel`` (keys prefixed
``module.``) of either the bias-free ``UNet`` or the flat ``BF_CNN``; the architecture's
hyper-parameters are not saved, so they are read off the key names and weight shapes; the two
facts no weight shows are given with ``arch``: ``first_layer_linear`` of a ``BF_CNN`` (default
True, the authors' default) and ``pooling`` of a ``UNet`` (default ``"avg"``). Both are
blind, bias-free and residual on [0, 1] images. Their size is not fixed by the weights: the
Denoiser takes ``image_size`` × ``image_size`` images (default :data:`DEFAULT_IMAGE_SIZE`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from biasprobe.denoiser import NetworkDenoiser
from biasprobe.errors import CheckpointError, InputError
from biasprobe.formats.base import FormatEntrypoint, Source
from biasprobe.models.bf_cnn import BiasFreeCNN
from biasprobe.models.unet_bf import BiasFreeUNet
from biasprobe.weights import load_strictly, tensors_only

DEFAULT_IMAGE_SIZE = 80
"""The authors' CelebA images are 80×80; any size works (a multiple of 2^num_blocks for the UNet)."""

FORMATS = {"kadkhodaie-unet": BiasFreeUNet, "kadkhodaie-bf-cnn": BiasFreeCNN}


def detect(state: dict) -> str | None:
    """``"kadkhodaie-unet"``, ``"kadkhodaie-bf-cnn"`` or None, from the (unprefixed) key names."""
    if "encoder.0.0.weight" in state and "mid_block.0.weight" in state:
        return "kadkhodaie-unet"
    if "conv_layers.0.weight" in state and not any(k.startswith("encoder.") for k in state):
        return "kadkhodaie-bf-cnn"
    return None


def _conv_weights(state: dict, prefix: str) -> list[torch.Tensor]:
    """The 4-D weights directly under ``prefix`` (``prefix{i}.weight``) in index order."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    found = {int(m.group(1)): v for k, v in state.items() if (m := pattern.match(k)) and v.ndim == 4}
    return [found[i] for i in sorted(found)]


def unet_config(state: dict) -> dict:
    """BiasFreeUNet keywords of a ``UNet`` state dict."""
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("encoder.")})
    first = state["encoder.0.0.weight"]
    if any(k.endswith(".bias") for k in state):
        raise CheckpointError(
            "this UNet has convolution biases (trained with bias=True); biasprobe reads bias-free ones"
        )
    return {
        "channels": first.shape[1],
        "num_blocks": len(blocks),
        "base_width": first.shape[0],
        "kernel_size": first.shape[-1],
        "num_enc_conv": len(_conv_weights(state, "encoder.0.")),
        "num_mid_conv": len(_conv_weights(state, "mid_block.")),
        "num_dec_conv": len(_conv_weights(state, "decoder.0.")),
    }


def bf_cnn_config(state: dict) -> dict:
    """BiasFreeCNN keywords of a ``BF_CNN`` state dict."""
    convs = _conv_weights(state, "conv_layers.")
    channels = convs[0].shape[1]
    if convs[-1].shape[0] != channels:
        raise CheckpointError(
            f"this BF_CNN maps {channels} to {convs[-1].shape[0]} channels (a wavelet-conditional, non-coarse"
            " BF_CNN_RF?); biasprobe reads only denoisers whose output has the input's channels"
        )
    return {"channels": channels, "width": convs[0].shape[0], "kernel_sizes": [w.shape[-1] for w in convs]}


def load_kadkhodaie(
    file_format: str,
    state: dict[str, torch.Tensor],
    *,
    image_size: int | None = None,
    arch: Mapping[str, Any] | None = None,
) -> NetworkDenoiser:
    """A blind residual denoiser on [0, 1] images of side ``image_size`` from a ``model.pt`` state dict;
    ``arch`` sets what the weights do not show (``first_layer_linear`` or ``pooling``)."""
    network_class = FORMATS[file_format]
    config = unet_config(state) if network_class is BiasFreeUNet else bf_cnn_config(state)
    config.update(arch or {})
    network = load_strictly(network_class(**config), state, f"Kadkhodaie et al. {network_class.__name__}")
    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    factor = 2 ** config.get("num_blocks", 0)
    if size < 1 or size % factor:
        raise InputError(f"image_size must be a positive multiple of {factor} for this network, got {size}")
    info = {
        "family": network_class.family,
        "config": network.config,
        "source": "Kadkhodaie et al. model.pt",
    }
    return NetworkDenoiser(
        network, (config["channels"], size, size), parameterization="residual", native_range="unit", info=info
    )


class KadkhodaieUNet(FormatEntrypoint):
    """Kadkhodaie et al.'s bias-free ``UNet`` ``model.pt``."""

    name = "kadkhodaie-unet"
    description = "Kadkhodaie et al. bias-free UNet model.pt (state dict, `module.` prefix allowed)"
    options = ("image_size",)
    arch_keys = ("pooling",)
    priority = 40

    def guess_can_open(self, source: Source) -> bool:
        return source.is_file_of_weights and detect(source.state) == self.name

    def open_denoiser(self, source: Source, *, arch: Mapping[str, Any], image_size=None):
        arch = self.check_arch(arch)
        if "pooling" in arch and arch["pooling"] not in ("avg", "max"):
            raise InputError("{arch} " + f"pooling must be avg or max, got {arch['pooling']!r}", parameters=["arch"])
        if "first_layer_linear" in arch and not isinstance(arch["first_layer_linear"], bool):
            raise InputError("{arch} " + f"first_layer_linear must be true or false, got {arch['first_layer_linear']!r}",
                             parameters=["arch"])
        state = tensors_only(source.state, source.path)
        return load_kadkhodaie(self.name, state, image_size=image_size, arch=arch)


class KadkhodaieBFCNN(KadkhodaieUNet):
    """Kadkhodaie et al.'s flat ``BF_CNN`` ``model.pt``."""

    name = "kadkhodaie-bf-cnn"
    description = "Kadkhodaie et al. BF_CNN model.pt (state dict, `module.` prefix allowed)"
    arch_keys = ("first_layer_linear",)
