"""Kadkhodaie et al.'s sample claims under science v3: the v2 rules, which the review did not question, with the
95 % bootstrap interval over samples printed beside each number (docs/methods/claims.md, "The rules, old and new").

- :func:`copies_at_small_n`: the memorized share (samples whose nearest training image has similarity above the
  store's threshold) of both bias-free twins at N = 10 and at the largest N, each with its interval over samples;
- :func:`twins_agree`: the mean paired similarity of the S1 and S2 twins' same-seed samples per N, with its interval.

The outcome is the v2 rule's (:func:`biasprobe.reports.claims.small_n_copies_training_images`,
:func:`~biasprobe.reports.claims.twins_agree_at_large_n`), now one of :data:`biasprobe.reports.rules.OUTCOMES`, and
*not tested* unless the twins it compares have the same training steps (science v3's equal-steps rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from biasprobe.reports import claims as v2
from biasprobe.reports import rules
from biasprobe.reports.gap_claims import Judged
from biasprobe.reports.survey_claims import equal_steps
from biasprobe.reports.zoo import N_VALUES, Cell, ZooModel
from biasprobe.statistics import bootstrap_interval

OUTCOME = {True: rules.HELD, False: rules.FAILED, None: rules.NOT_TESTED}


def _twin_models(models: Sequence[ZooModel], ns) -> list[ZooModel]:
    return [m for n in ns for s in ("s1", "s2") for m in Cell("unet-bf", n, subset=s).find(models)[:1]]


def _interval(values: np.ndarray) -> str:
    low, high = bootstrap_interval(values)
    return f"{values.mean():.2f} [{low:.2f}, {high:.2f}]" if np.isfinite(low) else f"{values.mean():.2f}"


def memorized(store: xr.Dataset) -> np.ndarray:
    """Per sample: 1 if its nearest training image is above the store's similarity threshold, else 0."""
    threshold = store.memorized_share.attrs.get("threshold", 0.95)
    return (store.nearest_similarity.values > threshold).astype(float)


def copies_at_small_n(models: Sequence[ZooModel], stores: Mapping[tuple[str, str], xr.Dataset]) -> Judged:
    evidence = v2.Evidence(models, dict(stores))
    old = v2.small_n_copies_training_images(evidence)
    parts = []
    for n in (10, evidence.largest_n("unet-bf")):
        pair = v2._twins(evidence, n or 0)
        if pair:
            parts.append(f"N = {n} S1 / S2: " + " / ".join(_interval(memorized(ds)) for ds in pair))
    ours = ("memorized share [95 % interval over samples]: " + "; ".join(parts)) if parts else old.ours
    steps, why = equal_steps(_twin_models(models, (10, evidence.largest_n("unet-bf"))))
    outcome = OUTCOME[old.held] if steps is not None or old.held is None else rules.NOT_TESTED
    return Judged(old.source, old.statement, old.paper, ours + (f"; {why}" if steps is None and parts else ""),
                  old.rule, outcome, "small_n_copies_training_images")


def twins_agree(models: Sequence[ZooModel], stores: Mapping[tuple[str, str], xr.Dataset]) -> Judged:
    import torch

    from biasprobe.analyses.memorization import paired_similarity

    evidence = v2.Evidence(models, dict(stores))
    old = v2.twins_agree_at_large_n(evidence)
    parts = []
    for n in N_VALUES:
        pair = v2._twins(evidence, n)
        if pair:
            similarity = paired_similarity(*(torch.from_numpy(ds.sample_image.values) for ds in pair))
            parts.append(f"N = {n}: {_interval(np.asarray(similarity, dtype=float))}")
    ours = ("mean paired similarity [95 % interval over samples]: " + "; ".join(parts)) if parts else old.ours
    steps, why = equal_steps(_twin_models(models, (10, max((n for n in N_VALUES if v2._twins(evidence, n)), default=10))))
    outcome = OUTCOME[old.held] if steps is not None or old.held is None else rules.NOT_TESTED
    return Judged(old.source, old.statement, old.paper, ours + (f"; {why}" if steps is None and parts else ""),
                  old.rule, outcome, "twins_agree_at_large_n")


__all__ = ["copies_at_small_n", "memorized", "twins_agree"]
