"""The numbers of the paper's items: labels of cells, the memorizer checks, and the items' tables, each
computed from the stores an item found ({cell: [Dataset per seed]}). How to read the memorizers table:
docs/reports.md ("The memorizers item")."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from biasprobe.reports.memorizers import SPAN_TOP, ideal_in_span, memorizer_check, top_mean
from biasprobe.reports.zoo import AT_MEMORIZER_SIGMA, FAMILY_NAMES, IDEAL, MEMORIZERS, Cell

Found = dict[Cell, list[xr.Dataset]]
"""What an item found: the stores of each of its cells the zoo has, one per seed."""
Table = tuple[list[str], list[list[str]]]
"""A table: its header and rows."""


def cell_label(cell: Cell, runs: list[xr.Dataset]) -> str:
    """``DiT local N=100 (3 seeds)``: the family, a variant other than global, N (the stores' for the largest N)
    and how many seeds were found, if several."""
    n = f"N={cell.n}" if cell.n is not None else f"N={runs[0].attrs.get('n_train', 'max')}"
    variant = "" if cell.variant == "global" else f" {cell.variant}"
    seeds = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
    return f"{FAMILY_NAMES.get(cell.family, cell.family)}{variant} {n}{seeds}"


def gap_table(found: Found) -> Table:
    """Per cell its average gap, mean ± s.d. over its seeds, and how many seeds."""
    rows = []
    for cell, runs in found.items():
        gaps = np.array([float(ds.average_gap) for ds in runs])
        spread = f" ± {gaps.std(ddof=1):.2f}" if len(gaps) > 1 else ""
        rows.append([cell_label(cell, runs), f"{gaps.mean():.2f}{spread}", str(len(gaps))])
    return ["model", "average gap (dB), mean ± s.d. over seeds", "seeds"], rows


def memorizer_checks(found: Found, span_kind: str | None = None):
    """The :class:`~biasprobe.reports.memorizers.MemorizerCheck` of every N = 10 model the item has a store of, from
    the span stores of ``span_kind`` (None: the report's σ; :data:`AT_MEMORIZER_SIGMA`: the memorizer σ)."""
    checks = []
    for family, variant, subset in MEMORIZERS:
        share = found.get(Cell(family, 10, variant, subset, analysis="memorization"))
        span = found.get(Cell(family, 10, variant, subset, analysis=span_kind))
        contrast = found.get(Cell(family, None, variant, analysis=span_kind))
        if share or span:
            checks.append(memorizer_check(Cell(family, 10, variant, subset), share[0] if share else None,
                                          span[0] if span else None, contrast[0] if contrast else None))
    return checks


def trained_sigma_max(store: xr.Dataset) -> float | None:
    """The largest σ a blind model was trained at (its store's provenance), None when not recorded or when the
    model has a schedule (trained at every step of it; its training record's ``sigma_max`` is unused)."""
    try:
        architecture = json.loads(store.attrs.get("architecture", "{}"))
    except ValueError:
        return None
    value = architecture.get("training", {}).get("sigma_max")
    return None if value is None or architecture.get("schedule") is not None else float(value)


def memorizers_table(found: Found) -> Table:
    """Per N = 10 model a row at the report's σ and one at the memorizer σ; above them, the ideal memorizer of
    each training set at both σ (the known answer: its check is the span part of the rule against its held-out
    span, with the mean max posterior weight)."""
    number = lambda value: "—" if value is None else f"{value:.3f}"
    first, second = memorizer_checks(found), {c.cell: c for c in memorizer_checks(found, AT_MEMORIZER_SIGMA)}
    level = lambda checks: next((float(c.span_store.sigma[0]) for c in checks if c.span_store is not None), None)
    sigmas = [s for s in (level(first), level(second.values())) if s is not None]

    def row(c, sigma: float | None) -> list[str]:
        trained = trained_sigma_max(c.span_store) if c.span_store is not None else None
        beyond = f" (trained at σ ≤ {trained:g})" if trained is not None and sigma is not None and sigma > trained else ""
        return [c.label, "—" if sigma is None else f"{sigma:g}{beyond}", number(c.share), number(c.denoised_cosine), number(c.top_eigenvalue),
                number(c.span), number(c.held_out), number(c.chance),
                "—" if c.contrast is None else f"{c.contrast:.3f} (N={c.contrast_n})", number(c.raw_top), c.verdict]

    ideals = {}
    for family, variant, subset in MEMORIZERS:
        for store in found.get(Cell(family, 10, variant, subset, analysis=IDEAL), []):
            ideals.setdefault((store.attrs.get("data"), store.attrs.get("subset"), store.attrs.get("training_seed"),
                               store.attrs.get("n_train")), store)
    rows = []
    for (_, subset, _, n), ideal in ideals.items():
        for sigma in sigmas:
            if not np.isclose(ideal.sigma.values, sigma).any():
                continue
            at = ideal.sel(sigma=sigma, method="nearest")
            passes = "passes" if ideal_in_span(ideal, float(at.sigma)) else "fails"
            rows.append([f"ideal memorizer ({str(subset).upper()}'s {n} images)", f"{sigma:g}", "—",
                         number(float(at.nearest_train_cosine.mean())),
                         number(float(at.denoiser_eigenvalue.isel(denoiser_rank=0).mean())),
                         number(top_mean(at, "train_span_fraction")), number(top_mean(at, "held_out_span_fraction")),
                         number(float(at.train_span_chance.mean())), "—", "—",
                         f"reference: mean max wᵢ {float(at.mean_max_posterior_weight):.2f}; in span: {passes}"])
    for c in first:
        if c.span_store is not None or c.share is not None:
            rows.append(row(c, level(first)))
        if c.cell in second and second[c.cell].span_store is not None:
            rows.append(row(second[c.cell], float(second[c.cell].span_store.sigma[0])))
    k = f"top {SPAN_TOP}"
    return (["model", "σ", "memorized share", "D(y) to nearest training image (cosine)", "λ₀ of ∂D/∂y",
             f"{k}: training span", f"{k}: held-out span", "chance", f"{k}: largest-N model", f"raw output's {k}",
             "check"], rows)


def survey_label(cell: Cell, runs: list[xr.Dataset]) -> str:
    """:func:`cell_label`, with the σ of a survey at the memorizer σ."""
    label = cell_label(cell, runs)
    return label if cell.analysis is None else f"{label} at the memorizer σ = {float(runs[0].sigma[0]):g}"


def survey_table(found: Found) -> Table:
    """Per survey (first seed): the GAHB call over its test images (at the v3 verdict's σ where the store has them,
    else at its σ), with the harmonic share and its 95 % bootstrap interval; #λ > 1 (median, max), the mean
    asymmetry ‖J − Jᵀ‖_F/‖J‖_F, λ₀ (median) and tr J (mean) over images and draws."""
    from biasprobe.analyses.harmonic import model_call
    from biasprobe.analyses.survey import SPLITS, VERDICT_SIGMAS, draw_summaries

    rows = []
    for cell, runs in found.items():
        survey = runs[0]
        verdict = [s for s in VERDICT_SIGMAS if np.isclose(survey.sigma.values, s).any()]
        sigmas = verdict if len(verdict) == len(VERDICT_SIGMAS) else list(survey.sigma.values)
        call, share, (low, high) = model_call(draw_summaries(survey, sigmas))
        tested = survey.isel(image=np.flatnonzero(survey.split.values == SPLITS[0]))
        tested = tested.isel(sigma=[int(np.argmin(np.abs(tested.sigma.values - s))) for s in sigmas])
        rows.append([survey_label(cell, runs), ", ".join(f"{s:g}" for s in sigmas),
                     f"{call} ({share:.2f}; {low:.2f}-{high:.2f})",
                     f"{np.median(tested.count_above_one.values):.0f} ({int(tested.count_above_one.max())})",
                     f"{float(tested.asymmetry.mean()):.2f}", f"{float(tested.largest_eigenvalue.median()):.3g}",
                     f"{float(tested.effective_dimension.mean()):.1f}"])
    return (["model", "σ", "GAHB call (harmonic share; 95 % interval)", "#λ > 1 median (max)", "asymmetry",
             "λ₀ median", "tr J mean"], rows)
