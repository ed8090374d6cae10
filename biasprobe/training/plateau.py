"""Whether a training run is on a plateau: the loss change over its last 20 % of steps, judged against
the curve's own noise.

A loss curve is what training records keep (``NAME.train.json``'s ``loss_curve``): points
``[step, loss]``, each the mean training loss over the steps after the previous point up to its own
(the first over steps 1 … step). Rounds joined by warm restarts continue the list, so the curve is a
step function ℓ(s) = xᵢ on (sᵢ₋₁, sᵢ], s₀ = 0, point i averaging wᵢ = sᵢ − sᵢ₋₁ steps.

The rule of :func:`loss_plateau` (fixed before any zoo curve was judged by it):

- **Windows.** With S the last step and f = 20 %, A = (S − fS, S] is the last fifth of the steps done
  and B = (S − 2fS, S − fS] the fifth before it. The first ``settle`` steps after each warm restart
  (r, r + settle] are left out of both: a fresh AdamW's transient (1/(1 − β₂) = 1000 steps), not
  learning. m_A = Σᵢ oᵢxᵢ / Σᵢ oᵢ with oᵢ the steps point i shares with A (m_B likewise).
- **Change.** Δ = m_A / m_B − 1, the relative change of the mean loss between the two fifths.
- **Noise.** Per-step losses scatter about the trend with a standard deviation σ, independently, so a
  point averaging wᵢ steps has variance σ²/wᵢ and neighbours differ by dᵢ = xᵢ₊₁ − xᵢ with variance
  σ²(1/wᵢ + 1/wᵢ₊₁) (a smooth trend barely adds to it). Robustly (a restart bump or a spike does not
  inflate it): σ̂² = median(dᵢ² / (1/wᵢ + 1/wᵢ₊₁)) / 0.4549 (0.4549: the median of χ²₁), over the pairs
  of neighbouring points that lie in A ∪ B, none across a warm restart or inside a settle span. Then
  Var m_A = σ̂² Σᵢ (oᵢ²/wᵢ) / (Σᵢ oᵢ)² (B likewise) and, by the delta method,
  se(Δ) = √(Var m_A + (m_A/m_B)² Var m_B) / m_B.
- **Plateau** iff |Δ| + z·se(Δ) ≤ tol, with z = 2 and tol = 2 %: the change lies within ±2 % at about
  97.5 % confidence on each side (an equivalence test). Noise can only keep a curve from counting as
  flat, never make a falling one count; a rise counts like a fall. 2 % of a mean squared error is
  0.086 dB of PSNR, below the 0.1 dB the claims page treats as no difference.
- **Too short to judge** (plateau False, with the reason): fewer than :data:`MIN_POINTS` points in
  either window or fewer than three neighbouring pairs for the noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biasprobe.errors import InputError

LAST = 0.2
"""The fraction of the steps done whose mean loss is compared with the same fraction before it."""
TOLERANCE = 0.02
"""The largest relative change of the mean loss that still counts as flat (2 % ≈ 0.086 dB of PSNR)."""
Z = 2.0
"""Standard errors added to |Δ| before it is compared with the tolerance."""
SETTLE = 1000
"""Steps after a warm restart left out of the windows: 1/(1 − β₂) of AdamW's default β₂ = 0.999."""
MIN_POINTS = 3
"""Fewest curve points each window must touch for a judgement."""
CHI2_1_MEDIAN = 0.454936
"""The median of a χ² variable with one degree of freedom (the median of d²/Var d for Gaussian d)."""


@dataclass(frozen=True)
class Plateau:
    """The judgement of one loss curve (:func:`loss_plateau`).

    ``change``: Δ = m_A / m_B − 1 (None when the curve is too short); ``change_se``: se(Δ);
    ``plateau``: |Δ| + z·se(Δ) ≤ tolerance; ``steps``: the steps done; ``reason``: why not, in words."""

    change: float | None
    change_se: float | None
    plateau: bool
    steps: int
    reason: str

    def record(self) -> dict:
        """The fields a training record and the zoo manifest carry."""
        rounded = (lambda value: None if value is None else round(value, 5))
        return {"loss_change_last_20pct": rounded(self.change), "loss_change_se": rounded(self.change_se),
                "plateau": self.plateau}


