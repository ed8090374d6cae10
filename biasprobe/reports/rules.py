"""The rules that decide the papers' claims, science v3 (issue 25), fixed before the stores they judge.

docs/methods/claims.md sets each rule beside the one it replaces and says why it changed. The
rules were committed (code and docs) before any store they judge was computed; a rule is never
changed after its result is seen.

Every compared number is an :class:`~biasprobe.statistics.Estimate` (value, standard error over
images and seeds, seeds, training steps; :func:`~biasprobe.statistics.combine_seeds`). Two
estimates a and b are told apart when

    |a − b| > Z · √(se_a² + se_b²),    Z = 2                                  (:func:`compare`)

and a claim decided by a comparison inside that band is **unresolved**: the zoo cannot tell at its
noise, which is neither "held" nor "did not hold". One-seed cells are marked so wherever printed.

Regimes come from the gap itself, not from hard-coded N (:func:`regime`): *memorizing* at an
average gap (the paper's: t = 0, 20, …, 980 uniform, K = 300) of at least :data:`MEMORIZING_DB`,
*generalizing* below :data:`GENERALIZING_DB`, *transition* between. Compared models are taken at a
**common training step** (:func:`common_step`): the largest step at which every one of them has a
measurement; a model without one there is not compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from biasprobe import statistics
from biasprobe.statistics import Estimate

Z = 2.0
"""Standard errors two numbers must differ by to count as different (and within which they count as equal)."""
MEMORIZING_DB = 3.0
"""Average gap (dB) from which a model memorizes: the paper's memorizing cells read 7.5-14 dB (N = 10³), its
mid-range ones 0.8-5.5 (N = 10⁴); 3 dB is a gap no generalizing cell of either paper's zoo approaches."""
GENERALIZING_DB = 0.5
"""Average gap (dB) below which a model generalizes: the paper's largest-N cells read 0.01-0.06 dB, its smallest
mid-range one 0.57 (DiT + local, N = 10⁴)."""
PEAK_T = 200
"""The gap "peaks at small t": its largest value lies at t ≤ 200 of 1000 (σ ≲ 0.7 on the [0, 1] scale)."""
LATE_T = 700
"""The gap is "gone by t ≈ 600-700": its mean over the grid's steps t ≥ 700 is within Z s.e. of 0."""
SPAN_SIGNIFICANT = 0.1
"""Ranks entering the memorizer-span score: λ_k ≥ SPAN_SIGNIFICANT · λ₀ (at most :data:`SPAN_RANKS`)."""
SPAN_RANKS = 10
SPAN_SCORE = 0.5
"""Eigenvalue-weighted energy in the training span at and above which a Jacobian's leading directions are memories."""

HELD, FAILED, UNRESOLVED, NOT_TESTED = "held", "did not hold", "unresolved (within noise)", "not tested"
OUTCOMES = (HELD, FAILED, UNRESOLVED, NOT_TESTED)


def compare(a: Estimate, b: Estimate, difference: Estimate | None = None) -> int:
    """+1 when a > b beyond Z·√(se_a² + se_b²) (or beyond Z·se_d of the paired ``difference`` a − b, when both
    were measured on the same images: :func:`biasprobe.statistics.paired_difference`), −1 when a < b beyond it,
    0 within it."""
    return statistics.compare(a, b, Z, difference)


def within_noise(a: Estimate, b: Estimate, difference: Estimate | None = None) -> bool:
    """|a − b| ≤ Z·√(se_a² + se_b²) (Z·se_d given the paired ``difference``)."""
    return compare(a, b, difference) == 0


def regime(gap: Estimate) -> str:
    """memorizing (≥ MEMORIZING_DB), generalizing (< GENERALIZING_DB) or transition; a non-finite gap (a diverged
    model) has none (ValueError)."""
    if not statistics.finite(gap):
        raise ValueError("a non-finite gap has no regime")
    if gap.value >= MEMORIZING_DB:
        return "memorizing"
    return "generalizing" if gap.value < GENERALIZING_DB else "transition"


