"""Encoding pictures into the latents of a latent-space denoiser (DiT) with a diffusers ``AutoencoderKL``.

A latent model's Denoiser takes latents ``z = scaling · E(x)`` where ``x`` is the picture in
[-1, 1] (diffusers' pixel convention), ``E(x)`` the mean of the autoencoder's posterior and
``scaling`` the ``scaling_factor`` of the VAE config (0.18215 for the Stable Diffusion VAE that
DiT uses, and the default when the config names none). The mean, not a sample, so that the
latents of an image are deterministic.

The VAE folder is read like any diffusers model folder: diffusers builds the network from
``config.json`` and biasprobe reads the weights itself (safetensors, or ``.bin`` through the
weights-only reader), without network access. A pipeline folder with a ``vae/`` component works too.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from biasprobe.errors import CheckpointError, InputError

DEFAULT_SCALING = 0.18215
"""The Stable Diffusion VAE's latent scaling, used when the config has no ``scaling_factor``."""


class LatentEncoder:
    """A loaded ``AutoencoderKL`` and its latent scaling: pictures in [0, 1] → scaled latents."""

    def __init__(self, vae: torch.nn.Module, scaling: float, path: str = ""):
        self.vae = vae.eval()
        self.scaling = float(scaling)
        self.path = path
        config = vae.config
        self.factor = 2 ** (len(config["block_out_channels"]) - 1)
        self.latent_channels = int(config["latent_channels"])
        self.image_channels = int(config["in_channels"])

    def image_shape(self, latent_shape: Sequence[int]) -> tuple[int, int, int]:
        """The (C, H, W) of the pictures whose latents have ``latent_shape``; an error if the channels differ."""
        channels, height, width = latent_shape
        if channels != self.latent_channels:
            raise InputError(
                f"the VAE at {self.path} makes {self.latent_channels}-channel latents; the denoiser takes {channels}"
            )
        return (self.image_channels, height * self.factor, width * self.factor)

    def to(self, device: str | torch.device | None) -> LatentEncoder:
        if device is not None:
            self.vae.to(device)
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Latents (B, C, H/f, W/f) of (B, C, H, W) pictures in [0, 1]: posterior mean × scaling, on the CPU."""
        if images.ndim == 3:
            images = images[None]
        device = next(self.vae.parameters()).device
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device=device, dtype=torch.float32)
            posterior = self.vae.encode(batch * 2 - 1).latent_dist
            out.append((posterior.mean * self.scaling).float().cpu())
        return torch.cat(out)


def _vae_folder(path: Path) -> Path:
    from biasprobe.formats.diffusers import read_config

    if not path.is_dir():
        raise InputError("{vae} " + f"needs a diffusers AutoencoderKL folder; {path} is not a folder",
                         parameters={"vae": "the autoencoder"})
    index = read_config(path / "model_index.json")
    if index is not None:
        if "vae" not in index:
            raise InputError(f"pipeline {path} has no vae component")
        path = path / "vae"
    config = read_config(path / "config.json")
    if config is None:
        raise InputError(f"{path} is not an AutoencoderKL folder (no diffusers config.json)")
    if config.get("_class_name") != "AutoencoderKL":
        raise InputError(f"{path} holds a diffusers {config.get('_class_name')}, not an AutoencoderKL")
    return path


def load_vae(path: str | os.PathLike, device: str | torch.device | None = None) -> LatentEncoder:
    """Load a diffusers ``AutoencoderKL`` folder (or a pipeline's ``vae/``) safely: config, then weights
    read weights-only and loaded strictly."""
    from biasprobe.formats.diffusers import read_config, read_model_weights
    from biasprobe.weights import load_strictly

    folder = _vae_folder(Path(path))
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise CheckpointError("{vae} needs the diffusers package: pip install 'biasprobe[diffusers]'",
                              parameters={"vae": "the autoencoder"}) from None
    config = read_config(folder / "config.json")
    accepted = inspect.signature(AutoencoderKL.__init__).parameters
    try:
        vae = AutoencoderKL.from_config({k: v for k, v in config.items() if k in accepted})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{folder}: cannot build an AutoencoderKL from its config: {err}") from None
    vae = load_strictly(vae, read_model_weights(folder), "diffusers AutoencoderKL")
    scaling = config.get("scaling_factor")
    return LatentEncoder(vae, DEFAULT_SCALING if scaling is None else scaling, str(path)).to(device)


def encode_images(
    vae: str | os.PathLike | LatentEncoder,
    paths: Sequence[str | os.PathLike],
    latent_shape: Sequence[int],
    resize: bool = False,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Read pictures at the VAE's size for ``latent_shape`` (f× each side; ``resize`` to resample) and
    encode them: (B, C, H, W) latents, already multiplied by the VAE's scaling factor."""
    from biasprobe.images import read_image

    encoder = vae if isinstance(vae, LatentEncoder) else load_vae(vae, device)
    shape = encoder.image_shape(latent_shape)
    target = f"the VAE ({encoder.factor}× the denoiser's {latent_shape[1]}×{latent_shape[2]} latents)"
    pictures = torch.stack([read_image(path, shape, resize=resize, target=target) for path in paths])
    return encoder.encode(pictures)


__all__ = ["DEFAULT_SCALING", "LatentEncoder", "encode_images", "load_vae"]
