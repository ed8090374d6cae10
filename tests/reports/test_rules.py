"""The science-v3 rules (biasprobe.reports.rules) against cases with known answers."""

import math

import numpy as np
import pytest

from biasprobe.reports import rules
from biasprobe.reports.rules import Estimate


def test_compare_tells_apart_only_beyond_two_standard_errors():
    a, b = Estimate(1.0, 0.1), Estimate(1.5, 0.1)
    band = rules.Z * math.hypot(0.1, 0.1)  # 0.283
    assert rules.compare(b, a) == 1 and rules.compare(a, b) == -1
    assert rules.compare(Estimate(1.0 + 0.99 * band, 0.1), a) == 0
    assert rules.within_noise(Estimate(1.0 + 0.99 * band, 0.1), a)
    assert not rules.within_noise(Estimate(1.0 + 1.01 * band, 0.1), a)


def test_regimes_from_the_gap_not_from_n():
    assert rules.regime(Estimate(13.95, 0.2)) == "memorizing"  # the paper's UNet at 10³
    assert rules.regime(Estimate(0.82, 0.1)) == "transition"  # its DiT at 10⁴
    assert rules.regime(Estimate(0.03, 0.05)) == "generalizing"  # its DiT at 10⁵
    ladder = {10: Estimate(23.9, 0.3), 100: Estimate(15.4, 0.2), 1000: Estimate(0.87, 0.05),
              3000: Estimate(2.5, 0.1), 10000: Estimate(0.04, 0.02), 30000: Estimate(0.01, 0.02)}
    # transition: 1000 (0.87) and 3000 (2.5); √(0.5·3) = 1.22 is nearer 0.87 in log (0.34 against 0.72)
    assert rules.regime_ladder(ladder) == {"memorizing": 100, "transition": 1000, "generalizing": 10000}
    assert rules.regime_ladder({10: Estimate(20, 1)}) == {"memorizing": 10}


def test_common_step_is_the_largest_shared():
    assert rules.common_step({"a": [2000, 4000, 6000], "b": [2000, 4000], "c": [4000, 2000, 8000]}) == 4000
    assert rules.common_step({"a": [2000], "b": [4000]}) is None
    assert rules.common_step({}) is None


def test_late_gap_and_peak_on_the_paper_grid():
    t = np.arange(0, 1000, 20)
    gap = np.where(t <= 100, 10.0 - t / 20, np.maximum(0, 5 - (t - 100) / 100))
    assert rules.peak_step(gap, t) == 0
    late = rules.late_gap(gap, np.full(len(t), 0.2), t)
    assert late.value == 0 and late.se == pytest.approx(0.2)
    with pytest.raises(ValueError, match="t ≥ 700"):
        rules.late_gap([1.0, 2.0], [0.1, 0.1], [0, 400])


def test_span_score_weights_the_significant_ranks():
    # an ideal memorizer: two directions, both in the training span, then noise-level eigenvalues
    assert rules.span_score([3.0, 2.0, 0.01, 0.01], [1.0, 1.0, 0.0, 0.0]) == pytest.approx(1.0)
    # the leading direction outside the span weighs by its eigenvalue
    assert rules.span_score([3.0, 1.0, 0.01], [0.0, 1.0, 1.0]) == pytest.approx(1.0 / 4.0)
    assert rules.significant_ranks(np.linspace(1, 0.5, 20)).sum() == rules.SPAN_RANKS
    assert math.isnan(rules.span_score([0.0, 0.0], [1.0, 1.0]))



def test_the_decisions_on_known_cases():
    e = lambda v, s=0.1: Estimate(v, s)  # noqa: E731
    ladder = {10: e(20), 100: e(15), 1000: e(0.9), 10000: e(0.05)}
    assert rules.falls_with_n(ladder) == rules.HELD
    assert rules.falls_with_n({**ladder, 10000: e(0.3, 0.2), 30000: e(0.8)}) == rules.FAILED  # rises beyond noise
    assert rules.falls_with_n({10: e(20), 100: e(15), 1000: e(0.9)}) == rules.FAILED  # largest N still transition
    assert rules.falls_with_n({10: e(20), 100: e(15)}) == rules.NOT_TESTED
    assert rules.larger(e(15), e(2)) == rules.HELD and rules.larger(e(2), e(15)) == rules.FAILED
    assert rules.larger(e(2.0), e(2.1)) == rules.UNRESOLVED and rules.larger(None, e(1)) == rules.NOT_TESTED
    assert rules.smaller(e(1.0), e(1.5)) == rules.HELD
    assert rules.same(e(0.01), e(0.02)) == rules.HELD and rules.same(e(1.0), e(2.0)) == rules.FAILED
    assert rules.smallest(e(1.0), [e(1.6), e(1.5)]) == rules.HELD
    assert rules.smallest(e(1.0), [e(1.6), e(1.1)]) == rules.UNRESOLVED
    assert rules.smallest(e(1.0), [e(1.6), e(0.5)]) == rules.FAILED
    t = np.arange(0, 1000, 20)
    early = np.where(t <= 100, 10.0, np.maximum(0, 5 - t / 100))
    assert rules.peaks_early_and_fades([(early, np.full(50, 0.2), t)]) == rules.HELD
    late_bump = early + np.where(t >= 700, 1.0, 0.0)
    assert rules.peaks_early_and_fades([(late_bump, np.full(50, 0.2), t)]) == rules.FAILED
    assert rules.peaks_early_and_fades([(np.full(50, 0.1), np.full(50, 0.2), t)]) == rules.NOT_TESTED
    gahb, other = "geometry-adaptive harmonic", "not geometry-adaptive harmonic"
    assert rules.all_and_none([gahb, gahb], other, gahb, other) == rules.HELD
    assert rules.all_and_none([gahb, "undecided"], other, gahb, other) == rules.UNRESOLVED
    assert rules.all_and_none([gahb, other], other, gahb, other) == rules.FAILED
    assert rules.all_and_none([gahb, gahb], gahb, gahb, other) == rules.FAILED
    assert rules.interval_above_zero(0.2, 1.0) == rules.HELD and rules.interval_above_zero(-1, -0.1) == rules.FAILED
    assert rules.interval_above_zero(-0.1, 0.3) == rules.UNRESOLVED