def regime_ladder(gaps: Mapping[int, Estimate]) -> dict[str, int]:
    """One N per regime of a family's N ladder: the largest memorizing N, the transition N whose gap is
    nearest the regimes' geometric middle √(GENERALIZING_DB · MEMORIZING_DB), and the smallest
    generalizing N (a regime the ladder lacks is left out)."""
    by = {name: [n for n in sorted(gaps) if regime(gaps[n]) == name] for name in ("memorizing", "transition",
                                                                                  "generalizing")}
    middle = math.log(math.sqrt(GENERALIZING_DB * MEMORIZING_DB))
    ladder = {}
    if by["memorizing"]:
        ladder["memorizing"] = by["memorizing"][-1]
    if by["transition"]:
        ladder["transition"] = min(by["transition"], key=lambda n: abs(math.log(gaps[n].value) - middle))
    if by["generalizing"]:
        ladder["generalizing"] = by["generalizing"][0]
    return ladder


def common_step(steps: Mapping[str, Sequence[int]]) -> int | None:
    """The largest training step at which every model (name → the steps it has measurements at) has one."""
    if not steps:
        return None
    shared = set.intersection(*(set(int(s) for s in values) for values in steps.values()))
    return max(shared) if shared else None


def late_gap(gap: Sequence[float], se: Sequence[float], t: Sequence[float]) -> Estimate:
    """The gap's mean over the steps t ≥ :data:`LATE_T`, with the mean of their standard errors as its own
    (the images are the same at every t, so their errors are correlated; the mean is the fully correlated
    **upper bound** of the late mean's s.e., which makes "within noise of 0" easier to pass than the exact s.e.
    would: the rows keep no per-image PSNR per t, so the exact one cannot be formed)."""
    gap, se, t = (np.asarray(v, float) for v in (gap, se, t))
    late = t >= LATE_T
    if not late.any():
        raise ValueError(f"the gap has no step t ≥ {LATE_T}: measure it on the paper's grid t = 0, 20, …, 980")
    return Estimate(float(gap[late].mean()), float(se[late].mean()))


def peak_step(gap: Sequence[float], t: Sequence[float]) -> float:
    """The step t at which the gap is largest."""
    return float(np.asarray(t, float)[int(np.nanargmax(np.asarray(gap, float)))])


def significant_ranks(eigenvalues: Sequence[float]) -> np.ndarray:
    """Boolean mask of the ranks entering the span score: λ_k ≥ SPAN_SIGNIFICANT · λ₀, at most SPAN_RANKS of them
    (eigenvalues in descending order; none when λ₀ ≤ 0)."""
    values = np.asarray(eigenvalues, float)
    mask = np.zeros(len(values), bool)
    if len(values) and values[0] > 0:
        mask = values >= SPAN_SIGNIFICANT * values[0]
        mask[SPAN_RANKS:] = False
    return mask


def span_score(eigenvalues: Sequence[float], energies: Sequence[float]) -> float:
    """Σ_k λ_k ‖P e_k‖² / Σ_k λ_k over the significant ranks (P: projector on the centred training span,
    ‖P e_k‖² given as ``energies``); NaN when no rank is significant."""
    values, energies = np.asarray(eigenvalues, float), np.asarray(energies, float)
    mask = significant_ranks(values)
    if not mask.any():
        return float("nan")
    return float((values[mask] * energies[mask]).sum() / values[mask].sum())


# ------------------------------------------------------------------------------------------ the decisions
# Each takes the estimates a claim compares and returns one of OUTCOMES (docs/methods/claims.md, "The rules").


