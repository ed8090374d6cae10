"""The "what the zoo gets" tables of docs/methods/jacobian.md, from jacobian stores.

Each argument is NAME=STORE (several stores of one checkpoint, e.g. one per test image, are
joined along ``image`` in the order given)::

    python tests/benchmarks/gahb_zoo_table.py unet-bf-n10-s1=a.zarr dit-n10=i0.zarr dit-n10=i1.zarr

Prints the per-(image, σ) table, then the per-checkpoint table: verdict per σ with the images per
category, the dimension trend β per image and the reasons for every memorizing image.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))


def joined(paths: list[str]):
    """One Dataset of the stores of a checkpoint, their images numbered by the store's image index
    plus the images of the stores before it."""
    import xarray as xr

    import biasprobe as bp

    parts = [bp.open(path) for path in paths]
    if len(parts) == 1:
        return parts[0]
    return xr.concat(parts, dim="image", data_vars="all", coords="minimal", compat="override",
                     combine_attrs="override").assign_coords(image=range(sum(p.sizes["image"] for p in parts)))


def main(arguments: list[str]) -> None:
    from biasprobe.analyses.harmonic import gahb_summary, verdict_line

    stores: dict[str, list[str]] = {}
    for argument in arguments:
        name, _, path = argument.partition("=")
        stores.setdefault(name, []).append(path)
    rows, verdicts = [], []
    for name, paths in stores.items():
        dataset = joined(paths)
        summary = gahb_summary(dataset)
        known = "memorization_score" in summary
        for i in range(summary.sizes["image"]):
            for s in range(summary.sizes["sigma"]):
                at, judged = dataset.isel(image=i, sigma=s), summary.isel(image=i, sigma=s)
                memorization = (f"{float(at.train_span_energy_weighted):.2f} / "
                                f"{float(at.held_out_span_energy_weighted):.2f} | {float(judged.memorization_score):.2f} | "
                                f"{float(at.nearest_train_cosine):.3f} / {float(at.nearest_held_out_cosine):.3f}"
                                if known else "– | – | –")
                rows.append(f"| {name} | {i} | {float(at.sigma):g} | {float(at.spectrum[0]):.2f} | "
                            f"{float(judged.effective_dimension):.1f} | {int(judged.count_above_half)} | "
                            f"{int(judged.top)} | {float(judged.harmonicity):.2f} | {float(judged.participation):.3f} | "
                            f"{float(judged.confinement_excess):.2f} | {memorization} | {judged.category.item()} |")
        per_sigma = " | ".join(verdict_line(summary, s) for s in range(summary.sizes["sigma"]))
        trend = ", ".join(f"{value:.3f}" for value in summary.dimension_trend.values)
        reasons = sorted({str(r) for r, c in zip(summary.reason.values.ravel(), summary.category.values.ravel())
                          if c in ("memorizing", "collapsed")})
        verdicts.append(f"| {name} | {per_sigma} | {trend} | {'; '.join(reasons) or '–'} |")
    sigmas = " | ".join(f"σ = {s:g}" for s in summary.sigma.values)
    print("| checkpoint | image | σ | λ₀ | tr J | #λ>½ | K | ρ | PR_Ω | κ | E^λ_T / E^λ_H | memorization | "
          "cos D(y)→train / held-out | category |\n| " + " | ".join(["---"] * 14) + " |")
    print("\n".join(rows))
    print(f"\n| checkpoint | {sigmas} | β per image | why memorizing |\n| "
          + " | ".join(["---"] * (summary.sizes["sigma"] + 3)) + " |")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main(sys.argv[1:])
