"""The paper's items as data: for each figure or table of the paper (:class:`Item`) its key, title, the
paper's statement (printed on the page under the title), the analysis it reads, the models it needs (cells:
family, attention variant, N, subset, seeds) and the names of its drawing and table
(:data:`biasprobe.reports.paper.draw.DRAWINGS`, :data:`~biasprobe.reports.paper.draw.TABLES`).
:data:`PAPER` lists them in the paper's order; docs/reports.md gives the table of items and the rules
behind the memorizers item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from biasprobe.errors import InputError
from biasprobe.reports.paper.settings import SURVEY
from biasprobe.reports.zoo import (
    AT_MEMORIZER_SIGMA,
    IDEAL,
    MEMORIZERS,
    MID_N,
    N_VALUES,
    SEEDS,
    SURVEY_AT_MEMORIZER_SIGMA,
    TRANSITION_N,
    Cell,
)


@dataclass(frozen=True)
class Item:
    """A figure or table of the paper: the models it needs (``cells``), the analysis it reads (a cell may name
    another, :attr:`Cell.analysis`), and the names of how it is drawn (``figure``, a key of
    :data:`~biasprobe.reports.paper.draw.DRAWINGS`) and tabulated (``table``, a key of
    :data:`~biasprobe.reports.paper.draw.TABLES`, or None)."""

    key: str
    title: str
    paper: str
    analysis: str
    cells: tuple[Cell, ...]
    figure: str
    table: str | None = None


def _cells(family: str, ns: Sequence[int | None], variant: str = "global", seeds: int = 1, subset: str = "s1"):
    """One cell per N of ``ns``, the rest alike."""
    return tuple(Cell(family, n, variant, subset, seeds) for n in ns)


def _seeds(n: int | None) -> int:
    """Seeds a gap cell needs: several at the mid-range N, one elsewhere."""
    return SEEDS if n == MID_N else 1


def memorizer_cells() -> tuple[Cell, ...]:
    """The memorizers item's cells: each N = 10 model of :data:`~biasprobe.reports.zoo.MEMORIZERS` with its
    memorization, training-span (at the report's σ and at the memorizer σ) and ideal-memorizer stores, and the
    largest-N model of each family and variant (the contrast) with its training-span stores at both σ."""
    cells = [Cell(family, 10, variant, subset, analysis=kind) for family, variant, subset in MEMORIZERS
             for kind in ("memorization", None, IDEAL, AT_MEMORIZER_SIGMA)]
    return (*cells, *(Cell(family, None, variant, analysis=kind)
                      for family, variant in dict.fromkeys(m[:2] for m in MEMORIZERS) for kind in (None, AT_MEMORIZER_SIGMA)))


PAPER: tuple[Item, ...] = (
    Item("fig1", "Fig. 1 — Jacobian eigenvectors of three denoisers",
         "UNet eigenvectors are smooth oscillations whose frequency rises as λ falls; DiT's are sparse isolated "
         "pixels (bias-free UNet λ0 = 1.73, DDPM UNet λ0 = 3.47, DiT λ0 = 9.83).",
         "jacobian", (Cell("unet-bf"), Cell("unet-ddpm"), Cell("dit")), "eigenvectors"),
    Item("fig2", "Fig. 2 — PSNR on training and test images against the diffusion step, and the gap",
         "Average gaps at N = 10³ / 10⁴ / 10⁵: UNet 13.95 / 5.50 / 0.06 dB, DiT 7.49 / 0.82 / 0.03 dB (three "
         "shuffles each); the gap peaks at small t. Here 3·10⁴ stands for 10⁵.",
         "gap", tuple(Cell(family, n, seeds=_seeds(n)) for family in ("unet-ddpm", "dit") for n in N_VALUES),
         "gap curves", "gaps"),
    Item("fig3", "Fig. 3 — eigenvalue spectra and eigenvectors at small and large N",
         "UNet at N = 10: a few huge eigenvalues (λ0 = 65.2) and eigenvectors that look like training images; "
         "at N = 10⁵ smooth decay and harmonic eigenvectors. DiT: neither at any N (λ0 = 16.7 and 7.8).",
         "jacobian", (Cell("unet-ddpm", 10), Cell("unet-ddpm"), Cell("dit", 10), Cell("dit")), "eigenvectors"),
    Item("fig4", "Fig. 4 — attention maps of layers 2, 4, …, 12 against N",
         "With larger N the maps show sharper diagonal bands: attention confined to a neighbourhood (no number "
         "given; colour map clipped to [0, 0.1]).",
         "locality", _cells("dit", (10, 1000, None)), "attention maps"),
    Item("fig6", "Fig. 6 — average gap, DiT against DiT with local attention (windows 3…13 in layers 1-6)",
         "Local attention cuts the gap by 6-17 % at N = 10³ and 25-45 % at 10⁴, nothing at 10⁵ "
         "(CelebA XS/1: 7.49 → 6.56, 0.80 → 0.57, 0.01 → 0.01 dB). FID (Table 1) is replaced by the gap: "
         "no Inception weights offline.",
         "gap", tuple(Cell("dit", n, variant, seeds=_seeds(n)) for n in N_VALUES for variant in ("global", "local")),
         "gap bars", "gaps"),
    Item("table2", "Fig. 7 / Table 2 — where the local layers go",
         "Head (the first layers) gives the smallest gap; mix and tail can be worse than no local attention; "
         "Local* (nine local layers) is reported beside them. FID columns replaced by the gap.",
         "gap", tuple(Cell("dit", MID_N, v, seeds=SEEDS if v in ("global", "local") else 1)
                      for v in ("global", "local", "mix", "tail", "local*")), "gap bars", "gaps"),
    Item("table3", "Fig. 8 / Table 3 — the same window budget arranged differently",
         "(5)×6 against (3,3,5,5,7,7) changes little; smaller windows help at N = 10⁴, larger ones hurt. "
         "FID columns replaced by the gap.",
         "gap", tuple(Cell("dit", MID_N, v) for v in ("global", "windows 5×6", "windows 3,3,5,5,7,7")),
         "gap bars", "gaps"),
    Item("twins", "Kadkhodaie et al. — samples of the S1 and S2 twins against N",
         "Bias-free UNets on disjoint halves S1 and S2 give different samples (each a copy of its own training "
         "images) at small N and nearly the same samples (cosine ≈ 1) at large N.",
         "memorization", tuple(Cell("unet-bf", n, subset=s) for n in N_VALUES for s in ("s1", "s2")), "twins"),
    Item("memorizers", "Memorizers — do the N = 10 models copy training images, and do their top Jacobian "
         "eigenvectors lie in the training span?",
         "Trained on few images, a denoiser samples copies of them (Kadkhodaie et al.) and its Jacobian's top "
         "eigenvectors look like training images (An et al. Fig. 3, UNet at N = 10). Here: the share of samples "
         "within similarity 0.95 of a training image, and ‖P e_j‖², the energy of the denoiser Jacobian's "
         "eigenvector e_j in the span of the training images with their mean removed (docs/methods/jacobian.md), "
         "against the held-out span, chance and the largest-N model of the same family. Read with care: the "
         "ideal memorizer's Jacobian, J = Σᵢ wᵢ (xᵢ − D)(xᵢ − D)ᵀ / σ², lies in the training span only where its "
         "posterior weights wᵢ spread over several images; at the stores' σ a noisy test image is so close to one "
         "training image that the weights are one-hot and J ≈ 0 (computed for dit-n10's ten images: max wᵢ = "
         "1.0000 at σ = 0.1-0.5, 0.96 at σ = 2), so the span test has little to find at this σ (a review finding "
         "after the rule was fixed; the rule is kept). So the span is measured a second time, by the same rule, at "
         "the memorizer σ: the smallest σ of the grid 0.5, 1, 2, 4, 8 (fixed before any trained model's store at "
         "those σ was computed) at which the ideal memorizer of each N = 10 model's training images — the exact "
         "posterior mean, analysed like the models, whose rows above the models' are the known answer — has a mean "
         "max posterior weight ≤ 0.5 over the test images and its top eigenvectors pass the span part of the rule "
         "against its held-out span (docs/reports.md). Each model has a row at each σ. The table also shows the "
         "other end of the spectrum (the raw output's top eigenvectors, ∂D/∂y's bottom ones), which An et al. "
         "decompose.",
         "training-span", memorizer_cells(), "memorizers", "memorizers"),
)
"""The items of ``biasprobe report paper``, in the paper's order."""


def _v3(item: Item) -> Item:
    """An item as science v3 measures it (docs/methods/claims.md): Figs. 1 and 3 from the GAHB surveys (∂D/∂y for
    every family, 8 test images × σ × 2 draws; Fig. 3 also at the memorizer σ), the memorizers with their surveys
    at the memorizer σ beside the v2 evidence; the rest as in v2 (their stores keyed by the v3 settings)."""
    if item.key == "fig1":
        return Item(item.key, item.title + " (science v3: GAHB surveys)", item.paper, SURVEY, item.cells,
                    "survey rows", "survey calls")
    if item.key == "fig3":
        at_sigma = tuple(Cell(c.family, c.n, analysis=SURVEY_AT_MEMORIZER_SIGMA) for c in item.cells)
        return Item(item.key, item.title + " (science v3: GAHB surveys, and at the memorizer σ)", item.paper, SURVEY,
                    item.cells + at_sigma, "survey rows", "survey calls")
    if item.key == "fig4":  # every global DiT N: the claim picks its N from the gaps (corrected 2026-12-08, before
        # any v3 store: with N = 10, 10³ and the largest only, the memorizing N the gaps pick had no store)
        return Item(item.key, item.title + " (science v3: with the distance per layer)", item.paper, item.analysis,
                    _cells("dit", sorted({*N_VALUES, TRANSITION_N})), "attention maps and layers")
    if item.key in ("fig2", "fig6", "table2", "table3"):  # zoo v2's N between 10² and 10³ (TRANSITION_N), after
        # each cell at 10² (Tables 2 and 3 since 2026-12-08: their claims judge the N the gaps pick, 10² or 300)
        cells = tuple(added for c in item.cells
                      for added in ((c, replace(c, n=TRANSITION_N)) if c.n == 100 else (c,)))
        return replace(item, cells=cells)
    if item.key == "memorizers":
        surveys = tuple(Cell(family, n, variant, subset, analysis=SURVEY_AT_MEMORIZER_SIGMA)
                        for family, variant, subset in MEMORIZERS for n in (10, None) if not (n is None and subset != "s1"))
        return Item(item.key, item.title, item.paper, item.analysis, item.cells + surveys, "memorizers v3",
                    "memorizers v3")
    return item


PAPER_V3: tuple[Item, ...] = tuple(_v3(item) for item in PAPER)
"""The items under science v3 (``report paper`` with :data:`~biasprobe.reports.paper.settings.V3`)."""


def paper_items(keys: Sequence[str] | None = None, version: int = 2) -> tuple[Item, ...]:
    """The items of :data:`PAPER` (:data:`PAPER_V3` for ``version`` 3) with these keys (all of them for None), in
    the paper's order."""
    items = PAPER_V3 if version >= 3 else PAPER
    if keys is None:
        return items
    known = {item.key for item in items}
    unknown = [key for key in keys if key.strip() not in known]
    if unknown:
        raise InputError(f"no paper item {unknown[0]!r}; " + "{only} takes " + ", ".join(item.key for item in PAPER),
                         parameters=["only"])
    return tuple(item for item in items if item.key in {key.strip() for key in keys})
