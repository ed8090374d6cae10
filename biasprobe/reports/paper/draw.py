"""How each item of the paper is drawn: :data:`DRAWINGS` maps the name an :class:`~biasprobe.reports.paper.
catalogue.Item` gives (its ``figure``) to a function of what the item found ({cell: [Dataset per seed]}) that
labels the cells and calls a figure function of :mod:`biasprobe.figures` (which take Datasets only); None when
what was found cannot make the figure. :data:`TABLES` does the same for the items' tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from biasprobe.reports.paper.tables import (
    Found,
    Table,
    cell_label,
    gap_table,
    memorizer_checks,
    memorizers_table,
    survey_label,
    survey_table,
)
from biasprobe.reports.zoo import AT_MEMORIZER_SIGMA, FAMILY_NAMES, SURVEY_AT_MEMORIZER_SIGMA

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPAN_DRAWN = 20
"""Ranks of the denoiser's Jacobian drawn in the memorizers figure."""


def gap_curves(found: Found) -> Figure:
    """An et al. Fig. 2: :func:`~biasprobe.figures.generalization.seeds_gap_figure` of every cell."""
    from biasprobe.figures.generalization import seeds_gap_figure

    return seeds_gap_figure({cell_label(cell, runs): runs for cell, runs in found.items()})


def gap_bars(found: Found) -> Figure:
    """Fig. 6, Tables 2 and 3: :func:`~biasprobe.figures.generalization.average_gap_bars_figure`, global
    attention in grey."""
    from biasprobe.figures.generalization import average_gap_bars_figure

    runs = {cell_label(cell, datasets): datasets for cell, datasets in found.items()}
    reference = {cell_label(cell, datasets) for cell, datasets in found.items() if cell.variant == "global"}
    return average_gap_bars_figure(runs, reference)


def eigenvectors(found: Found) -> Figure:
    """Figs. 1 and 3: :func:`~biasprobe.figures.jacobian.spectra_and_eigenvectors_figure` of each cell's first
    seed."""
    from biasprobe.figures.jacobian import spectra_and_eigenvectors_figure

    return spectra_and_eigenvectors_figure({cell_label(cell, runs): runs[0] for cell, runs in found.items()})


def attention_maps(found: Found) -> Figure:
    """Fig. 4: :func:`~biasprobe.figures.locality.attention_rows_figure` of each cell's first seed."""
    from biasprobe.figures.locality import attention_rows_figure

    return attention_rows_figure({cell_label(cell, runs[:1]): runs[0] for cell, runs in found.items()})


def attention_and_layers(found: Found) -> Figure:
    """Fig. 4 under science v3: :func:`~biasprobe.figures.locality.attention_and_layers_figure` (maps of each cell's
    first seed, the per-layer distance of every cell with its error bars)."""
    from biasprobe.figures.locality import attention_and_layers_figure

    return attention_and_layers_figure({cell_label(cell, runs): runs for cell, runs in found.items()})


def twins(found: Found) -> Figure | None:
    """Kadkhodaie et al.: :func:`~biasprobe.figures.memorization.twins_figure` of every N with both an S1 and
    an S2 model (None: no such N)."""
    from biasprobe.figures.memorization import twins_figure

    pairs = {}
    for cell, runs in found.items():
        twin = next((c for c in found if c.n == cell.n and c.subset == "s2"), None)
        if cell.subset == "s1" and twin is not None:
            pairs[cell.n] = (runs[0], found[twin][0])
    return twins_figure(pairs) if pairs else None


