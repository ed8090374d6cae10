"""Option parsing shared by the commands: devices, number lists, windows, the result store
(``--out``), and the model options (``--class-label``, ``--vae``) of the commands that read images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import torch
import typer

import biasprobe as bp
from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError

ClassLabel = Annotated[
    int | None,
    typer.Option(
        "--class-label",
        help="Class of a class-conditional model (DiT .pt, diffusers DiT); default its null class "
        "(unconditional).",
    ),
]
ImageSize = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        help="Image side for fully convolutional foreign nets (Kadkhodaie et al. model.pt; default 80).",
    ),
]
Vae = Annotated[
    Path | None,
    typer.Option(
        "--vae",
        help="diffusers AutoencoderKL folder: latent models (DiT) get the --image pictures encoded to "
        "latents (posterior mean × scaling_factor); pictures must be the VAE's factor (8) × the latent "
        "size, or --resize.",
    ),
]


def store_option(analysis: str):
    """The ``--out`` option of a command whose results go to a zarr store (see :func:`default_store`)."""
    return Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=f"zarr store for the results (default: NAME.{analysis}.zarr in the current folder, NAME "
            "the checkpoint's file stem or folder name).",
        ),
    ]


def default_store(checkpoint: Path, analysis: str) -> Path:
    """Where an analysis of ``checkpoint`` goes without ``--out``: NAME.ANALYSIS.zarr in the current
    folder, so that read-only checkpoint folders (the shipped zoo) work and nothing lands beside them."""
    name = checkpoint.name if checkpoint.is_dir() else checkpoint.stem
    return Path(f"{name}.{analysis}.zarr")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(device)


def parse_numbers(text: str | None, name: str, kind=float) -> list | None:
    """'0.05,0.2' -> [0.05, 0.2]; None stays None."""
    if text is None:
        return None
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--{name} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise InputError(f"--{name} is empty")
    return values


def parse_windows(text: str | None) -> list[int]:
    """'3,5,7' -> [3, 5, 7]; each must be a positive odd integer."""
    windows = parse_numbers(text, "windows", int) or []
    bad = [w for w in windows if w < 1 or w % 2 == 0]
    if bad:
        raise InputError(f"attention windows must be positive odd integers, got {bad}")
    return windows


def load_model(
    checkpoint: Path, device: str, class_label: int | None = None, image_size: int | None = None
) -> Denoiser:
    """``bp.load`` with the device, ``--class-label`` and ``--image-size`` (errors for formats without them)."""
    try:
        return bp.load(checkpoint, device=str(resolve_device(device)), class_label=class_label, image_size=image_size)
    except InputError as err:
        reasons = {"class_label": "its format has no class labels", "image_size": "its format fixes the image size"}
        for option, value in (("class_label", class_label), ("image_size", image_size)):
            if value is not None and option in str(err) and "does not apply" in str(err):
                flag = "--" + option.replace("_", "-")
                raise InputError(f"{flag} does not apply to {checkpoint}: {reasons[option]}") from None
        raise


def is_latent(denoiser: Denoiser) -> bool:
    """Whether the denoiser works on autoencoder latents rather than pixels."""
    return denoiser.describe().get("space") == "latent"


def latent_encoder(denoiser: Denoiser, checkpoint: Path, vae: Path | None, device: str = "auto"):
    """The loaded ``--vae`` (on the denoiser's device), or None; an error for a pixel-space model."""
    if vae is None:
        return None
    if not is_latent(denoiser):
        raise InputError(f"--vae applies to latent-space models (DiT); {checkpoint} works on pixels")
    from biasprobe.latents import load_vae

    encoder = load_vae(vae, resolve_device(device))
    encoder.image_shape(denoiser.image_shape)  # the latent channels must match
    return encoder


def read_images(denoiser: Denoiser, paths: Sequence[Path], resize: bool, encoder=None) -> torch.Tensor:
    """The --image files as the denoiser's inputs: pixel images, latent .npy arrays, or pictures
    encoded through ``encoder`` (from :func:`latent_encoder`)."""
    from biasprobe.images import read_image

    if encoder is not None:
        from biasprobe.latents import encode_images

        return encode_images(encoder, paths, denoiser.image_shape, resize=resize)
    if is_latent(denoiser):
        pictures = [path for path in paths if Path(path).suffix != ".npy"]
        if pictures:
            raise InputError(
                f"{pictures[0]} is a picture but the model works on latents: give latent .npy arrays "
                f"of shape {tuple(denoiser.image_shape)} or encode pictures with --vae FOLDER"
            )
    return torch.stack([read_image(path, denoiser.image_shape, resize=resize) for path in paths])
