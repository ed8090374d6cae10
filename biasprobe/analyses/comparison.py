"""Two checkpoints side by side: generalization, memorization, Jacobian and attention locality.

Every part reuses the analysis that defines it (gap, memorization, jacobian, harmonic,
locality); this module only runs them on both denoisers with the same inputs and seeds and
stacks the results along a ``checkpoint`` dimension. Two quantities compare the pair directly:

- eigenspace overlap ‖U_Aᵀ U_B‖_F² / K of the top-K Jacobian eigenvectors at the same noisy
  image (1: the same subspace);
- paired sample similarity: the mean-removed cosine between sample i of A and sample i of B,
  drawn from the same seed (near 1 when both learned the same density).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from biasprobe.analyses.base import StoreFigure, analysis, with_provenance
from biasprobe.analyses.generalization import gap
from biasprobe.analyses.harmonic import eigenspace_overlap, gahb_summary
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.locality import locality
from biasprobe.analyses.memorization import memorization, paired_similarity
from biasprobe.denoiser import Denoiser
from biasprobe.errors import InputError
from biasprobe.progress import stage
from biasprobe.store import provenance

LABELS = ("A", "B")
GAP_SIGMAS = np.geomspace(0.02, 0.5, 10).tolist()
"""Default noise levels of the gap part: ten σ ([0, 1] scale) inside every schedule's range."""


def compare_caption(dataset: xr.Dataset) -> str:
    """The panels the comparison figure draws for this store (UNets have no attention, a comparison
    without training data no gap nor samples)."""
    panels = [words for words, variable in (("gap", "gap"), ("Jacobian spectra", "eigenvalue"),
                                            ("attention locality", "mean_distance"),
                                            ("samples from the same seeds", "sample_image")) if variable in dataset]
    listed = ", ".join(panels[:-1]) + " and " + panels[-1] if len(panels) > 1 else "".join(panels)
    return f"Two checkpoints side by side: {listed}"


