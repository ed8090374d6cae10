"""The gap claims of An et al. (Figs. 2, 6, 7, 8) under the science-v3 rules, at a common training step.

Each model of a zoo trained with ``gap_images`` (zoo v2, ``biasprobe sweep train``) keeps in its record
``NAME.train.json`` the paper's gap of every checkpoint (``gaps``: steps, average gap and its standard
error, the gap per step t). A claim here takes the models it compares, finds their **common step**
(:func:`biasprobe.reports.rules.common_step`: the largest step at which each has a row), combines each
cell's seeds there (:func:`biasprobe.statistics.combine_seeds`) and decides by the rules of
:mod:`biasprobe.reports.rules` (docs/methods/claims.md). A model without rows (zoo v1) or a cell without a
model at the common step leaves the claim *not tested*; the text says at which step each comparison was
made. The transition N of the seeds, placements and window budgets is the global DiT's, from its gaps
(:func:`~biasprobe.reports.rules.regime_ladder`), not a hard-coded N.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from biasprobe.reports import rules
from biasprobe.reports.zoo import FAMILY_NAMES, N_VALUES, Cell, ZooModel
from biasprobe.statistics import Estimate, combine_seeds, finite, paired_difference, thousands


@dataclass(frozen=True)
class Judged:
    """One claim under the v3 rules: where the paper makes it, what it says, its number, ours (with the step
    of the comparison), the rule, and the outcome (one of :data:`biasprobe.reports.rules.OUTCOMES`)."""

    source: str
    statement: str
    paper: str
    ours: str
    rule: str
    outcome: str
    key: str = ""
    """The claim's name (its function's), which :data:`biasprobe.reports.rules.CHANGES` is keyed by."""


def gap_rows(model: ZooModel) -> dict[int, dict]:
    """The model's per-checkpoint gap rows by step, from its record beside the checkpoint (none: {})."""
    record = Path(model.path).parent / f"{model.name}.train.json"
    if not record.exists():
        return {}
    return {int(row["steps"]): row for row in json.loads(record.read_text()).get("gaps", [])}


class GapEvidence:
    """The zoo's models and their per-checkpoint gap rows, looked up by cell at a step."""

    def __init__(self, models: Sequence[ZooModel]):
        self.models = list(models)
        self.rows = {model.name: gap_rows(model) for model in self.models}

    def members(self, cells: Sequence[Cell]) -> list[ZooModel]:
        return [model for cell in cells for model in cell.find(self.models)]

    def step(self, cells: Sequence[Cell]) -> int | None:
        """The common step of every model of the cells (None: a cell without models, or no shared step)."""
        if any(not cell.find(self.models) for cell in cells):
            return None
        return rules.common_step({m.name: list(self.rows[m.name]) for m in self.members(cells)})

    def estimate(self, cell: Cell, step: int | None) -> Estimate | None:
        """The cell's average gap at ``step``, its seeds combined; None when a model lacks a row there."""
        models = cell.find(self.models)
        if step is None or not models or any(step not in self.rows[m.name] for m in models):
            return None
        rows = [self.rows[m.name][step] for m in models]
        found = combine_seeds([r["average_gap"] for r in rows], [r["average_gap_sem"] for r in rows], step)
        return found if finite(found) else None  # a diverged model's NaN: not tested, never "within noise"

    def difference(self, first: Cell, second: Cell, step: int | None) -> Estimate | None:
        """The paired difference of the two cells' gaps at ``step`` (first − second), when every seed of one has a
        twin in the other measured on the same images (same data, N, subset and seed: the same training images;
        the test images and noise are common) whose row keeps each image's PSNR
        (:func:`biasprobe.statistics.paired_difference` per pair, the pairs combined as seeds); None otherwise (the
        rules then use the independent band)."""
        a, b = first.find(self.models), second.find(self.models)
        if step is None or not a or len(a) != len(b):
            return None
        same_images = lambda m: (m.data, m.n_train, m.subset, m.seed)  # noqa: E731
        twins = {same_images(m): m for m in b}
        pairs = [(m, twins.get(same_images(m))) for m in a]
        rows = [(self.rows[m.name].get(step), self.rows[t.name].get(step)) for m, t in pairs if t is not None]
        if len(rows) != len(a) or any(r is None or "image_psnr" not in r for pair in rows for r in pair):
            return None
        try:
            parts = [paired_difference(x["image_psnr"], y["image_psnr"], step) for x, y in rows]
        except ValueError:  # different image counts: not the same images
            return None
        found = combine_seeds([e.value for e in parts], [e.se for e in parts], step)
        return found if finite(found) else None

    def ladder(self, family: str, variant: str = "global") -> tuple[dict[int, Estimate], int | None]:
        """A family's N ladder at the common step of its N cells that have models: the paper's N
        (:data:`~biasprobe.reports.zoo.N_VALUES`) and every other N the zoo has for the family and variant."""
        trained = {m.n_train for m in self.models if m.family == family and m.variant == variant}
        cells = [cell for cell in (Cell(family, n, variant) for n in sorted({*N_VALUES, *trained}))
                 if cell.find(self.models)]
        step = self.step(cells)
        found = {cell.n: self.estimate(cell, step) for cell in cells}
        return {n: e for n, e in found.items() if e is not None}, step

    def transition_n(self) -> int | None:
        """The global DiT's transition N (:func:`~biasprobe.reports.rules.regime_ladder`), None if it has none."""
        ladder, _ = self.ladder("dit")
        return rules.regime_ladder(ladder).get("transition")


