"""``biasprobe jacobian``: eigen- and singular values of the denoiser's Jacobian, and the GAHB verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
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
from biasprobe.analyses.harmonic import gahb_summary
from biasprobe.analyses.jacobian import METHODS, OUTPUTS, PRECISIONS
from biasprobe.analyses.jacobian import jacobian as measure_jacobian
from biasprobe.errors import InputError

console = Console()
DEFAULT_SIGMAS = "0.1"
JacobianStore = store_option("jacobian")


def jacobian(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to analyse.")],
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
                     "(ε̂, residual) in native units."),
    ] = "denoised",
    output: Annotated[str | None, typer.Option(hidden=True, help="Deprecated name of --differentiate.")] = None,
    precision: Annotated[str, typer.Option(help=f"Network passes in {' | '.join(PRECISIONS)}.")] = "float32",
    resize: Annotated[bool, typer.Option(help="Resize --image files to the model's image size.")] = False,
    class_label: ClassLabel = None,
    image_size: ImageSize = None,
    arch: Arch = None,
    vae: Vae = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the noise draws and random start blocks.")] = 0,
    out: JacobianStore = None,
    figure: Annotated[Path | None, typer.Option(help="Draw eigenvectors, spectrum and GAHB metrics to this image.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Eigen- and singular values and eigenvectors of the Jacobian J = ∂D(y)/∂y at noisy images.

    Also its asymmetry, tr(J), and whether the eigenvectors are geometry-adaptive harmonics (GAHB)."""
    output = deprecated_flag("--output", "--differentiate", output, differentiate, "denoised")
    if output not in OUTPUTS:
        raise InputError(f"--differentiate must be one of {', '.join(OUTPUTS)}, got {output!r}")
    out = result_paths(checkpoint, "jacobian", out, overwrite, figure)
    denoiser = load_model(checkpoint, device, class_label, image_size, arch)
    images = read_images(denoiser, image, resize, latent_encoder(denoiser, checkpoint, vae, device))
    if sigma is None and t is None:
        sigma = DEFAULT_SIGMAS
    dataset = measure_jacobian(
        denoiser, images, parse_numbers(sigma, "sigma"), parse_numbers(t, "t"),
        top_k=top_k, method=method, output=output, precision=precision, seed=seed, progress=True,
    )
    dataset.attrs["images"] = [str(path) for path in image]
    if vae is not None:
        dataset.attrs["vae"] = str(vae)
    summary = gahb_summary(dataset) if dataset.sizes["rank"] >= 2 else None
    _print_summary(dataset, summary)
    bp.save(dataset, out, overwrite=overwrite)
    console.print(f"wrote {out}")
    if figure:  # matplotlib is imported only when a figure is asked for
        from biasprobe.figures.jacobian import jacobian_figure

        figure.parent.mkdir(parents=True, exist_ok=True)
        jacobian_figure(dataset).savefig(figure, dpi=150)
        console.print(f"wrote {figure}")


def _print_summary(dataset, summary) -> None:
    """One row per (image, σ): λ₀, the λ at d/8 and d/4 when computed, tr(J), asymmetry, worst residual;
    then the GAHB verdict per σ."""
    d = int(dataset.attrs["dimension"])
    table = Table(
        title=f"Jacobian of the {dataset.attrs['output']} output (d = {d}, method {dataset.attrs['method']})",
        box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False,
    )
    ranks = [k for k in (0, d // 8, d // 4) if k < dataset.sizes["index"]]
    for column in ("image", "σ", "t", *(f"λ{k}" for k in ranks), "s0", "tr(J)", "asymmetry", "residual"):
        table.add_column(column, justify="right", no_wrap=True)
    for i in range(dataset.sizes["image"]):
        for s in range(dataset.sizes["sigma"]):
            at = dataset.isel(image=i, sigma=s)
            step = float(at.t)
            table.add_row(
                str(i), f"{float(at.sigma):g}", "-" if np.isnan(step) else f"{step:.1f}",
                *(f"{float(at.spectrum[k]):.3f}" for k in ranks),
                f"{float(at.singular_spectrum[0]):.3f}",
                f"{float(at.effective_dimension):.1f}", f"{float(at.asymmetry):.3f}",
                f"{float(at.eigen_residual.max()):.1e}",
            )
    console.print(table)
    if summary is None:
        return
    verdicts = Table(title=f"GAHB metrics over the top {summary.attrs['top']} eigenvectors",
                     box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    for column in ("σ", "harmonicity", "participation", "adaptivity", "verdict"):
        verdicts.add_column(column, justify="left" if column == "verdict" else "right", no_wrap=True)
    for s in range(summary.sizes["sigma"]):
        at = summary.isel(sigma=s)
        verdicts.add_row(
            f"{float(at.sigma):g}", f"{float(at.mean_harmonicity):.2f}", f"{float(at.mean_participation):.3f}",
            "-" if np.isnan(float(at.adaptivity)) else f"{float(at.adaptivity):.2f}", str(at.verdict.item()),
        )
    console.print(verdicts)
