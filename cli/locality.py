"""``biasprobe locality``: attention locality per layer, head and noise level, with An et al.'s Fig. 4."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from biasprobe_cli.options import (
    Arch,
    ClassLabel,
    ImageSize,
    Overwrite,
    Vae,
    is_latent,
    latent_encoder,
    load_model,
    parse_numbers,
    parse_windows,
    read_images,
    result_paths,
    store_option,
)
from biasprobe_cli.output import Column, Json, Report, number

from biasprobe.errors import InputError

if TYPE_CHECKING:
    import torch

    from biasprobe.denoiser import Denoiser

DEFAULT_SIGMAS = "0.05,0.2"
LocalityStore = store_option("locality")


def locality(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint of a model with attention (DiT, DDPM UNet).")
    ],
    image: Annotated[
        list[Path] | None,
        typer.Option(
            help="Clean image (PNG/JPEG/.npy; latent models: latent .npy, or pictures with --vae); repeat for "
            "several. Default: the shipped examples."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Data set (e.g. fashion-mnist, discs, folder:PATH); its test split gives the images."
        ),
    ] = None,
    n: Annotated[int, typer.Option(help="How many images of --data.")] = 16,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder of on-disk data sets (fashion-mnist).")
    ] = None,
    sigma: Annotated[
        str | None,
        typer.Option(help=f"Noise levels σ on the [0, 1] scale, comma-separated (default {DEFAULT_SIGMAS})."),
    ] = None,
    t: Annotated[
        str | None, typer.Option(help="Noise levels as diffusion steps t instead of --sigma.")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(help="Attention layers to measure, 1-based, comma-separated (default all)."),
    ] = None,
    windows: Annotated[
        str, typer.Option(help="Odd k of the k×k token neighbourhoods for the local mass.")
    ] = "3,5,7",
    save_maps: Annotated[
        bool | None,
        typer.Option(
            help="Keep the attention maps (mean over images and heads) of every measured layer. "
            "Default: only those the --figure shows."
        ),
    ] = None,
    resize: Annotated[bool, typer.Option(help="Resize --image files to the model's image size.")] = False,
    class_label: ClassLabel = None,
    image_size: ImageSize = None,
    arch: Arch = None,
    vae: Vae = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the noise draws.")] = 0,
    out: LocalityStore = None,
    figure: Annotated[
        Path | None, typer.Option(help="Draw the maps, the profile and the heads to this image.")
    ] = None,
    as_json: Json = False,
    overwrite: Overwrite = False,
) -> None:
    """Measure how local attention is, per layer, head and noise level; optionally An et al.'s Fig. 4.

    Mean attention distance, local mass in k×k neighbourhoods, entropy and distance histogram."""
    import biasprobe as bp
    from biasprobe.analyses.locality import attention_layers
    from biasprobe.analyses.locality import locality as measure_locality

    report = Report(as_json)
    from biasprobe.validation import count

    out = result_paths(checkpoint, "locality", out, overwrite, figure)
    count(n, "n")
    count(batch_size, "batch_size")
    denoiser = load_model(checkpoint, device, class_label, image_size, arch)
    encoder = latent_encoder(denoiser, checkpoint, vae, device)
    selected = attention_layers(denoiser, parse_numbers(layers, "layers", int))
    if figure:  # matplotlib is imported only when a figure is asked for, to keep every command's start quick
        from biasprobe.figures.locality import every_other_layer, locality_figure
    if save_maps is None:
        save_maps = every_other_layer([layer.index for layer in selected]) if figure else False
    if sigma is None and t is None:
        sigma = DEFAULT_SIGMAS
    images = _images(report, denoiser, image, data, n, data_dir, resize, encoder)
    dataset = measure_locality(
        denoiser,
        images,
        parse_numbers(sigma, "sigma"),
        parse_numbers(t, "t"),
        layers=[layer.index for layer in selected],
        windows=parse_windows(windows),
        save_maps=save_maps,
        batch_size=batch_size,
        seed=seed,
        progress=True,
    )
    if vae is not None:
        dataset.attrs["vae"] = str(vae)
    _report_summary(report, dataset)
    out = bp.save(dataset, out, overwrite=overwrite)
    report.wrote(out, "zarr store")
    if figure:
        from biasprobe.reports.folder import save_figure

        save_figure(locality_figure(dataset), figure)
        report.wrote(figure, "figure")
    report.finish()


def _images(
    report: Report,
    denoiser: Denoiser,
    paths: list[Path] | None,
    name: str | None,
    n: int,
    data_dir: Path | None,
    resize: bool,
    encoder=None,
) -> torch.Tensor:
    """The clean images: --image files, --data's test split, or the shipped examples of the model's shape;
    for a latent model, pictures go through the --vae ``encoder``."""
    from biasprobe import data as datasets

    if paths and name:
        raise InputError("give either --image or --data, not both")
    if paths:
        return read_images(denoiser, paths, resize, encoder)
    if is_latent(denoiser) and encoder is None:
        source = f"--data {name}" if name else "the shipped example images"
        raise InputError(f"the model works on latents: {source} need --vae FOLDER, or give latent .npy arrays with --image")
    shape = encoder.image_shape(denoiser.image_shape) if encoder else denoiser.image_shape
    if name:
        channels, size, _ = shape
        pictures = datasets.load(name, "test", n, size=size, channels=channels, subset="all", data_dir=data_dir)
    else:
        pictures = _example_images(report, shape)
    return encoder.encode(pictures) if encoder else pictures


def _example_images(report: Report, shape: tuple[int, int, int]) -> torch.Tensor:
    """The shipped example images that fit the model's shape (:func:`biasprobe.zoo.example_images`)."""
    import torch
    from PIL import Image

    from biasprobe import zoo
    from biasprobe.images import read_image

    chosen = zoo.example_images(shape)
    if not chosen:
        raise InputError(f"no example images in {zoo.DATA_DIR / 'images'}; give images with --image FILE")
    with Image.open(chosen[0]) as picture:
        size = picture.size
    _, height, width = shape
    resized = "" if size == (width, height) else f", resized from {size[1]}×{size[0]} to {height}×{width}"
    names = ", ".join(path.stem for path in chosen)
    report.say(f"no --image given: using {len(chosen)} shipped example images{resized} ({names})")
    return torch.stack([read_image(path, shape, resize=True) for path in chosen])