def _at(step: int | None) -> str:
    return "no common step" if step is None else f"at {thousands(step)} steps"


def _text(estimate: Estimate | None) -> str:
    return "—" if estimate is None else f"{estimate.value:.2f} ± {estimate.se:.2f}" + (
        f" ({estimate.seeds} seeds)" if estimate.seeds > 1 else " (1 seed)")


def _pair(evidence: GapEvidence, first: Cell, second: Cell
          ) -> tuple[Estimate | None, Estimate | None, int | None, Estimate | None]:
    """The two cells' gaps at their common step, the step, and their paired difference (None: not paired)."""
    step = evidence.step([first, second])
    return (evidence.estimate(first, step), evidence.estimate(second, step), step,
            evidence.difference(first, second, step))


def _lacks(evidence: GapEvidence, n: int) -> str:
    """"the zoo lacks a DDPM UNet at N = 300" when a family has no model at ``n`` ("" when both have)."""
    missing = [FAMILY_NAMES[family] for family in ("unet-ddpm", "dit") if not Cell(family, n).find(evidence.models)]
    return f"the zoo lacks a {' and a '.join(missing)} at N = {n}" if missing else ""


def _band(difference: Estimate | None) -> str:
    """How the comparison's noise band was formed, for the page."""
    return ("; paired on the same images: difference " + f"{difference.value:+.2f} ± {difference.se:.2f}"
            if difference is not None else "; independent band")


def gap_falls_with_n(family: str) -> Callable[[GapEvidence], Judged]:
    paper = {"unet-ddpm": "13.95 / 5.50 / 0.06 dB at N = 10³ / 10⁴ / 10⁵",
             "dit": "7.49 / 0.82 / 0.03 dB at N = 10³ / 10⁴ / 10⁵"}[family]

    def claim(evidence: GapEvidence) -> Judged:
        ladder, step = evidence.ladder(family)
        ours = "; ".join(f"N = {n}: {_text(e)}" for n, e in sorted(ladder.items()))
        return Judged("Fig. 2", f"The {FAMILY_NAMES[family]}'s gap shrinks as N grows and is gone at the largest N",
                      paper, f"{ours or '—'} ({_at(step)})",
                      f"no step up N raises the gap beyond {rules.Z:g} s.e. and the largest N generalizes "
                      f"(< {rules.GENERALIZING_DB} dB), at least three N, at their common step", rules.falls_with_n(ladder))

    claim.__name__ = "gap_falls_with_n"  # the key of its rule change (rules.CHANGES), for either family
    return claim


def unet_gap_exceeds_dit(evidence: GapEvidence) -> Judged:
    n = evidence.transition_n()
    unet, dit, step, paired = _pair(evidence, Cell("unet-ddpm", n), Cell("dit", n)) if n else (None,) * 4
    return Judged("Fig. 2", "The UNet memorizes more than the DiT: a larger gap at the same N",
                  "13.95 vs 7.49 dB at N = 10³, 5.50 vs 0.82 at 10⁴",
                  f"N = {n}: DDPM UNet {_text(unet)}, DiT {_text(dit)} ({_lacks(evidence, n) or _at(step)}"
                  f"{_band(paired)})" if n else "no transition N",
                  f"at the DiT's transition N the UNet's gap exceeds the DiT's by more than {rules.Z:g} s.e., "
                  "same step", rules.larger(unet, dit, paired))


def gap_peaks_early(evidence: GapEvidence) -> Judged:
    models, parts = [], []
    for model in evidence.models:
        rows = evidence.rows[model.name]
        if model.family in ("dit", "unet-ddpm") and rows:
            row = rows[max(rows)]
            models.append((row["gap"], row["gap_sem"], row["t"]))
            if row["average_gap"] >= 1.0:
                late = rules.late_gap(row["gap"], row["gap_sem"], row["t"])
                parts.append(f"{model.name}: peak at t = {rules.peak_step(row['gap'], row['t']):.0f}, "
                             f"{late.value:.2f} ± {late.se:.2f} dB over t ≥ {rules.LATE_T} ({_at(max(rows))})")
    return Judged("Fig. 2", "The gap peaks at small diffusion steps t and vanishes at large t",
                  "peaks at small t, gone by t ≈ 600-700 of 1000", "; ".join(parts) or "no model with a gap ≥ 1 dB",
                  f"every model with an average gap ≥ 1 dB peaks at t ≤ {rules.PEAK_T} and its mean gap over "
                  f"t ≥ {rules.LATE_T} is within {rules.Z:g} s.e. of 0 (its last checkpoint)",
                  rules.peaks_early_and_fades(models))


