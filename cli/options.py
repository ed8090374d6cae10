"""Option parsing shared by the commands: devices, number lists, windows, the result store
(``--out``), and the model options (``--class-label``, ``--vae``) of the commands that read images."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from biasprobe.errors import InputError
from biasprobe.training.settings import USER_SETTINGS

if TYPE_CHECKING:  # torch loads when a command runs, not for --help
    import torch

    from biasprobe.denoiser import Denoiser

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
Arch = Annotated[
    list[str] | None,
    typer.Option(
        "--arch",
        metavar="KEY=VALUE",
        help="Architecture fact a foreign checkpoint's weights do not show (repeatable): heads=N for a "
        "facebookresearch DiT of a width no released model has, first_layer_linear=false for a Kadkhodaie "
        "et al. BF_CNN trained so, pooling=max for their UNet.",
    ),
]
FLAGS = {
    # the training settings' flags (from their schema); an entry below wins where a parameter of the same
    # name has its own flag elsewhere (batch_size is --batch-size for the analyses; train checks --batch)
    **{setting.parameter: setting.flag for setting in USER_SETTINGS},
    "arch": "--arch",
    "class_label": "--class-label",
    "data": "--data NAME",
    "data_dir": "--data-dir",
    "image_size": "--image-size",
    "n_train": "--n-train N",
    "only": "--only",
    "models": "--models",
    "out": "--out",
    "checkpoint": "--checkpoint",
    "output": "--differentiate",
    "resize": "--resize",
    "save_maps": "--save-maps",
    "scheduler": "--scheduler",
    "sigmas": "--sigma",
    "timesteps": "--t",
    "top_k": "--top-k",
    "vae": "--vae",
    "zoo": "--zoo",
    **{name: "--" + name.replace("_", "-") for name in (
        "channels", "k", "n", "batch", "batch_size", "count", "threshold", "samples",
        "sampler_steps", "sigma", "overwrite",
        "figure", "png", "windows", "device", "per_split", "method", "precision", "support",
        "neighbours", "held_out", "threads")},
}
"""The library's parameter names and the flags that set them: errors name parameters
(:class:`biasprobe.errors.BiasprobeError`) and so do warnings (:class:`~biasprobe.errors.BiasprobeWarning`);
the CLI prints both with these flags."""
Vae = Annotated[
    Path | None,
    typer.Option(
        "--vae",
        help="diffusers AutoencoderKL folder: latent models (DiT) get the --image pictures encoded to "
        "latents (posterior mean × scaling_factor); pictures must be the VAE's factor (8) × the latent "
        "size, or --resize.",
    ),
]


Overwrite = Annotated[
    bool,
    typer.Option(help="Replace a folder at --out that biasprobe did not write (a store biasprobe wrote is "
                 "always replaced, atomically)."),
]


def training_flags(command: Callable, *, declared: Sequence[str] = ()) -> Callable:
    """``command`` with one option per training setting (:data:`biasprobe.training.loop.USER_SETTINGS`: flag,
    default and help from the schema), handed to its ``**settings`` by parameter name (``batch_size``,
    ``learning_rate``, …). Settings in ``declared`` the command declares itself (their flags take several
    values or imply others)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    derived = [
        inspect.Parameter(setting.parameter, inspect.Parameter.KEYWORD_ONLY, default=setting.default,
                          annotation=Annotated[setting.annotation, typer.Option(setting.flag, help=setting.help)])
        for setting in USER_SETTINGS if setting.parameter not in declared
    ]
    command.__signature__ = signature.replace(parameters=own + derived)
    return command


def result_paths(checkpoint: Path, analysis: str, out: Path | None, overwrite: bool, figure: Path | None = None) -> Path:
    """The store (``--out`` or :func:`default_store`) and the ``--figure``, checked before any work starts."""
    from biasprobe.store import check_output
    from biasprobe.validation import output_figure

    if figure is not None:
        output_figure(figure)
    return check_output(out or default_store(checkpoint, analysis), overwrite, "out")


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


OldK = Annotated[int | None, typer.Option("--k", hidden=True, help="Deprecated name of --per-split.")]
"""The ``--k`` that meant images per split (now ``--per-split``; ``k`` is a rank elsewhere)."""


def deprecated_flag(old: str, new: str, old_value, new_value, default):
    """The value of a renamed flag: ``new_value``, or ``old_value`` (with a deprecation notice on
    stderr) where only the old flag was given. Old flags keep working for one release."""
    if old_value is None:
        return new_value
    if new_value != default:
        raise InputError(f"{old} is the old name of {new}: give only {new}")
    typer.secho(f"{old} is deprecated and will be removed in the next release; use {new}", err=True,
                fg=typer.colors.YELLOW)
    return old_value


def checkpoint_option(help: str):
    """The ``-o/--checkpoint`` option of a command that writes one checkpoint file (``new``, ``train``)."""
    return Annotated[Path | None, typer.Option("-o", "--checkpoint", help=help)]


OldOutput = Annotated[Path | None, typer.Option("--output", hidden=True, help="Deprecated name of --checkpoint.")]


def checkpoint_to_write(checkpoint: Path | None, output: Path | None) -> Path:
    """The ``-o/--checkpoint`` path, or the deprecated ``--output``; one of them is required."""
    path = deprecated_flag("--output", "--checkpoint", output, checkpoint, None)
    if path is None:
        raise InputError("give the checkpoint to write with -o/--checkpoint PATH")
    return path


def checkpoint_name(checkpoint: Path) -> str:
    """The name results of ``checkpoint`` are filed under: its file stem, or its folder's name."""
    return checkpoint.name if checkpoint.is_dir() else checkpoint.stem


def default_store(checkpoint: Path, analysis: str) -> Path:
    """Where an analysis of ``checkpoint`` goes without ``--out``: NAME.ANALYSIS.zarr in the current
    folder, so that read-only checkpoint folders (the shipped zoo) work and nothing lands beside them."""
    return Path(f"{checkpoint_name(checkpoint)}.{analysis}.zarr")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    import torch

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


def parse_arch(items: Sequence[str] | None) -> dict:
    """['heads=4', 'first_layer_linear=false'] -> {'heads': 4, 'first_layer_linear': False}: values
    are JSON numbers, booleans or null where they parse as such, else strings."""
    arch = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--arch takes KEY=VALUE, got {item!r}")
        try:
            arch[key.strip()] = json.loads(value.strip().lower() if value.strip().lower() in ("true", "false",
                                                                                              "null") else value)
        except json.JSONDecodeError:
            arch[key.strip()] = value.strip()
    return arch


def load_model(
    checkpoint: Path,
    device: str = "auto",
    class_label: int | None = None,
    image_size: int | None = None,
    arch: Sequence[str] | None = None,
) -> Denoiser:
    """``bp.load`` with the device, ``--class-label``, ``--image-size`` and ``--arch`` (the library
    refuses options the checkpoint's format does not take)."""
    import biasprobe as bp

    return bp.load(checkpoint, device=str(resolve_device(device)), class_label=class_label, image_size=image_size,
                   arch=parse_arch(arch))


def is_latent(denoiser: Denoiser) -> bool:
    """Whether the denoiser works on autoencoder latents rather than pixels."""
    return denoiser.space == "latent"


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
    import torch

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