def falls_with_n(ladder: Mapping[int, Estimate]) -> str:
    """Fig. 2: no step up the N ladder raises the gap beyond noise, and the largest N generalizes; at least three N."""
    if len(ladder) < 3 or not statistics.finite(*ladder.values()):
        return NOT_TESTED
    gaps = [ladder[n] for n in sorted(ladder)]
    rises = any(compare(later, earlier) == 1 for earlier, later in zip(gaps, gaps[1:]))
    return FAILED if rises or regime(gaps[-1]) != "generalizing" else HELD


def _negated(difference: Estimate | None) -> Estimate | None:
    return None if difference is None else Estimate(-difference.value, difference.se, difference.seeds,
                                                    difference.steps)


def _judgeable(*estimates: Estimate | None, difference: Estimate | None = None) -> bool:
    """Every estimate given and finite (a missing or diverged number is never judged), and so the paired
    difference where given."""
    return statistics.finite(*estimates) and (difference is None or statistics.finite(difference))


def larger(a: Estimate | None, b: Estimate | None, difference: Estimate | None = None) -> str:
    """a exceeds b beyond noise: held; b exceeds a: did not hold; within noise: unresolved (``difference``: the
    paired a − b, see :func:`compare`)."""
    if not _judgeable(a, b, difference=difference):
        return NOT_TESTED
    return {1: HELD, -1: FAILED, 0: UNRESOLVED}[compare(a, b, difference)]


def smaller(a: Estimate | None, b: Estimate | None, difference: Estimate | None = None) -> str:
    """a is below b beyond noise: held; above: did not hold; within noise: unresolved (``difference``: a − b)."""
    return larger(b, a, _negated(difference))


def same(a: Estimate | None, b: Estimate | None, difference: Estimate | None = None) -> str:
    """a and b within noise of each other: held; apart: did not hold (``difference``: the paired a − b)."""
    if not _judgeable(a, b, difference=difference):
        return NOT_TESTED
    return HELD if within_noise(a, b, difference) else FAILED


def smallest(first: Estimate | None, others: Sequence[Estimate | None],
             differences: Sequence[Estimate | None] | None = None) -> str:
    """Fig. 7: ``first`` below each of ``others`` beyond noise → held; any of them below it beyond noise → did not
    hold; otherwise unresolved (``differences``: the paired first − other of each, None where not paired)."""
    differences = list(differences) if differences is not None else [None] * len(others)
    if not others or not _judgeable(first, *others) or not all(d is None or statistics.finite(d) for d in differences):
        return NOT_TESTED
    signs = [compare(first, other, d) for other, d in zip(others, differences)]
    return HELD if all(s == -1 for s in signs) else FAILED if any(s == 1 for s in signs) else UNRESOLVED


def peaks_early_and_fades(models: Sequence[tuple[Sequence[float], Sequence[float], Sequence[float]]]) -> str:
    """Fig. 2: every model given as (gap per t, its s.e. per t, t) with an average gap ≥ 1 dB peaks at t ≤ PEAK_T and
    its mean gap over t ≥ LATE_T is within Z s.e. of 0."""
    if any(not np.isfinite(np.asarray(g, float)).all() for g, _, _ in models):
        return NOT_TESTED  # a diverged model's gap: no number to judge
    judged = [(g, s, t) for g, s, t in models if float(np.mean(g)) >= 1.0]
    if not judged:
        return NOT_TESTED
    for gap, se, t in judged:
        late = late_gap(gap, se, t)
        if peak_step(gap, t) > PEAK_T or not within_noise(late, Estimate(0.0, 0.0)):
            return FAILED
    return HELD


def all_and_none(unets: Sequence[str], dit: str | None, positive: str, negative: str) -> str:
    """Fig. 1: every UNet's call is ``positive`` and the DiT's ``negative`` → held; a UNet ``negative`` or the DiT
    ``positive`` → did not hold; otherwise (an undecided call) unresolved."""
    if not unets or dit is None:
        return NOT_TESTED
    if any(call == negative for call in unets) or dit == positive:
        return FAILED
    return HELD if all(call == positive for call in unets) and dit == negative else UNRESOLVED