def loss_plateau(
    curve: Sequence[Sequence[float]],
    warm_restarts: Sequence[int] = (),
    *,
    last: float = LAST,
    tolerance: float = TOLERANCE,
    z: float = Z,
    settle: int = SETTLE,
) -> Plateau:
    """Judge whether the loss ``curve`` ([step, mean loss since the previous point] pairs) is flat over
    its ``last`` fraction of steps; ``warm_restarts`` are the steps at which the run was warm-restarted.

    Δ = m_A / m_B − 1 between the step-weighted mean losses of the last fraction A and the one before
    it B (the first ``settle`` steps after each warm restart left out); plateau iff
    |Δ| + z·se(Δ) ≤ ``tolerance``, se from the points' scatter (the module doc gives every formula)."""
    if not 0 < last <= 0.5:
        raise InputError("{last} must lie in (0, 0.5]: two windows of that fraction must fit in the steps done",
                         parameters=["last"])
    points = np.asarray([[float(step), float(loss)] for step, loss in curve], dtype=float).reshape(-1, 2)
    if not len(points):
        return Plateau(None, None, False, 0, "no loss curve")
    steps, losses = points[:, 0], points[:, 1]
    starts = np.concatenate([[0.0], steps[:-1]])
    if not (np.all(steps > starts) and np.all(np.isfinite(losses))):
        raise InputError("a loss curve's steps must increase and its losses be finite; the record is damaged: "
                         "restore it (e.g. from version control)")
    total = float(steps[-1])
    windows = {"A": (total - last * total, total), "B": (total - 2 * last * total, total - last * total)}
    excluded = [(float(r), float(r) + settle) for r in warm_restarts]

    def overlap(low: float, high: float) -> np.ndarray:
        """Steps each point shares with (low, high] outside the settle spans."""
        shared = np.clip(np.minimum(steps, high) - np.maximum(starts, low), 0, None)
        for begin, end in excluded:
            shared -= np.clip(np.minimum(steps, min(high, end)) - np.maximum(starts, max(low, begin)), 0, None)
        return np.clip(shared, 0, None)

    widths = steps - starts
    shares = {name: overlap(*window) for name, window in windows.items()}
    touched = {name: int(np.count_nonzero(share > 0)) for name, share in shares.items()}
    if min(touched.values()) < MIN_POINTS:
        return Plateau(None, None, False, int(total), f"too short to judge: the last {last:.0%} and the {last:.0%} "
                       f"before touch {touched['A']} and {touched['B']} curve points (at least {MIN_POINTS} each)")
    means = {name: float(share @ losses / share.sum()) for name, share in shares.items()}
    change = means["A"] / means["B"] - 1

    # the noise: neighbouring points both inside A ∪ B, not across a restart, neither in a settle span
    inside = (shares["A"] + shares["B"]) >= widths
    restarted = np.zeros(len(steps), dtype=bool)
    for begin, end in excluded:  # points in a settle span, and the first point after each restart
        restarted |= ((starts < end) & (steps > begin)) | (starts == begin)
    usable = inside & ~restarted
    pairs = usable[:-1] & usable[1:]
    if np.count_nonzero(pairs) < 3:
        return Plateau(change, None, False, int(total), "too few clean neighbouring points to measure the noise")
    differences = np.diff(losses)[pairs]
    spread = (1 / widths[:-1] + 1 / widths[1:])[pairs]
    variance = float(np.median(differences**2 / spread) / CHI2_1_MEDIAN)
    var_mean = {name: variance * float((share**2 / widths).sum()) / float(share.sum()) ** 2
                for name, share in shares.items()}
    se = float(np.sqrt(var_mean["A"] + (means["A"] / means["B"]) ** 2 * var_mean["B"]) / means["B"])
    flat = abs(change) + z * se <= tolerance
    measured = f"{change:+.1%} ± {se:.1%} over the last {last:.0%} of steps"
    if flat:
        reason = f"flat: {measured}, within ±{tolerance:.0%} at {z:g} s.e."
    elif abs(change) > z * se:
        reason = f"{'falling' if change < 0 else 'rising'}: {measured}"
    else:
        reason = f"too noisy to call flat: {measured}, not within ±{tolerance:.0%} at {z:g} s.e."
    return Plateau(change, se, bool(flat), int(total), reason)


def record_plateau(record: dict, source: str | os.PathLike) -> Plateau:
    """:func:`loss_plateau` of a training record (``NAME.train.json``: its ``loss_curve`` and
    ``warm_restarts``, either missing counting as empty); a damaged curve is refused naming ``source``."""
    try:
        return loss_plateau(record.get("loss_curve") or [], record.get("warm_restarts") or [])
    except InputError as err:
        raise InputError(f"{source}: {err}") from None
