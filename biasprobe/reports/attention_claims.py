"""An et al.'s attention claim (Fig. 4) under the science-v3 rules (docs/methods/claims.md).

"DiT attention gets more local as N grows", compared where the gap says the model memorizes and where it says it
generalizes, not at hard-coded N: the memorizing N is the largest N whose global DiT has a memorizing gap at its
landed step, the generalizing N the smallest with a generalizing one (:func:`~biasprobe.reports.rules.regime`,
from the per-checkpoint gap rows of :mod:`biasprobe.reports.gap_claims`). Each model's attention distance is the
mean over layers, heads and σ of its locality store, one value per image; its estimate is their mean with the
standard error over images (seeds combined by :func:`~biasprobe.statistics.combine_seeds`). Held when the
generalizing N's distance is below the memorizing N's (:func:`~biasprobe.reports.rules.compare` = −1); the two
models must have the same training steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from biasprobe.reports import rules
from biasprobe.reports.gap_claims import GapEvidence, Judged
from biasprobe.reports.survey_claims import equal_steps
from biasprobe.reports.zoo import N_VALUES, Cell, ZooModel
from biasprobe.statistics import Estimate, combine_seeds, finite, over_images, thousands

RULE = ("the global DiT's mean attention distance (over layers, heads, σ; s.e. over images and seeds) at the "
        "generalizing N (the smallest N with an average gap < 0.5 dB at its landed step) is below that at the "
        "memorizing N (the largest with ≥ 3 dB), beyond 2 s.e.; the two at equal steps")


def distance(stores: Sequence[xr.Dataset], steps: int | None) -> Estimate | None:
    """A cell's mean attention distance (px) with its standard error over images, its seeds combined."""
    if not stores:
        return None
    values, ses = [], []
    for store in stores:
        per_image = store.mean_distance.mean([d for d in store.mean_distance.dims if d != "image"]).values
        if len(per_image) < 2 or not np.isfinite(per_image).all():
            return None  # no standard error over images
        found = over_images(per_image)
        values.append(found.value)
        ses.append(found.se)
    return combine_seeds(values, ses, steps)


def landed_regimes(evidence: GapEvidence) -> dict[int, str]:
    """Each global DiT N's regime from the gap row at its landed step, over every N the zoo has (the paper's and
    any other, e.g. zoo v2's 300); an N without such a row, or whose gap is not a number (diverged), is left out."""
    found = {}
    trained = {m.n_train for m in evidence.models if m.family == "dit" and m.variant == "global"}
    for n in sorted({*N_VALUES, *trained}):
        models = Cell("dit", n).find(evidence.models)
        rows = [evidence.rows[m.name].get(m.steps_done) for m in models]
        if models and all(rows):
            gap = combine_seeds([r["average_gap"] for r in rows], [r["average_gap_sem"] for r in rows])
            if finite(gap):
                found[n] = rules.regime(gap)
    return found


def attention_gets_local(models: Sequence[ZooModel], stores: Mapping[tuple[str, str], xr.Dataset]) -> Judged:
    judged = dict(source="An et al. Fig. 4", statement="DiT attention gets more local as N grows",
                  paper="sharper diagonal bands at larger N (no number given)", rule=RULE, key="attention_gets_local")
    regimes = landed_regimes(GapEvidence(models))
    memorizing = max((n for n, r in regimes.items() if r == "memorizing"), default=None)
    generalizing = min((n for n, r in regimes.items() if r == "generalizing"), default=None)
    if memorizing is None or generalizing is None or memorizing >= generalizing:
        shown = ", ".join(f"N = {n}: {r}" for n, r in regimes.items()) or "no gap rows at the landed steps"
        return Judged(**judged, ours=f"no memorizing N below a generalizing N ({shown})", outcome=rules.NOT_TESTED)
    cells = [Cell("dit", memorizing), Cell("dit", generalizing)]
    members = [m for cell in cells for m in cell.find(models)]
    steps, why = equal_steps(members)
    memorized, generalized = (distance([stores[("locality", m.name)] for m in cell.find(models)
                                        if ("locality", m.name) in stores], steps) for cell in cells)
    if memorized is None or generalized is None:
        return Judged(**judged, ours="no locality store (of at least two images) of both models",
                      outcome=rules.NOT_TESTED)
    ours = (f"memorizing N = {memorizing}: {memorized.text()} px; generalizing N = {generalizing}: "
            f"{generalized.text()} px" + (f"; at {thousands(steps)} steps" if steps else f"; {why}"))
    return Judged(**judged, ours=ours, outcome=rules.smaller(generalized, memorized) if steps else rules.NOT_TESTED)


__all__ = ["RULE", "attention_gets_local", "distance", "landed_regimes"]
