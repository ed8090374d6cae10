"""``biasprobe gap`` and ``biasprobe sample``: generalization and memorization of one checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from biasprobe_cli.options import (
    Arch,
    Overwrite,
    deprecated_flag,
    load_model,
    parse_numbers,
    result_paths,
    store_option,
)
from biasprobe_cli.output import Column, Json, Report, number

from biasprobe.errors import InputError

if TYPE_CHECKING:
    import torch

GapStore = store_option("gap")
SamplesStore = store_option("samples")
SAMPLER_NAMES = ("ddim", "ddpm", "ascent")
"""``biasprobe.training.samplers.METHODS``, written out so that --help need not load torch
(tests/cli/test_command_line.py keeps them in step)."""


def training_data(denoiser, name: str | None, n_train: int | None, data_dir: Path | None) -> tuple[str, torch.Tensor]:
    """The checkpoint's training images (:func:`biasprobe.data.training_set`)."""
    from biasprobe import data

    return data.training_set(denoiser.source.training, denoiser.image_shape, name, n_train, data_dir)


def held_out_data(denoiser, name: str, count: int, data_dir: Path | None) -> torch.Tensor:
    """The first ``count`` test-split images of data set ``name`` at the denoiser's shape."""
    from biasprobe import data

    return data.held_out_set(name, denoiser.image_shape, count, data_dir)


def gap(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to evaluate.")],
    data_name: Annotated[str | None, typer.Option("--data", help="Data set; default: the one it was trained on.")] = None,
    n_train: Annotated[int | None, typer.Option(help="Training set size N; default: from the checkpoint.")] = None,
    per_split: Annotated[
        int, typer.Option(help="Images per split K (train images are the first K the model saw).")
    ] = 300,
    k: Annotated[int | None, typer.Option("--k", hidden=True, help="Deprecated name of --per-split.")] = None,
    sigma: Annotated[str | None, typer.Option(help="Noise levels σ on the [0, 1] scale, e.g. 0.05,0.1,0.2.")] = None,
    t: Annotated[str | None, typer.Option("--t", help="Diffusion steps instead of σ, e.g. 0,100,200.")] = None,
    arch: Arch = None,
    out: GapStore = None,
    figure: Annotated[Path | None, typer.Option(help="Also draw the Fig. 2 panels to this file.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of on-disk data sets (fashion-mnist).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the noise draws.")] = 0,
    as_json: Json = False,
    overwrite: Overwrite = False,
) -> None:
    """Generalization gap: denoising PSNR on min(K, N) training vs K test images (--per-split K) per noise level (Fig. 2).

    Without --sigma/--t, scheduled models use the steps t = 0, 20, ..., 980 and blind ones 20 σ from 0.01 to 1.
    """
    import biasprobe as bp
    from biasprobe.analyses.generalization import checkpoint_gap
    from biasprobe.validation import count as positive_count

    out = result_paths(checkpoint, "gap", out, overwrite, figure)
    per_split = positive_count(deprecated_flag("--k", "--per-split", k, per_split, 300), "per_split")
    if n_train is not None:
        positive_count(n_train, "n_train")
    report = Report(as_json)
    denoiser = load_model(checkpoint, device, arch=arch)
    dataset = checkpoint_gap(denoiser, data=data_name, n_train=n_train, k=per_split, sigmas=parse_numbers(sigma, "sigma"),
                             timesteps=parse_numbers(t, "t"), data_dir=data_dir, seed=seed, progress=True)
    name, n = dataset.attrs["data"], int(dataset.attrs["n_train"])
    counts = [int(c) for c in dataset.images_per_split.values]
    path = bp.save(dataset, out, overwrite=overwrite)
    records = [{
        "sigma": float(row.sigma), "t": float(row.t), "train_psnr": float(row.mean_psnr.sel(split="train")),
        "test_psnr": float(row.mean_psnr.sel(split="test")), "gap": float(row.gap), "gap_sem": float(row.gap_sem),
    } for row in (dataset.isel(sigma=i) for i in range(dataset.sizes["sigma"]))]
    report.set(checkpoint=str(checkpoint), data=name, n_train=n, images_per_split=counts,
               average_gap=float(dataset.average_gap), average_gap_sem=float(dataset.average_gap_sem))
    report.table("levels", records, [
        Column("sigma", "σ", number(".4g")), Column("t", "t", number(".0f")),
        Column("train_psnr", "train PSNR", number(".2f")), Column("test_psnr", "test PSNR", number(".2f")),
        Column("gap", "gap (dB)", number(".2f")), Column("gap_sem", "± s.e.", number(".2f")),
    ], title=f"{checkpoint.name}: N = {n} {name}, {counts[0]} training and {counts[1]} test images")
    report.say(f"average gap {float(dataset.average_gap):.2f} ± {float(dataset.average_gap_sem):.2f} dB")
    report.wrote(path, "zarr store")
    if figure:
        from biasprobe.figures.generalization import gap_figure

        from biasprobe.reports.folder import save_figure

        save_figure(gap_figure(dataset), figure)
        report.wrote(figure, "figure")
    report.finish()


