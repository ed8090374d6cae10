"""``biasprobe jacobian``: eigen- and singular values of the denoiser's Jacobian, memorization
diagnostics, and the GAHB verdict, for one checkpoint or several side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
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
from rich import box
from rich.console import Console
from rich.table import Table

import biasprobe as bp
from biasprobe.analyses.harmonic import gahb_summary, verdict_line
from biasprobe.analyses.jacobian import METHODS, OUTPUTS, PRECISIONS
from biasprobe.analyses.jacobian import jacobian as measure_jacobian
from biasprobe.analyses.memorization import NEIGHBOURS
from biasprobe.analyses.support import SUPPORTS
from biasprobe.errors import InputError

console = Console()
DEFAULT_SIGMAS = "0.1"
JacobianStore = store_option("jacobian")


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
    method: Annotated[str, typer.Option(help=f"{' | '.join(METHODS)}.")] = "auto",
    differentiate: Annotated[
        str,
        typer.Option(help="The function differentiated: denoised, J of D(y); raw, J of the network's own output "
                     "(ε̂, residual) in native units, whose top eigenvectors are D's bottom ones."),
    ] = "denoised",
    output: Annotated[str | None, typer.Option(hidden=True, help="Deprecated name of --differentiate.")] = None,
    precision: Annotated[str, typer.Option(help=f"Network passes in {' | '.join(PRECISIONS)}.")] = "float32",
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
    ] = NEIGHBOURS,
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
    overwrite: Overwrite = False,
) -> None:
    """Eigenvectors, eigenvalues and singular values of J = ∂D(y)/∂y at noisy images, and the GAHB verdict.

    Also tr(J), the count of eigenvalues above ½, memorization diagnostics (when the training images are
    known: from the checkpoint or --train-data) and the verdict per σ: collapsed, memorizing,
    geometry-adaptive harmonic, fixed harmonic, not harmonic or undetermined, with the per-image counts."""
    output = deprecated_flag("--output", "--differentiate", output, differentiate, "denoised")
    if output not in OUTPUTS:
        raise InputError(f"--differentiate must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if support not in SUPPORTS:
        raise InputError(f"--support must be one of {', '.join(SUPPORTS)}, got {support!r}")
    if out is not None and len(checkpoints) > 1:
        raise InputError("--out names one store; with several checkpoints each goes to NAME.jacobian.zarr in the "
                         "current folder: drop --out")
    if sigma is None and t is None:
        sigma = DEFAULT_SIGMAS
    paths = {checkpoint: result_paths(checkpoint, "jacobian", out, overwrite, figure) for checkpoint in checkpoints}
    stores = {}
    for checkpoint in checkpoints:
        denoiser = load_model(checkpoint, device, class_label, image_size, arch)
        images = read_images(denoiser, image, resize, latent_encoder(denoiser, checkpoint, vae, device))
        training, control = _training_images(denoiser, train_data, n_train, held_out, data_dir) if memorization \
            else (None, None)
        if training is not None and output == "raw" and (top_k is not None or images[0].numel() > 1024):
            raise InputError("memorization diagnostics of --differentiate raw need every eigenvector (dense, d ≤ 1024, no "
                             "--top-k): use --output denoised, or --no-memorization")
        dataset = measure_jacobian(
            denoiser, images, parse_numbers(sigma, "sigma"), parse_numbers(t, "t"),
            top_k=top_k, method=method, output=output, precision=precision, seed=seed, progress=True,
            support=support, training_images=training, held_out_images=control, neighbours=neighbours,
        )
        dataset.attrs["images"] = [str(path) for path in image]
        if vae is not None:
            dataset.attrs["vae"] = str(vae)
        console.print(f"[bold]{checkpoint}[/bold]")
        _print_summary(dataset)
        path = paths[checkpoint]
        bp.save(dataset, path, overwrite=overwrite)
        console.print(f"wrote {path}")
        stores[checkpoint.stem] = dataset
    if figure:  # matplotlib is imported only when a figure is asked for
        from biasprobe.figures.jacobian import jacobian_figure, side_by_side_figure

        figure.parent.mkdir(parents=True, exist_ok=True)
        drawn = side_by_side_figure(stores) if len(stores) > 1 else jacobian_figure(next(iter(stores.values())))
        drawn.savefig(figure, dpi=150)
        console.print(f"wrote {figure}")


def _training_images(denoiser, name: str | None, n_train: int | None, held_out: int, data_dir: Path | None):
    """(training images, held-out control images), or (None, None) when the checkpoint records no training
    data and none is given."""
    recorded = denoiser.source.training.get("data")
    if name is None and not recorded:
        console.print("no training data recorded in the checkpoint: memorization diagnostics skipped "
                      "(give --train-data)")
        return None, None
    if name is not None and n_train is None and not recorded:
        raise InputError("--train-data needs --n-train N for a checkpoint that does not record its training set")
    name, training = training_data(denoiser, name, n_train, data_dir)
    return training, held_out_data(denoiser, name, held_out, data_dir)


def _print_summary(dataset) -> None:
    """One row per (image, σ): λ₀, the λ at d/8 and d/4 when computed, tr(J), #λ>½, asymmetry, worst
    residual, and the GAHB and memorization metrics with the image's category; then the verdict per σ."""
    d = int(dataset.attrs["dimension"])
    table = Table(
        title=f"Jacobian of the {dataset.attrs['output']} output (d = {d}, method {dataset.attrs['method']})",
        box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False,
    )
    try:
        summary = gahb_summary(dataset) if dataset.sizes["rank"] >= 2 else None
    except InputError as error:  # a raw-output store with the top-k raw eigenvectors only
        console.print(f"no GAHB verdict: {error}")
        summary = None
    memorized = summary is not None and "memorization_score" in summary
    ranks = [k for k in (0, d // 8, d // 4) if k < dataset.sizes["index"]]
    columns = ["image", "σ", "t", *(f"λ{k}" for k in ranks), "tr(J)", "#λ>½", "asymmetry", "residual"]
    if summary is not None:
        columns += ["K", "ρ", "PR_Ω", "κ"]
    if memorized:
        columns += ["memorization", "cos train", "cos held-out"]
    if summary is not None:
        columns += ["category"]
    for column in columns:
        table.add_column(column, justify="left" if column == "category" else "right", no_wrap=True)
    for i in range(dataset.sizes["image"]):
        for s in range(dataset.sizes["sigma"]):
            at = dataset.isel(image=i, sigma=s)
            step = float(at.t)
            row = [
                str(i), f"{float(at.sigma):g}", "-" if np.isnan(step) else f"{step:.1f}",
                *(f"{float(at.spectrum[k]):.3f}" for k in ranks),
                f"{float(at.effective_dimension):.1f}", str(int((at.spectrum > 0.5).sum())),
                f"{float(at.asymmetry):.3f}", f"{float(at.eigen_residual.max()):.1e}",
            ]
            if summary is not None:
                judged = summary.isel(image=i, sigma=s)
                row += [str(int(judged.top)), f"{float(judged.harmonicity):.2f}", f"{float(judged.participation):.3f}",
                        f"{float(judged.confinement_excess):.2f}"]
                if memorized:
                    row += [f"{float(judged.memorization_score):.2f}", f"{float(at.nearest_train_cosine):.3f}",
                            f"{float(at.nearest_held_out_cosine):.3f}"]
                row.append(str(judged.category.item()))
            table.add_row(*row)
    console.print(table)
    if summary is None:
        return
    verdicts = Table(title=f"GAHB verdict (support {summary.attrs['support']})",
                     box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    for column in ("σ", "mean tr(J)", "mean #λ>½", "verdict (images per category)"):
        verdicts.add_column(column, justify="left" if column.startswith("verdict") else "right", no_wrap=True)
    for s in range(summary.sizes["sigma"]):
        at = summary.isel(sigma=s)
        verdicts.add_row(f"{float(at.sigma):g}", f"{float(at.effective_dimension.mean()):.1f}",
                         f"{float(at.count_above_half.mean()):.1f}", verdict_line(summary, s))
    console.print(verdicts)
    trend = summary.dimension_trend
    if np.isfinite(trend).any():
        console.print(f"d log tr(J) / d log σ per image: {', '.join(f'{float(v):.2f}' for v in trend.values)} "
                      "(negative: tr J falls with σ, as for a generalizing denoiser; near 0: flat, as for a memorizer)")
