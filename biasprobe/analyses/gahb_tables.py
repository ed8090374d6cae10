"""What ``biasprobe jacobian`` prints and ``biasprobe report`` reads of a Jacobian store: the GAHB tables.

One piece of code for both (the registry names :func:`jacobian_summary` as the jacobian analysis's
command summary and :func:`jacobian_numbers` as its report numbers); the verdict they show is
:mod:`biasprobe.analyses.harmonic`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import xarray as xr

from biasprobe.analyses.harmonic import CATEGORIES, gahb_summary, verdict_line
from biasprobe.errors import InputError
from biasprobe.summary import Column, Line, Records, Summary, Table, number, records

def _value(array) -> float | None:
    """A float, None for NaN (null in the JSON)."""
    value = float(array)
    return None if math.isnan(value) else value


def jacobian_summary(parts: Mapping[str, xr.Dataset]) -> Summary:
    """What ``biasprobe jacobian`` prints of each checkpoint's store (``parts``: {name: Dataset}).

    Three tables per checkpoint, each at most 80 columns wide. ``pairs``, one record per (image, σ):
    λ₀, the λ at d/8 and d/4 when computed, s₀, tr(J), #λ>½, asymmetry and the worst eigen-residual
    (starred above the tolerance); ``gahb``, per (image, σ): #λ>1 (skipped), K, ρ, PR_Ω, κ, the memorization
    diagnostics when known and the image's category; ``verdicts``, per σ: mean tr(J) and #λ>½ and the
    verdict with the images per category. Then the slope of log tr(J) against log σ per image."""
    summary: Summary = []
    for name, dataset in parts.items():
        summary += _checkpoint_summary(name, dataset)
    return summary


def _checkpoint_summary(name: str, dataset: xr.Dataset) -> Summary:
    """The tables and lines of one checkpoint (see :func:`jacobian_summary`)."""
    out: Summary = []
    d = int(dataset.attrs["dimension"])
    tolerance = float(dataset.attrs["tolerance"])
    method = dataset.attrs["method"]
    ranks = [k for k in (0, d // 8, d // 4) if k < dataset.sizes["index"]]
    records = []
    for i in range(dataset.sizes["image"]):
        for s in range(dataset.sizes["sigma"]):
            at = dataset.isel(image=i, sigma=s)
            records.append({
                "checkpoint": name, "image": i, "sigma": float(at.sigma), "t": _value(at.t),
                **{f"eigenvalue_{k}": float(at.spectrum[k]) for k in ranks},
                "singular_value_0": float(at.singular_spectrum[0]) if "singular_spectrum" in at else None,
                "trace": float(at.effective_dimension), "count_above_half": int((at.spectrum > 0.5).sum()),
                "asymmetry": float(at.asymmetry), "worst_residual": float(at.eigen_residual.max()),
            })
    out.append(Records("checkpoints", [{"checkpoint": name, "dimension": d, "method": method, "tolerance": tolerance}]))
    missed = method != "dense" and any(record["worst_residual"] > tolerance for record in records)
    columns = [
        Column("image", "image"), Column("sigma", "σ", number("g")), Column("t", "t", number(".1f")),
        *(Column(f"eigenvalue_{k}", f"λ{k}", number(".3f")) for k in ranks),
        Column("singular_value_0", "s0", number(".3f")), Column("trace", "tr J", number(".1f")),
        Column("count_above_half", "#λ>½"), Column("asymmetry", "asym", number(".3f")),
        Column("worst_residual", "resid", lambda r: f"{r:.1e}" + ("*" if missed and r > tolerance else "")),
    ]
    out.append(Table(
        "pairs", records, columns,
        title=f"{name}: Jacobian of the {dataset.attrs['output']} output, d = {d}, {method}",
        caption="λk: eigenvalue k of (J + Jᵀ)/2; s0: largest singular value; #λ>½: eigenvalues above ½; "
        "asym: ‖J − Jᵀ‖/‖J‖; resid: worst ‖Se − λe‖/|λ|" + (f" (* above the tolerance {tolerance:g})" if missed else ""),
    ))
    if dataset.sizes["rank"] < 2:
        return out
    try:
        summary = gahb_summary(dataset)
    except InputError as error:  # a raw-output store with the top-k raw eigenvectors only
        return [*out, Line(f"no GAHB verdict: {error}")]
    memorized = "memorization_score" in summary
    images = []
    for i in range(summary.sizes["image"]):
        for s in range(summary.sizes["sigma"]):
            judged, at = summary.isel(image=i, sigma=s), dataset.isel(image=i, sigma=s)
            record = {"checkpoint": name, "image": i, "sigma": float(judged.sigma),
                      "count_above_one": int(judged.count_above_one), "top": int(judged.top),
                      "harmonicity": float(judged.harmonicity), "participation": float(judged.participation),
                      "confinement_excess": _value(judged.confinement_excess)}
            if memorized:
                record |= {"memorization_score": _value(judged.memorization_score),
                           "nearest_train_cosine": float(at.nearest_train_cosine),
                           "nearest_held_out_cosine": float(at.nearest_held_out_cosine)}
            images.append(record | {"category": str(judged.category.item()), "reason": str(judged.reason.item())})
    memorization_columns = [Column("memorization_score", "mem", number(".2f")),
                            Column("nearest_train_cosine", "cos tr", number(".3f")),
                            Column("nearest_held_out_cosine", "cos ho", number(".3f"))] if memorized else []
    out.append(Table("gahb", images, [
        Column("image", "image"), Column("sigma", "σ", number("g")), Column("count_above_one", "#λ>1"),
        Column("top", "K"), Column("harmonicity", "ρ", number(".2f")), Column("participation", "PR_Ω", number(".3f")),
        Column("confinement_excess", "κ", number(".2f")), *memorization_columns,
        Column("category", "category", left=True),
    ], title=f"{name}: GAHB metrics on Ω ({summary.attrs['support']}) over the top K eigenvectors",
       caption="#λ>1: overshoot eigenvalues, skipped; K: eigenvectors judged after them; ρ: harmonicity; "
               "PR_Ω: participation ratio; κ: confinement" + (
           "; mem: memorization score; cos tr / cos ho: cosine of D(y) to its nearest training / held-out "
           "image" if memorized else "")))
    for record in images:
        if record["category"] in CATEGORIES[:2]:
            out.append(Line(f"image {record['image']}, σ = {record['sigma']:g}: {record['category']}, by", True))
            out += [Line(f"  {test}", True) for test in record["reason"].split("; ")]
    verdicts = []
    for s in range(summary.sizes["sigma"]):
        at = summary.isel(sigma=s)
        verdicts.append({
            "checkpoint": name, "sigma": float(at.sigma), "mean_trace": float(at.effective_dimension.mean()),
            "mean_count_above_half": float(at.count_above_half.mean()),
            "mean_harmonicity": float(at.mean_harmonicity), "mean_participation": float(at.mean_participation),
            "mean_confinement_excess": _value(at.mean_confinement_excess), "adaptivity": float(at.adaptivity),
            "verdict": str(at.verdict.item()), "summary": verdict_line(summary, s),
            "counts": {label: int(n) for label, n in zip(CATEGORIES, at.category_count.values)},
        })
    out.append(Table("verdicts", verdicts, [
        Column("sigma", "σ", number("g")), Column("mean_trace", "tr J", number(".1f")),
        Column("mean_count_above_half", "#λ>½", number(".1f")),
        Column("summary", "verdict (images per category)", left=True),
    ], title=f"{name}: GAHB verdict", caption="tr J, #λ>½: means over the images"))
    trend = [{"checkpoint": name, "image": i, "slope": _value(value)}
             for i, value in enumerate(summary.dimension_trend.values)]
    out.append(Records("dimension_trend", trend))
    if any(record["slope"] is not None for record in trend):
        out += [Line("d log tr(J) / d log σ per image: " + ", ".join(number(".3f")(r["slope"]) for r in trend), True),
                Line(f"  (< 0: tr J falls with σ, as when generalizing; ≥ {summary.attrs['trend_threshold']:g}: flat,",
                     True),
                Line(f"  as when memorizing, judged with at least {summary.attrs['trend_min_sigmas']} σ)", True)]
    return out


def jacobian_numbers(parts: Mapping[str, xr.Dataset]) -> list[tuple[str, str]]:
    """A report's key numbers of jacobian stores, read from :func:`jacobian_summary`'s records: per checkpoint
    and σ, the mean tr J over the images and, with a verdict, the mean harmonicity, the adaptivity and the
    verdict."""
    rows = []
    for name, part in parts.items():
        summary = jacobian_summary({name: part})
        pairs, verdicts = records(summary, "pairs"), {r["sigma"]: r for r in records(summary, "verdicts")}
        for sigma in dict.fromkeys(record["sigma"] for record in pairs):
            value = f"tr J {np.mean([r['trace'] for r in pairs if r['sigma'] == sigma]):.1f}"
            if sigma in verdicts:
                verdict = verdicts[sigma]
                adapted = verdict["adaptivity"]  # NaN (None in records) with one image: no pair to compare
                shown = (f"adaptivity {adapted:.2f}" if adapted is not None and np.isfinite(adapted)
                         else "adaptivity undefined (one image)")
                value += f"; harmonicity {verdict['mean_harmonicity']:.2f}, {shown}: {verdict['verdict']}"
            rows.append((f"{name}, σ = {sigma:.3g}", value))
    return rows


__all__ = ["jacobian_numbers", "jacobian_summary"]