def interval_above_zero(low: float, high: float) -> str:
    """Fig. 3: a bootstrap interval of a log-ratio above 0 → held, below → did not hold, across → unresolved."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return NOT_TESTED
    return HELD if low > 0 else FAILED if high < 0 else UNRESOLVED


TRANSITION_FROM_EVERY_N = ("; the transition N comes from every N the zoo has, not only the powers of ten (changed "
                           "2026-12-07 before any v3 store: zoo v2 has none on them; docs/methods/claims.md)")
"""The ladder's revision, stated beside the claims decided at the transition N."""

CHANGES: dict[str, tuple[str, str, str]] = {
    "gap_falls_with_n": ("each step up N lowers the mean gap or keeps it within 0.1 dB; largest N within 0.1 dB of 0",
                         "held (both families)", "0.1 dB is below the gap's s.e. at large t (0.34-0.84 dB)"),
    "unet_gap_exceeds_dit": ("at N = 100, UNet − DiT > √(s₁² + s₂²) of the seeds' s.d.", "held",
                             "hard-coded N; unequal steps (UNets 11-12.6k, DiTs 19-21k)" + TRANSITION_FROM_EVERY_N),
    "gap_peaks_early": ("every model with gap ≥ 1 dB peaks at t ≤ 200 and is within 0.1 dB of 0 at its largest t",
                        "did not hold", "the v2 grid had no step between 400 and 980; 0.1 dB at t = 980 against an "
                        "s.e. of 0.34-0.84"),
    "unet_harmonic_dit_not": ("GAHB verdict of one image, one draw, σ = 0.1, raw ε̂ Jacobian for the DDPM UNet and "
                              "the DiT", "did not hold", "the raw Jacobian's top eigenvector is the overshoot pixel for "
                              "every family; one image has no interval"),
    "small_n_lambda_ratio": ("λ₀(N = 10)/λ₀(largest N) of the raw output, one image, σ = 0.1: larger for the UNet",
                             "did not hold", "at σ = 0.1 the ideal memorizer has J_D = 0 and raw λ₀ = 1/σ_n: the rule "
                             "could not be passed"),
    "attention_gets_local": ("the mean distance falls at each step N = 10 → 10³ → largest", "did not hold",
                             "failed on 0.15 px between two generalizing models against a seed s.d. of 0.12 px; "
                             "hard-coded N"),
    "local_cuts_transition_gap": ("at N = 100, global − local > √(s₁² + s₂²)", "held",
                                  "unequal steps (the 47 % cut is about 30 % at equal steps)" + TRANSITION_FROM_EVERY_N),
    "local_same_at_largest_n": ("|global − local| ≤ 0.1 dB", "held", "tolerance below the noise"),
    "head_placement_is_best": ("head below mix, tail and Local*", "did not hold", "the paper compares placements of "
                               "the same six windows; Local* is its own design" + TRANSITION_FROM_EVERY_N),
    "window_budget_changes_little": ("|(5)×6 − (3,3,5,5,7,7)| ≤ head-local seeds' s.d.", "held",
                                     "one-seed cells against a three-seed s.d." + TRANSITION_FROM_EVERY_N),
    "memorizers_in_span": ("mean energy of the top 10 ≥ 0.5 and ≥ the largest-N model's + 0.1", "did not hold (at "
                           "σ = 0.1 and at the memorizer σ)", "the ideal memorizer has 2-3 significant ranks; a top-10 "
                           "mean dilutes them"),
    "small_n_copies_training_images": ("unchanged", "held", "not questioned by the review: the rule is kept"),
    "twins_agree_at_large_n": ("unchanged", "held", "not questioned by the review: the rule is kept"),
}
"""Per v3 claim (its function's name): the v2 rule, its outcome on the page of 2026-11-30 (zoo v1, v2 stores) and
why the rule changed (docs/methods/claims.md, "The rules, old and new"); the claims page prints them beside each
v3 outcome."""
