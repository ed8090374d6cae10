"""``biasprobe jacobian``: eigen- and singular values of the denoiser's Jacobian, memorization
diagnostics, and the GAHB verdict, for one checkpoint or several side by side."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.generalization import held_out_data, training_data
from biasprobe_cli.options import (
    Arch,
    ClassLabel,
    ImageSize,
    Overwrite,
    Vae,
    deprecated_flag,
    latent_encoder,
    load_model,
    parse_numbers,
    read_images,
    result_paths,
    store_option,
)
from biasprobe_cli.output import Json, Report

from biasprobe.errors import InputError

DEFAULT_SIGMAS = "0.1"
JacobianStore = store_option("jacobian")
METHOD_NAMES = ("auto", "dense", "lanczos", "randomized")
OUTPUT_NAMES = ("denoised", "raw")
PRECISION_NAMES = ("float32", "tf32", "bf16")
SUPPORT_NAMES = ("object", "edges", "frame")
DEFAULT_NEIGHBOURS = 10
"""The choices and defaults of the library (``biasprobe.analyses.jacobian``: METHODS, OUTPUTS, PRECISIONS;
``biasprobe.analyses.support.SUPPORTS``; ``biasprobe.analyses.span.NEIGHBOURS``), written out
so that --help need not load torch (tests/cli/test_command_line.py keeps them in step)."""


def jacobian(
    checkpoints: Annotated[list[Path], typer.Argument(help="Checkpoint(s) to analyse; several give one store each "
                                                      "and, with --figure, one row each.")],
    image: Annotated[
        list[Path],
        typer.Option(help="Clean image (PNG/JPEG/.npy; latent models: latent .npy, or pictures with --vae); "
                     "repeat for several."),
    ],
    sigma: Annotated[
        str | None, typer.Option(help=f"Noise levels σ on the [0, 1] scale, comma-separated (default {DEFAULT_SIGMAS}).")
    ] = None,
    t: Annotated[str | None, typer.Option(help="Noise levels as diffusion steps t instead of --sigma.")] = None,
    top_k: Annotated[
        int | None,
        typer.Option(help="Eigenpairs to compute (matrix-free) or eigenvectors to store (dense); "
                     "default all for d ≤ 1024, else 64."),
    ] = None,
    method: Annotated[str, typer.Option(help=f"{' | '.join(METHOD_NAMES)}.")] = "auto",
    differentiate: Annotated[
        str,
        typer.Option(help="The function differentiated: denoised, J of D(y); raw, J of the network's own output "
                     "(ε̂, residual) in native units, whose top eigenvectors are D's bottom ones."),
    ] = "denoised",
    output: Annotated[str | None, typer.Option(hidden=True, help="Deprecated name of --differentiate.")] = None,
    precision: Annotated[str, typer.Option(help=f"Network passes in {' | '.join(PRECISION_NAMES)}.")] = "float32",
    support: Annotated[
        str, typer.Option(help="Support Ω of each image for the GAHB metrics: object (thresholded, dilated mask "
                          "on a background), edges (a band around strong edges: natural images) or frame.")
    ] = "object",
    train_data: Annotated[
        str | None,
        typer.Option(help="Training images for the memorization diagnostics: a data set (fashion-mnist, "
                     "npz:PATH, folder:PATH, ...); default: the one the checkpoint records."),
    ] = None,
    n_train: Annotated[int | None, typer.Option(help="Training set size N with --train-data; default: the checkpoint's.")] = None,
    held_out: Annotated[
        int, typer.Option(help="Test-split images of the training data set searched for the control's nearest "
                          "neighbours.")
    ] = 1000,
    neighbours: Annotated[
        int, typer.Option(help="M: the span of the M training (and held-out) images nearest to D(y).")
    ] = DEFAULT_NEIGHBOURS,
    memorization: Annotated[
        bool, typer.Option(help="Memorization diagnostics when the training images are known.")
    ] = True,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of on-disk data sets (fashion-mnist).")] = None,
    resize: Annotated[bool, typer.Option(help="Resize --image files to the model's image size.")] = False,
    class_label: ClassLabel = None,
    image_size: ImageSize = None,
    arch: Arch = None,
    vae: Vae = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the noise draws and random start blocks.")] = 0,
    out: JacobianStore = None,
    figure: Annotated[
        Path | None,
        typer.Option(help="Draw eigenvectors, spectrum and GAHB metrics to this image; with several checkpoints, "
                     "one row per checkpoint (clean, noisy, D(y), eigenvectors with λ, metrics)."),
    ] = None,
    as_json: Json = False,
    overwrite: Overwrite = False,
) -> None:
    """Eigenvectors, eigenvalues and singular values of J = ∂D(y)/∂y at noisy images, and the GAHB verdict.

    Also tr(J), the count of eigenvalues above ½, memorization diagnostics (when the training images are
    known: from the checkpoint or --train-data) and the verdict per σ: collapsed, memorizing,
    geometry-adaptive harmonic, fixed harmonic, not harmonic or undetermined, with the per-image counts.
    Progress names the checkpoint, image and σ being worked on and counts its Jacobian-vector products."""
    import biasprobe as bp
    from biasprobe.analyses.base import registered
    from biasprobe.analyses.jacobian import jacobian as measure_jacobian
    from biasprobe.progress import stage

    output = deprecated_flag("--output", "--differentiate", output, differentiate, "denoised")
    if output not in OUTPUT_NAMES:
        raise InputError(f"--differentiate must be one of {', '.join(OUTPUT_NAMES)}, got {output!r}")
    if support not in SUPPORT_NAMES:
        raise InputError(f"--support must be one of {', '.join(SUPPORT_NAMES)}, got {support!r}")
    if out is not None and len(checkpoints) > 1:
        raise InputError("--out names one store; with several checkpoints each goes to NAME.jacobian.zarr in the "
                         "current folder: drop --out")
    if sigma is None and t is None:
        sigma = DEFAULT_SIGMAS
    report = Report(as_json)
    report.set(output=output, support=support)
    paths = {checkpoint: result_paths(checkpoint, "jacobian", out, overwrite, figure) for checkpoint in checkpoints}
    stores = {}
    for position, checkpoint in enumerate(checkpoints, start=1):
        name = checkpoint.name if checkpoint.is_dir() else checkpoint.stem
        if position > 1 and not as_json:
            report.say("")  # one blank line between the checkpoints' tables
        with stage(f"[{position}/{len(checkpoints)}] {name}") if len(checkpoints) > 1 else contextlib.nullcontext():
            denoiser = load_model(checkpoint, device, class_label, image_size, arch)
            images = read_images(denoiser, image, resize, latent_encoder(denoiser, checkpoint, vae, device))
            training, control = _training_images(report, name, denoiser, train_data, n_train, held_out, data_dir) \
                if memorization else (None, None)
            if training is not None and output == "raw" and (top_k is not None or images[0].numel() > 1024):
                raise InputError("memorization diagnostics of --differentiate raw need every eigenvector (dense, "
                                 "d ≤ 1024, no --top-k): use --differentiate denoised, or --no-memorization")
            dataset = measure_jacobian(
                denoiser, images, parse_numbers(sigma, "sigma"), parse_numbers(t, "t"),
                top_k=top_k, method=method, output=output, precision=precision, seed=seed, progress=True,
                support=support, training_images=training, held_out_images=control, neighbours=neighbours,
            )
        dataset.attrs["images"] = [str(path) for path in image]
        if vae is not None:
            dataset.attrs["vae"] = str(vae)
        path = paths[checkpoint]
        report.show(registered("jacobian").summarize({name: dataset}))
        bp.save(dataset, path, overwrite=overwrite)
        report.wrote(path, "zarr store")
        stores[name] = dataset
    if figure:  # matplotlib is imported only when a figure is asked for
        from biasprobe.figures.jacobian import jacobian_figure, side_by_side_figure

        from biasprobe.reports.folder import save_figure

        save_figure(side_by_side_figure(stores) if len(stores) > 1 else jacobian_figure(next(iter(stores.values()))),
                    figure)
        report.wrote(figure, "figure")
    report.finish()


def _training_images(report: Report, checkpoint: str, denoiser, name: str | None, n_train: int | None,
                     held_out: int, data_dir: Path | None):
    """(training images, held-out control images), or (None, None) when the checkpoint records no training
    data and none is given."""
    recorded = denoiser.source.training.get("data")
    if name is None and not recorded:
        report.say(f"{checkpoint}: no training data recorded, memorization diagnostics skipped")
        report.say("  (--train-data NAME --n-train N gives them)")
        return None, None
    if name is not None and n_train is None and not recorded:
        raise InputError("--train-data needs --n-train N for a checkpoint that does not record its training set")
    name, training = training_data(denoiser, name, n_train, data_dir)
    return training, held_out_data(denoiser, name, held_out, data_dir)
