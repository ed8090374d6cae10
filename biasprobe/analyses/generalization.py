"""Generalization gap: denoising PSNR on training images against held-out images (An et al., Fig. 2).

At each noise level σ, every clean image x (K from the training set, K from the test set) is
noised once, y = x + σz, and denoised; the output PSNR is

    PSNR(x̂, x) = 10 log₁₀(1 / mean((clip(x̂, 0, 1) − x)²))    [dB, peak 1 on the [0, 1] scale].

The gap at σ is mean_train PSNR − mean_test PSNR, with standard error √(s²_train/K_train + s²_test/K_test);
the average gap is its mean over the noise levels of the run, with standard error
√(s̄²_train/K_train + s̄²_test/K_test), s̄² the variance over images of each image's PSNR averaged over
the levels (the same images enter every level, so the levels' errors need not be independent). A denoiser that memorizes its
training set restores training images far better than new ones (large gap); one that
generalizes restores both alike (gap ≈ 0).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import (
    SIGMA_ATTRS,
    STEP_ATTRS,
    StoreFigure,
    Sweep,
    analysis,
    noise_seed,
    with_provenance,
)
from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.noise import noise_levels, noisy
from biasprobe.progress import track

SPLITS = ("train", "test")


def default_noise_levels(denoiser: Denoiser) -> dict:
    """Fig. 2's axis for scheduled models (50 steps t = 0, 20, …, 980), else 20 σ from 0.01 to 1."""
    if denoiser.schedule is None:
        return {"sigmas": np.geomspace(0.01, 1.0, 20).tolist()}
    steps = denoiser.schedule.steps
    return {"timesteps": np.arange(0, steps, steps // 50).tolist()}


def psnr(estimate: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``estimate`` (clipped to [0, 1]) against ``clean``; peak value 1."""
    error = (estimate.clamp(0, 1) - clean).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / error.clamp_min(1e-10))  # perfect estimates read 100 dB


@analysis(
    "gap", public="gap", sweep=Sweep(needs_images=False, run="biasprobe.analyses.generalization:sweep_gap"),
    figures=[StoreFigure("gap", "Output PSNR on training and test images and their gap against the noise level "
                         "(An et al. Fig. 2)", "biasprobe.figures.generalization:gap_figure", per_checkpoint=True)],
    together=StoreFigure("gap", "The gap of every store, one colour per checkpoint (An et al. Fig. 2)",
                         "biasprobe.figures.generalization:gap_figure"),
    numbers="biasprobe.analyses.generalization:gap_numbers",
)
def gap(
    denoiser: Denoiser,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    *,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> xr.Dataset:
    """PSNR of the denoised train and test images at each noise level, and the generalization gap.

    Returns a Dataset with ``psnr`` (split, image, sigma), ``mean_psnr`` and ``sem_psnr``
    (split, sigma), ``gap`` and ``gap_sem`` (sigma) and the scalar ``average_gap``.
    """
    if sigmas is None and timesteps is None:
        levels = default_noise_levels(denoiser)
        sigmas, timesteps = levels.get("sigmas"), levels.get("timesteps")
    sigma, steps = noise_levels(denoiser, sigmas, timesteps)
    sets = {split: denoiser.check_images(torch.as_tensor(images)).float()
            for split, images in zip(SPLITS, (train_images, test_images))}
    count = max(len(images) for images in sets.values())
    values = np.full((2, count, len(sigma)), np.nan)
    work = [(s, i, start) for s in range(2) for i in range(len(sigma))
            for start in range(0, len(sets[SPLITS[s]]), batch_size)]
    with torch.no_grad():
        for split_index, level, start in track(
            work, f"denoising {len(sets['train'])} train and {len(sets['test'])} test images at {len(sigma)} σ",
            len(work), progress, unit="batches"):
            clean = sets[SPLITS[split_index]][start : start + batch_size]
            noisy_batch = torch.stack([
                noisy(x, float(sigma[level]), noise_seed(seed, split_index * count + start + j, level))
                for j, x in enumerate(clean)
            ]).to(denoiser.device)
            estimate = denoiser.denoise(noisy_batch, float(sigma[level])).float().cpu()
            values[split_index, start : start + len(clean), level] = psnr(estimate, clean).numpy()
    return _summarise(values, sigma, steps, {s: len(v) for s, v in sets.items()}, denoiser, seed)


def checkpoint_gap(
    denoiser: Denoiser,
    *,
    data: str | None = None,
    n_train: int | None = None,
    k: int = 300,
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    """:func:`gap` on the first min(K, N) of the checkpoint's own training images (data set, N, subset and seed
    from its metadata unless ``data`` / ``n_train`` are given) against the first K test images (the paper's K = 300
    per split where N allows: a small N does not shrink the test split); the Dataset's attrs add ``data`` and
    ``n_train``."""
    from biasprobe.data import held_out_set, training_set

    name, train_images = training_set(denoiser.source.training, denoiser.image_shape, data, n_train, data_dir)
    dataset = gap(denoiser, train_images[:k], held_out_set(name, denoiser.image_shape, k, data_dir),
                  sigmas, timesteps, seed=seed, progress=progress)
    dataset.attrs.update(data=name, n_train=len(train_images))
    return dataset


def sweep_gap(denoiser: Denoiser, images, *, seed: int = 0, k: int = 300, **options) -> xr.Dataset:
    """One checkpoint's gap in a sweep: :func:`checkpoint_gap` on min(K, N) training and K test images, its ``image``
    axis NaN-padded to K so that models with N < K fit the sweep's layout (``images_per_split`` keeps the
    counts)."""
    if images is not None:
        raise InputError("the gap sweep takes each checkpoint's own training images: give no images")
    return checkpoint_gap(denoiser, seed=seed, k=k, **options).reindex(image=np.arange(k))


def gap_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of gap stores: the average gap of each checkpoint and the images per split."""
    rows = [(f"average gap, {name}", f"{float(part.average_gap):.2f} dB over {part.sizes['sigma']} noise levels")
            for name, part in parts.items()]
    first = next(iter(parts.values()))
    if "images_per_split" in first:
        rows.append(("images per split (train, test)",
                     ", ".join(str(int(c)) for c in np.ravel(first.images_per_split.values)[:2])))
    return rows


def _summarise(values, sigma, steps, counts, denoiser, seed) -> xr.Dataset:
    dataset = xr.Dataset(
        {"psnr": (("split", "image", "sigma"), values, {"long_name": "output PSNR", "units": "dB"})},
        coords={
            "split": list(SPLITS),
            "image": np.arange(values.shape[1]),
            "sigma": ("sigma", sigma, SIGMA_ATTRS),
            "t": ("sigma", steps, STEP_ATTRS),
            "images_per_split": ("split", [counts[s] for s in SPLITS]),
        },
    )
    mean = dataset.psnr.mean("image", skipna=True)
    sem = dataset.psnr.std("image", skipna=True, ddof=1) / np.sqrt(dataset.images_per_split)
    dataset["mean_psnr"] = mean.assign_attrs(long_name="mean output PSNR", units="dB")
    dataset["sem_psnr"] = sem.assign_attrs(long_name="standard error of the mean PSNR", units="dB")
    difference = mean.sel(split="train", drop=True) - mean.sel(split="test", drop=True)
    dataset["gap"] = difference.drop_vars("images_per_split", errors="ignore").assign_attrs(
        long_name="train − test PSNR", units="dB", description="generalization gap: mean train PSNR − mean test PSNR")
    dataset["gap_sem"] = np.sqrt((sem**2).sum("split")).assign_attrs(long_name="standard error of the gap", units="dB")
    dataset["average_gap"] = dataset.gap.mean("sigma").assign_attrs(long_name="gap averaged over noise levels",
                                                                     units="dB")
    per_image = dataset.psnr.mean("sigma", skipna=True)
    spread = per_image.var("image", skipna=True, ddof=1) / dataset.images_per_split
    dataset["average_gap_sem"] = np.sqrt(spread.sum("split")).assign_attrs(
        long_name="standard error of the average gap", units="dB",
        description="from each image's PSNR averaged over the noise levels")
    return with_provenance(dataset, denoiser, "gap", seed)