def local_cuts_transition_gap(evidence: GapEvidence) -> Judged:
    n = evidence.transition_n()
    glob, local, step, paired = _pair(evidence, Cell("dit", n), Cell("dit", n, "local")) if n else (None,) * 4
    return Judged("Fig. 6", "Local attention (windows 3…13 in layers 1-6) cuts the DiT's gap where it is mid-range",
                  "cuts 6-17 % at N = 10³ and 25-45 % at 10⁴ (CelebA XS/1: 7.49 → 6.56, 0.80 → 0.57 dB)",
                  f"N = {n}: global {_text(glob)} → local {_text(local)} ({_at(step)}{_band(paired)})"
                  if n else "no transition N",
                  f"at the transition N the local gap is below the global one by more than {rules.Z:g} s.e., same step",
                  rules.larger(glob, local, paired))


def local_same_at_largest_n(evidence: GapEvidence) -> Judged:
    ladder, _ = evidence.ladder("dit")
    n = max(ladder) if ladder else None
    glob, local, step, paired = _pair(evidence, Cell("dit", n), Cell("dit", n, "local")) if n else (None,) * 4
    return Judged("Fig. 6", "… and changes nothing at the largest N", "0.01 → 0.01 dB at 10⁵",
                  f"N = {n}: global {_text(glob)} → local {_text(local)} ({_at(step)}{_band(paired)})" if n else "—",
                  f"global and local within {rules.Z:g} s.e. of each other at the largest N, same step",
                  rules.same(glob, local, paired))


def head_placement_is_best(evidence: GapEvidence) -> Judged:
    n = evidence.transition_n()
    names = ("local", "mix", "tail", "local*")
    cells = [Cell("dit", n, v) for v in names] if n else []
    step = evidence.step(cells[:3]) if n else None
    found = {v: evidence.estimate(c, step) for v, c in zip(names, cells)}
    paired = [evidence.difference(cells[0], c, step) for c in cells[1:3]] if n else [None, None]
    ours = "; ".join(f"{'head' if v == 'local' else v} {_text(e)}" for v, e in found.items())
    if any(d is not None for d in paired):
        ours += "; paired differences head − mix, head − tail: " + ", ".join(
            "—" if d is None else f"{d.value:+.2f} ± {d.se:.2f}" for d in paired)
    return Judged("Fig. 7 / Table 2", "Local layers at the head (layers 1-6) give the smallest gap of the placements",
                  "head smallest; mix and tail can be worse than no local attention",
                  f"N = {n}: {ours} ({_at(step)})" if n else "no transition N",
                  f"the head's gap is below mix's and tail's by more than {rules.Z:g} s.e. each, same step (Local*, nine "
                  "local layers, is shown beside, not judged)",
                  rules.smallest(found.get("local"), [found.get("mix"), found.get("tail")], paired))


def window_budget_changes_little(evidence: GapEvidence) -> Judged:
    n = evidence.transition_n()
    five, growing, step, paired = (_pair(evidence, Cell("dit", n, "windows 5×6"),
                                         Cell("dit", n, "windows 3,3,5,5,7,7")) if n else (None,) * 4)
    return Judged("Fig. 8 / Table 3", "The same window budget arranged differently changes the gap little",
                  "(5)×6 against (3,3,5,5,7,7): little change",
                  f"N = {n}: (5)×6 {_text(five)}, (3,3,5,5,7,7) {_text(growing)} ({_at(step)}{_band(paired)})"
                  if n else "—",
                  f"the two arrangements within {rules.Z:g} s.e. of each other, same step",
                  rules.same(five, growing, paired))


GAP_CLAIMS = (gap_falls_with_n("unet-ddpm"), gap_falls_with_n("dit"), unet_gap_exceeds_dit, gap_peaks_early,
              local_cuts_transition_gap, local_same_at_largest_n, head_placement_is_best, window_budget_changes_little)
"""The gap claims, in the claims page's order."""


def judge_gap_claims(models: Sequence[ZooModel]) -> list[Judged]:
    """Every gap claim judged on the zoo's per-checkpoint gap rows."""
    evidence = GapEvidence(models)
    return [replace(claim(evidence), key=claim.__name__) for claim in GAP_CLAIMS]