def memorizers(found: Found) -> Figure | None:
    """The memorizers: :func:`~biasprobe.figures.memorization.memorizers_figure` of the memorizer checks, a
    span panel per family and variant with its N = 10 models at both σ and their largest-N contrasts."""
    from biasprobe.figures.memorization import memorizers_figure

    checks = memorizer_checks(found)
    second = {c.cell: c for c in memorizer_checks(found, AT_MEMORIZER_SIGMA)}
    if not checks:
        return None
    groups = list(dict.fromkeys((c.cell.family, c.cell.variant) for c in checks if c.span_store is not None))
    at = lambda store: f", σ = {float(store.sigma[0]):g}"  # noqa: E731
    panels = {}
    for family, variant in groups:
        group = [c for c in checks if (c.cell.family, c.cell.variant) == (family, variant) and c.span_store is not None]
        group += [second[c.cell] for c in group if c.cell in second and second[c.cell].span_store is not None]
        models = {f"N=10 {c.cell.subset.upper()}{at(c.span_store)}": c.span_store for c in group}
        contrasts = {f"N={c.contrast_store.attrs.get('n_train')} (10 nearest){at(c.contrast_store)}": c.contrast_store
                     for c in group if c.contrast_store is not None}
        variant_text = "" if variant == "global" else f" {variant}"
        panels[f"{FAMILY_NAMES.get(family, family)}{variant_text}: centred spans"] = (models, contrasts)
    return memorizers_figure({c.label: c.share for c in checks}, checks[0].share_needed, panels, ranks=SPAN_DRAWN)


def survey_rows(found: Found) -> Figure:
    """Figs. 1 and 3 under science v3: :func:`~biasprobe.figures.survey.survey_rows_figure` of each cell's first
    seed (the surveys at the memorizer σ labelled so)."""
    from biasprobe.figures.survey import survey_rows_figure

    return survey_rows_figure({survey_label(cell, runs): runs[0] for cell, runs in found.items()})


def _v2_memorizer_cells(found: Found) -> Found:
    return {cell: runs for cell, runs in found.items() if cell.analysis != SURVEY_AT_MEMORIZER_SIGMA}


def memorizers_v3(found: Found) -> Figure | None:
    """The memorizers under science v3: :func:`~biasprobe.figures.survey.span_scores_figure` of each N = 10
    model's span score at its training and test images and its largest-N contrast's at test images, at the
    memorizer σ (:func:`~biasprobe.reports.survey_claims.span_scores`, mean ± s.e. over images)."""
    from biasprobe.figures.survey import span_scores_figure
    from biasprobe.reports.rules import SPAN_SCORE
    from biasprobe.reports.survey_claims import span_scores
    from biasprobe.statistics import over_images

    def estimate(values):
        found = over_images(values)
        return found.value, found.se

    scores = {}
    for cell, runs in found.items():
        if cell.analysis != SURVEY_AT_MEMORIZER_SIGMA:
            continue
        survey, sigma = runs[0], float(runs[0].sigma[0])
        kinds = {"test images": "test"} if cell.n is None else {"training images": "train", "test images": "test"}
        label = cell_label(cell, runs) + (f" {cell.subset.upper()}" if cell.subset != "s1" else "")
        label += " (largest N)" if cell.n is None else ""
        scores[label] = {name: estimate(span_scores(survey, sigma, split)) for name, split in kinds.items()}
    return span_scores_figure(scores, SPAN_SCORE) if scores else None


def memorizers_v3_table(found: Found) -> Table:
    """The v2 memorizers table (:func:`~biasprobe.reports.paper.tables.memorizers_table`) of the item's v2 cells."""
    return memorizers_table(_v2_memorizer_cells(found))


DRAWINGS: dict[str, Callable[[Found], Figure | None]] = {
    "gap curves": gap_curves, "gap bars": gap_bars, "eigenvectors": eigenvectors, "attention maps": attention_maps,
    "twins": twins, "memorizers": memorizers, "survey rows": survey_rows, "memorizers v3": memorizers_v3,
    "attention maps and layers": attention_and_layers,
}
"""Each drawing an item may name, by name."""
TABLES: dict[str, Callable[[Found], Table]] = {"gaps": gap_table, "memorizers": memorizers_table,
                                               "survey calls": survey_table, "memorizers v3": memorizers_v3_table}
"""Each table an item may name, by name."""