def sample(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint to sample from.")],
    count: Annotated[int, typer.Option("-n", "--count", help="Number of samples.")] = 16,
    method: Annotated[str | None, typer.Option(help=f"Sampler: {', '.join(SAMPLER_NAMES)}; default ddim, or ascent for blind models.")] = None,
    steps: Annotated[int, typer.Option(help="Steps of the ddim/ddpm samplers.")] = 100,
    arch: Arch = None,
    out: SamplesStore = None,
    png: Annotated[Path | None, typer.Option(help="Also write a PNG: the samples in the top row, each one's nearest "
                                             "training image below it (when the training data is known).")] = None,
    threshold: Annotated[float, typer.Option(help="Similarity above which a sample counts as a copy.")] = 0.95,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of on-disk data sets (fashion-mnist).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the samples: sample i depends only on (seed, i).")] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Draw seeded samples and find each one's nearest training image (memorization)."""
    import numpy as np

    import biasprobe as bp
    from biasprobe.analyses.memorization import memorization
    from biasprobe.validation import count as positive_count
    from biasprobe.validation import number as checked_number
    from biasprobe.validation import output_file

    out = result_paths(checkpoint, "samples", out, overwrite)
    if png is not None:
        output_file(png, "png", suffixes=[".png"])
    positive_count(count, "count")
    positive_count(steps, "steps")
    checked_number(threshold, "threshold", minimum=-1, maximum=1)
    report = Report()
    denoiser = load_model(checkpoint, device, arch=arch)
    name, train_images = None, None
    if denoiser.source.training.get("data"):
        name, train_images = training_data(denoiser, None, None, data_dir)
    else:
        report.say("no training data recorded in the checkpoint: skipping the nearest-image search")
    dataset = memorization(denoiser, count, train_images, threshold=threshold, seed=seed, progress=True,
                           method=method, steps=steps)
    if train_images is not None:
        report.say(f"{float(dataset.memorized_share):.0%} of samples copy a training image of {name} "
                      f"(similarity > {threshold}); median nearest similarity "
                      f"{float(dataset.nearest_similarity.median()):.3f}")
    diverged = int((~np.isfinite(dataset.sample_image.values)).any(axis=(1, 2, 3)).sum())
    if diverged:
        report.say(f"Warning: {diverged} of {count} samples diverged (non-finite values): the model may be "
                   "untrained or the sampler settings too aggressive")
    path = bp.save(dataset, out, overwrite=overwrite)
    report.wrote(path, "zarr store")
    if png:
        import torch

        from biasprobe.figures.generalization import sample_grid
        from biasprobe.images import write_image

        png.parent.mkdir(parents=True, exist_ok=True)
        write_image(torch.from_numpy(sample_grid(dataset)), png)
        rows = "samples above their nearest training images" if "nearest_image" in dataset else "samples"
        report.wrote(png, f"{count} {rows}")


def compare(
    first: Annotated[Path, typer.Argument(help="Checkpoint A, or a stored result: STORE, or SWEEP:NAME for one "
                                          "checkpoint of a sweep store.")],
    second: Annotated[Path, typer.Argument(help="Checkpoint B, or a stored result of the same analysis as A's.")],
    out: Annotated[
        Path | None,
        typer.Option(help="zarr store for the results (default: A-vs-B.compare.zarr in the current folder, A and B "
                     "the checkpoints' names). A path without .zarr is the old meaning, a folder for "
                     "comparison.zarr and comparison.png (deprecated)."),
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Draw the comparison sheet (gap, memorization, samples, spectra, "
                                  "eigenvectors, locality) to this image.")
    ] = None,
    data_name: Annotated[str | None, typer.Option("--data", help="Data set of the test images; default: A's.")] = None,
    image: Annotated[Path | None, typer.Option(help="Image for the Jacobians; default: the first test image.")] = None,
    sigma: Annotated[float, typer.Option(help="Noise level of the Jacobians and attention maps ([0, 1] scale).")] = 0.1,
    per_split: Annotated[int, typer.Option(help="Images per split for the gap.")] = 100,
    k: Annotated[int | None, typer.Option("--k", hidden=True, help="Deprecated name of --per-split.")] = None,
    samples: Annotated[int, typer.Option(help="Samples per checkpoint, from the same seeds.")] = 8,
    sampler_steps: Annotated[int, typer.Option(help="DDIM steps for scheduled models (blind ones use ascent).")] = 100,
    top_k: Annotated[int, typer.Option(help="Jacobian eigenvectors compared.")] = 64,
    arch: Arch = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder of on-disk data sets (fashion-mnist).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of noise and samples, shared by A and B.")] = 0,
    as_json: Json = False,
    overwrite: Overwrite = False,
) -> None:
    """Compare two checkpoints: gap, memorization, paired samples, Jacobian spectra and overlap, locality.

    For two models trained on disjoint halves (--subset s1 / s2), a paired sample similarity near 1
    means both learned the same density (Kadkhodaie et al.'s test of generalization).

    Given two stored results of one analysis (gap, jacobian or locality) instead, e.g. two checkpoints
    of a sweep store (`gap.sweep.zarr:dit-n1000 gap.sweep.zarr:dit-local-n1000`) or of two stores,
    it compares what they hold and computes nothing (the analysis options do not apply).
    """
    from biasprobe.analyses.comparison import compare as run_comparison
    from biasprobe.images import read_image
    from biasprobe.validation import count as positive_count
    from biasprobe.validation import number as checked_number

    store, figure = _comparison_paths(first, second, out, figure, overwrite)
    per_split = deprecated_flag("--k", "--per-split", k, per_split, 100)
    for value, name in ((per_split, "per_split"), (samples, "samples"), (sampler_steps, "sampler_steps"),
                        (top_k, "top_k")):
        positive_count(value, name)
    checked_number(sigma, "sigma", positive=True)
    stored = [_stored_result(argument) for argument in (first, second)]
    if any(result is not None for result in stored):
        if any(result is None for result in stored):
            raise InputError("compare takes two checkpoints or two stored results, not one of each")
        from biasprobe.analyses.comparison import compare_results

        _report_comparison(compare_results(*stored), first, second, store, figure, overwrite, as_json)
        return
    pair = [load_model(path, device, arch=arch) for path in (first, second)]
    recorded = [d.source.training.get("data") for d in pair]
    name = data_name or recorded[0] or recorded[1]
    if not name:
        raise InputError("neither checkpoint records its training data: pass --data NAME")
    trained = [training_data(d, None, None, data_dir)[1] if data else None for d, data in zip(pair, recorded)]
    test = held_out_data(pair[0], name, per_split, data_dir)
    picture = read_image(image, pair[0].image_shape) if image else None
    dataset = run_comparison(*pair, test, tuple(trained), image=picture, sigma=sigma, samples=samples,
                             sampler_steps=sampler_steps, top_k=top_k, seed=seed, progress=True)
    _report_comparison(dataset, first, second, store, figure, overwrite, as_json)


def _stored_result(argument: Path):
    """The result a compare argument names if it is a store (STORE, or SWEEP:NAME); None for a checkpoint."""
    import biasprobe as bp
    from biasprobe.figures.base import as_dataset
    from biasprobe.store import store_exists
    from biasprobe.sweeps import select

    location, name = _split_store_argument(argument)
    if not store_exists(location):  # not a zarr store (folder or single file): a checkpoint (file or folder)
        return None
    dataset = bp.open(location)
    return select(dataset, name) if name else as_dataset(dataset)


def _split_store_argument(argument: Path) -> tuple[str, str]:
    """(location, checkpoint name) of SWEEP:NAME; (the argument, "") otherwise."""
    text = str(argument)
    location, _, name = text.rpartition(":")
    return (location, name) if location and not argument.exists() else (text, "")


def _label(argument: Path) -> str:
    location, name = _split_store_argument(argument)
    return name or Path(location).stem


def _report_comparison(dataset, first: Path, second: Path, store: Path, figure: Path | None, overwrite: bool,
                       as_json: bool) -> None:
    import biasprobe as bp
    from biasprobe.figures.comparison import comparison_figure

    report = Report(as_json)
    path = bp.save(dataset, store, overwrite=overwrite)
    measures = {"average_gap": "average gap (dB)", "memorized_share": "share of samples copying training",
                "effective_dimension": "tr J at the test image", "mean_harmonicity": "harmonicity"}
    values = {variable: dataset[variable].values for variable in measures if variable in dataset}
    if "mean_distance" in dataset:
        measures["mean_distance"] = "mean attention distance (px)"
        values["mean_distance"] = dataset.mean_distance.mean("layer").values
    records = [{"measure": variable, "label": measures[variable], "A": float(a), "B": float(b)}
               for variable, (a, b) in values.items()]
    report.set(a=str(first), b=str(second))
    report.table("measures", records, [
        Column("label", "", left=True), Column("A", f"A: {_label(first)}", number(".3g")),
        Column("B", f"B: {_label(second)}", number(".3g")),
    ], title=f"{first.name} (A) vs {second.name} (B)")
    if "eigenspace_overlap" in dataset:
        top, overlap = int(dataset.attrs["eigenspace_top"]), float(dataset.eigenspace_overlap)
        report.set(eigenspace_top=top, eigenspace_overlap=overlap)
        report.say(f"top-{top} eigenspace overlap {overlap:.3f}")
    if "sample_similarity" in dataset:
        similarity = float(dataset.sample_similarity.mean())
        report.set(sample_similarity=similarity)
        report.say(f"paired sample similarity {similarity:.3f} (mean over {dataset.sizes['sample']})")
    report.wrote(path, "zarr store")
    if figure is not None:
        from biasprobe.reports.folder import save_figure

        save_figure(comparison_figure(dataset, (_label(first), _label(second))), figure, dpi=130)
        report.wrote(figure, "figure")
    report.finish()


def _comparison_paths(first: Path, second: Path, out: Path | None, figure: Path | None,
                      overwrite: bool) -> tuple[Path, Path | None]:
    """The store and figure of ``compare``, checked before any work. ``--out FOLDER`` (no ``.zarr``) keeps
    its old meaning for one release: FOLDER/comparison.zarr and FOLDER/comparison.png."""
    from biasprobe.validation import output_folder

    if out is not None and out.suffix != ".zarr":
        typer.secho("--out FOLDER is deprecated and will be removed in the next release: --out names the store "
                    "(.zarr), --figure the figure", err=True, fg=typer.colors.YELLOW)
        output_folder(out, "out")
        out, figure = out / "comparison.zarr", figure or out / "comparison.png"
    default = Path(f"{_label(first)}-vs-{_label(second)}.compare.zarr")
    return result_paths(first, "compare", out or default, overwrite, figure), figure