@analysis(
    "compare", public="compare",
    figures=[StoreFigure("compare", compare_caption, "biasprobe.figures.comparison:comparison_store_figure")],
    numbers="biasprobe.analyses.comparison:compare_numbers",
)
def compare(
    first: Denoiser,
    second: Denoiser,
    test_images: torch.Tensor,
    train_images: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    *,
    image: torch.Tensor | None = None,
    sigma: float = 0.1,
    gap_sigmas: list[float] | None = None,
    samples: int = 8,
    sampler_steps: int = 100,
    top_k: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> xr.Dataset:
    """Compare two denoisers of the same image shape.

    ``train_images`` are each model's training images (the gap and memorization parts are skipped
    for a model without them); ``image`` (default: the first test image) is where both Jacobians
    and attention maps are taken, at noise level ``sigma``. ``sampler_steps`` is the number of
    DDIM steps for scheduled models (blind ones use the coarse-to-fine ascent). The provenance attrs name A as
    ``checkpoint`` and B as ``checkpoint_b``.
    """
    if tuple(first.image_shape) != tuple(second.image_shape):
        raise InputError(f"the checkpoints take different images: {first.image_shape} and {second.image_shape}")
    image = test_images[:1] if image is None else image.reshape(1, *first.image_shape)
    pair = (first, second)
    parts: list[xr.Dataset] = []

    spectra = [_staged(f"Jacobian of {label}", jacobian, d, image, [sigma], top_k=top_k, seed=seed, progress=progress)
               for label, d in zip(LABELS, pair)]
    stacked = xr.concat([s.drop_vars("t") for s in spectra], dim="image")
    count = min(top_k, stacked.sizes["rank"])
    parts.append(xr.Dataset({
        "eigenvalue": _stack([s.eigenvalue.isel(image=0, sigma=0, rank=slice(0, count)) for s in spectra]),
        "effective_dimension": _stack([s.effective_dimension.isel(image=0, sigma=0) for s in spectra]),
        "mean_harmonicity": _stack([gahb_summary(s, min(count, s.sizes["rank"])).harmonicity.isel(image=0, sigma=0)
                                    for s in spectra]),
        "eigenspace_overlap": eigenspace_overlap(stacked, 0, 1, count).isel(sigma=0, drop=True).assign_attrs(
            long_name="overlap of the top-K Jacobian eigenspaces of A and B at the same noisy image", top=count),
    }))

    if first.attention_modules() and second.attention_modules():
        maps = [_staged(f"attention of {label}", locality, d, test_images[: max(2, min(8, len(test_images)))],
                        [sigma], seed=seed, progress=progress) for label, d in zip(LABELS, pair)]
        if maps[0].sizes["layer"] == maps[1].sizes["layer"]:
            parts.append(xr.Dataset({
                "mean_distance": _stack([m.mean_distance.mean(("image", "head"), keep_attrs=True).isel(sigma=0, drop=True)
                                         for m in maps]),
            }))

    if all(t is not None for t in train_images):
        gaps = [_staged(f"gap of {label}", gap, d, t[: len(test_images)], test_images, gap_sigmas or GAP_SIGMAS,
                        seed=seed, progress=progress) for label, d, t in zip(LABELS, pair, train_images)]
        parts.append(xr.Dataset({
            "mean_psnr": _stack([g.mean_psnr.drop_vars("t") for g in gaps]),
            "gap": _stack([g.gap.drop_vars("t") for g in gaps]),
            "gap_sem": _stack([g.gap_sem.drop_vars("t") for g in gaps]),
            "average_gap": _stack([g.average_gap for g in gaps]),
        }))
        drawn = [_staged(f"samples of {label}", memorization, d, samples, t, seed=seed, progress=progress,
                         steps=sampler_steps) for label, d, t in zip(LABELS, pair, train_images)]
        parts.append(xr.Dataset({
            "memorized_share": _stack([m.memorized_share for m in drawn]),
            "sample_image": _stack([m.sample_image for m in drawn]),
            "sample_similarity": ("sample", paired_similarity(*(torch.from_numpy(m.sample_image.values) for m in drawn)),
                                  {"long_name": "mean-removed cosine of sample i of A and sample i of B"}),
        }))
    dataset = xr.merge(parts, compat="override", combine_attrs="override").drop_vars(["image", "t"], errors="ignore")
    dataset.attrs = {}  # the parts' own attrs; each variable keeps its long_name and units (axis labels)
    dataset = with_provenance(dataset, first, "compare", seed, sigma=float(sigma), eigenspace_top=count)
    if second.source.path is not None:
        dataset.attrs.update(checkpoint_b=second.source.path, checkpoint_b_sha256=second.source.sha256)
    return dataset


COMPARABLE = ("gap", "jacobian", "locality")
"""Analyses whose stored results :func:`compare_results` compares."""


def compare_results(first: xr.Dataset, second: xr.Dataset) -> xr.Dataset:
    """The part of :func:`compare` that two stored results of one analysis hold, computing nothing:
    A = ``first``, B = ``second`` stacked along ``checkpoint``. Results of two checkpoints of a sweep
    store come from ``bp.sweeps.select(store, NAME)``; they may come from two stores as well.

    - gap: ``mean_psnr``, ``gap``, ``gap_sem`` and ``average_gap`` (the same σ in both);
    - jacobian: at the first image and the first σ (the same in both), ``eigenvalue`` of the top
      K = min(K_A, K_B), ``effective_dimension`` and, with eigenvectors in both, the eigenspace
      overlap ‖U_Aᵀ U_B‖_F² / K;
    - locality: ``mean_distance`` per layer, averaged over images and heads, at the first σ.
    """
    kinds = [result.attrs.get("analysis") for result in (first, second)]
    if kinds[0] != kinds[1] or kinds[0] not in COMPARABLE:
        raise InputError(f"compare takes two results of one analysis ({', '.join(COMPARABLE)}), not "
                         f"{kinds[0]!r} and {kinds[1]!r}")
    kind, pair = kinds[0], (first, second)
    if kind == "gap":
        if not np.allclose(first.sigma.values, second.sigma.values):
            raise InputError("the two gap results are at different noise levels; compare results at the same σ")
        dataset = xr.Dataset({name: _stack([r[name].drop_vars("t", errors="ignore") for r in pair])
                              for name in ("mean_psnr", "gap", "gap_sem", "average_gap")})
        sigma = float(first.sigma[0])
    else:
        sigma = float(first.sigma[0])
        if not np.isclose(sigma, float(second.sigma[0])):
            raise InputError(f"the two {kind} results start at different noise levels ({sigma:.3g} and "
                             f"{float(second.sigma[0]):.3g}); compare results at the same σ")
        if kind == "jacobian":
            count = min(r.sizes["rank"] for r in pair)
            spectra = [r.isel(image=0, sigma=0, rank=slice(0, count)) for r in pair]
            dataset = xr.Dataset({"eigenvalue": _stack([s.eigenvalue.drop_vars("t", errors="ignore") for s in spectra]),
                                  "effective_dimension": _stack([s.effective_dimension.drop_vars("t", errors="ignore")
                                                                 for s in spectra])})
            if all("eigenvector" in r for r in pair):
                stacked = xr.concat([r.isel(image=[0], sigma=[0]).drop_vars("t", errors="ignore") for r in pair],
                                    dim="image", coords="minimal", compat="override")
                dataset["eigenspace_overlap"] = eigenspace_overlap(stacked, 0, 1, count).isel(sigma=0, drop=True)
                dataset["eigenspace_overlap"].attrs.update(
                    long_name="overlap of the top-K Jacobian eigenspaces of A and B at the same noisy image")
            dataset.attrs["eigenspace_top"] = count
        else:
            dataset = xr.Dataset({"mean_distance": _stack([r.mean_distance.isel(sigma=0, drop=True).mean(("image", "head"))
                                                           for r in pair])})
    dataset = dataset.drop_vars(["image", "t", "sigma"] if kind != "gap" else ["t"], errors="ignore")
    dataset.attrs.update(provenance(seed=first.attrs.get("seed")), analysis="compare", compared=kind, sigma=sigma)
    for suffix, result in (("", first), ("_b", second)):  # the results' checkpoints, as they recorded them
        dataset.attrs.update({f"{key}{suffix}": result.attrs[key] for key in ("checkpoint", "checkpoint_sha256")
                              if key in result.attrs})
    return dataset


def compare_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of a compare store: the eigenspace overlap, paired sample similarity, gaps."""
    dataset = next(iter(parts.values()))
    rows = [(f"top-{dataset.attrs.get('eigenspace_top', 'K')} Jacobian eigenspace overlap",
             f"{float(dataset.eigenspace_overlap):.3f}")]
    if "sample_similarity" in dataset:
        rows.append(("paired sample similarity (mean)", f"{float(dataset.sample_similarity.mean()):.3f}"))
    if "average_gap" in dataset:
        rows.append(("average gap, A / B", " / ".join(f"{float(v):.2f} dB" for v in dataset.average_gap.values)))
    return rows


def _staged(label: str, analysis, *args, **options):
    """Run ``analysis(*args, **options)`` with its progress prefixed by ``label``."""
    with stage(label):
        return analysis(*args, **options)


def _stack(arrays: list[xr.DataArray]) -> xr.DataArray:
    return xr.concat(arrays, dim="checkpoint", coords="minimal", compat="override",
                     combine_attrs="override").assign_coords(checkpoint=list(LABELS))
