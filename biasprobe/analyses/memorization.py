"""Memorization: do samples copy training images, and do two models learn the same density?

Similarity is the cosine of mean-removed images (Kadkhodaie et al. 2024),

    cos(a, b) = ⟨a − ā, b − b̄⟩ / (‖a − ā‖ ‖b − b̄‖),

so it ignores brightness offsets. For each sample, the nearest training image is the one of
highest similarity; the memorized share is the fraction of samples whose nearest similarity
exceeds a threshold (default 0.95). For two models trained on disjoint sets S1 and S2 and
sampled from the same seeds, the similarity of paired samples near 1 means both learned the
same density (generalization); near their nearest-training similarity, each copies its own set.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import StoreFigure, analysis, with_provenance


def centred_unit(images: torch.Tensor) -> torch.Tensor:
    """Flattened images with their mean removed, scaled to unit norm: (B, C·H·W)."""
    flat = images.flatten(1).double()
    flat = flat - flat.mean(1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_training(samples: torch.Tensor, training: torch.Tensor, threshold: float = 0.95) -> xr.Dataset:
    """For each sample: the index of and similarity to its nearest training image, and the memorized share."""
    similarity = centred_unit(samples) @ centred_unit(training).T
    best, index = similarity.max(dim=1)
    dataset = xr.Dataset(
        {
            "nearest_similarity": ("sample", best.numpy(), {"long_name": "mean-removed cosine similarity to the "
                                                            "nearest training image"}),
            "nearest_index": ("sample", index.numpy(), {"long_name": "index of the nearest training image"}),
        },
        coords={"sample": np.arange(len(samples))},
    )
    dataset["memorized_share"] = xr.DataArray(float((best > threshold).double().mean()), attrs={
        "long_name": f"share of samples with nearest similarity above {threshold}", "threshold": threshold})
    return dataset


def paired_similarity(samples_a: torch.Tensor, samples_b: torch.Tensor) -> np.ndarray:
    """Mean-removed cosine similarity of sample i of model A with sample i of model B."""
    return (centred_unit(samples_a) * centred_unit(samples_b)).sum(1).numpy()


@analysis(
    "memorization", public="memorization",
    figures=[StoreFigure("samples", "Samples (top) above their nearest training images, with the mean-removed "
                         "cosine similarity", "biasprobe.figures.generalization:nearest_figure")],
    numbers="biasprobe.analyses.memorization:memorization_numbers",
)
def memorization(
    denoiser,
    count: int,
    training_images: torch.Tensor | None = None,
    *,
    threshold: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    **sampler_options,
) -> xr.Dataset:
    """Seeded samples of ``denoiser`` and, given its training images, each one's nearest copy.

    ``sampler_options`` go to :func:`biasprobe.training.samplers.sample` (method, steps, ...).
    """
    from biasprobe.training.samplers import sample

    samples = sample(denoiser, count, seed=seed, progress=progress, **sampler_options)
    dataset = xr.Dataset({"sample_image": (("sample", "channel", "y", "x"), samples.numpy(),
                                           {"long_name": "sample", "units": "[0, 1]"})},
                         coords={"sample": np.arange(count)})
    if training_images is not None:
        found = nearest_training(samples, training_images, threshold)
        nearest = training_images[torch.from_numpy(found.nearest_index.values)].numpy()
        dataset = dataset.merge(found)
        dataset["nearest_image"] = (("sample", "channel", "y", "x"), nearest, {"long_name": "nearest training image"})
    return with_provenance(dataset, denoiser, "memorization", seed, **{
        k: v for k, v in sampler_options.items() if isinstance(v, (int, float, str))})


def memorization_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of a memorization store: samples, the share copying a training image and the
    median nearest similarity."""
    dataset = next(iter(parts.values()))
    rows = [("samples", str(dataset.sizes["sample"]))]
    if "memorized_share" in dataset:
        threshold = dataset.memorized_share.attrs.get("threshold", "the threshold")
        rows += [(f"share copying a training image (similarity > {threshold})", f"{float(dataset.memorized_share):.0%}"),
                 ("median nearest similarity", f"{float(dataset.nearest_similarity.median()):.3f}")]
    return rows