def _report_summary(report: Report, dataset) -> None:
    """One table per σ: each layer's locality averaged over heads, the mean over images (and the s.d.
    over images of the distance)."""
    per_image = dataset[["mean_distance", "local_mass", "entropy"]].mean("head")
    mean, spread = per_image.mean("image"), per_image.std("image")
    windows = [int(k) for k in dataset.window.values]
    for s in range(dataset.sizes["sigma"]):
        t = float(dataset.t[s])
        records = []
        for position, layer in enumerate(dataset.layer.values):
            at = {"sigma": s, "layer": position}
            records.append({
                "sigma": float(dataset.sigma[s]), "t": None if math.isnan(t) else t, "layer": int(layer),
                "module": str(dataset.layer_name.values[position]),
                "grid": f"{int(dataset.grid_rows[position])}×{int(dataset.grid_cols[position])}",
                "window": int(dataset.attention_window[position]) or None,
                "mean_distance": float(mean.mean_distance[at]), "mean_distance_sd": float(spread.mean_distance[at]),
                **{f"mass_{k}": float(value) for k, value in zip(windows, mean.local_mass[at].values)},
                "entropy": float(mean.entropy[at]), "entropy_uniform": float(dataset.entropy_uniform[position]),
            })
        level = f"σ = {float(dataset.sigma[s]):g}" + ("" if math.isnan(t) else f", t = {t:.1f}")
        bounds = dict.fromkeys((record["grid"], record["entropy_uniform"]) for record in records)
        shared = len(bounds) == 1  # one token grid for every layer (DiTs): said once, in the caption
        grids = "; ".join(f"{grid} tokens: log N = {uniform:.2f}" for grid, uniform in bounds)
        report.table("layers", records, [
            Column("layer", "layer"), Column("module", "module", left=True, no_wrap=True),
            *(() if shared else (Column("grid", "grid", left=True),)),
            Column("window", "window", lambda k: f"{k}×{k}" if k else "global", left=True),
            Column("mean_distance", "dist", number(".2f")), Column("mean_distance_sd", "±sd", number(".2f")),
            *(Column(f"mass_{k}", f"{k}×{k}", number(".3f")) for k in windows),
            Column("entropy", "H", number(".2f")),
        ], title=f"attention locality at {level}, {dataset.sizes['image']} images",
            caption=("" if shared else "grid: token grid; ") + "window: attention window; dist: mean attention distance "
            "(px) ± s.d. over images; k×k: attention mass in the query's k×k neighbourhood; H: entropy, at most "
            f"log N ({grids})")
