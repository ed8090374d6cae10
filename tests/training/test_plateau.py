"""The plateau rule on synthetic loss curves: falling, flat with noise, flat after a warm-restart bump."""

import itertools

import numpy as np
import pytest

import biasprobe as bp
from biasprobe.training.plateau import loss_plateau

STEPS = 20_000


def curve(losses, restarts=(), points=200):
    """Per-step ``losses`` as a record keeps them: each round (split at ``restarts``) in up to ``points``
    points, each the mean loss since the previous point."""
    result, start = [], 0
    for end in [*restarts, len(losses)]:
        edges = np.unique(np.linspace(start, end, points + 1).astype(int))
        result += [[int(b), float(np.mean(losses[a:b]))] for a, b in itertools.pairwise(edges)]
        start = end
    return result


def noisy(level, relative_sd, rng, steps=STEPS):
    return level * (1 + relative_sd * rng.standard_normal(steps))


def test_a_falling_curve_is_not_on_a_plateau():
    rng = np.random.default_rng(0)
    step = np.arange(1, STEPS + 1)
    judged = loss_plateau(curve(noisy(1, 0.2, rng) * (0.03 + 0.02 * np.exp(-step / 8000))))
    expected = (0.03 + 0.02 * np.exp(-18_000 / 8000)) / (0.03 + 0.02 * np.exp(-14_000 / 8000)) - 1  # the midpoints
    assert not judged.plateau and judged.change == pytest.approx(expected, abs=0.005) and judged.change < -0.03
    assert judged.reason.startswith("falling")


def test_a_flat_noisy_curve_is_on_a_plateau_and_its_standard_error_matches_the_scatter():
    rng = np.random.default_rng(1)
    judged = loss_plateau(curve(noisy(0.03, 0.2, rng)))
    assert judged.plateau and abs(judged.change) < 0.01 and judged.reason.startswith("flat")
    # se(Δ) of a flat curve with per-step s.d. 20 %: √2 · 0.2 / √4000 (two windows of 4000 steps)
    assert judged.change_se == pytest.approx(0.2 * np.sqrt(2 / 4000), rel=0.15)
    changes = [loss_plateau(curve(noisy(0.03, 0.2, rng), [6000]), [6000]).change for _ in range(40)]
    assert np.std(changes) == pytest.approx(0.2 * np.sqrt(2 / 4000), rel=0.3)  # rounds of other bin widths too


def test_noise_keeps_a_curve_from_counting_as_flat_but_never_makes_a_falling_one_flat():
    rng = np.random.default_rng(2)
    short = loss_plateau(curve(noisy(0.03, 1.0, rng, steps=2000)))  # flat, but too noisy to tell
    assert not short.plateau and short.reason.startswith("too noisy") and short.change_se > 0.02
    falling = np.linspace(0.04, 0.03, STEPS)  # −6 % between the last two fifths, without noise
    assert not loss_plateau(curve(falling)).plateau
    assert loss_plateau(curve(np.full(STEPS, 0.03))).plateau  # noiseless and flat: se = 0


def test_a_bump_after_a_warm_restart_is_left_out():
    rng = np.random.default_rng(3)
    after = np.arange(1, STEPS + 1) - 15_000
    losses = noisy(0.03, 0.2, rng) + np.where(after > 0, 0.015 * np.exp(-np.clip(after, 0, None) / 150), 0)
    points = curve(losses, [15_000])
    judged = loss_plateau(points, [15_000])
    assert judged.plateau and abs(judged.change) < 0.01
    counted = loss_plateau(points, [15_000], settle=0)  # the bump in the fifth before: a spurious fall
    assert not counted.plateau and counted.change < -0.015


def test_too_short_curves_and_damaged_ones():
    assert loss_plateau([]).reason == "no loss curve"
    judged = loss_plateau([[10, 0.5], [20, 0.4], [30, 0.3]])
    assert not judged.plateau and judged.change is None and judged.reason.startswith("too short")
    with pytest.raises(bp.InputError, match="must increase"):
        loss_plateau([[10, 0.5], [5, 0.4]])
    with pytest.raises(bp.InputError, match="last"):
        loss_plateau([[10, 0.5]], last=0.7)


def test_a_damaged_record_is_refused_naming_it():
    from biasprobe.training.plateau import record_plateau

    with pytest.raises(bp.InputError, match=r"^zoo/x.train.json: a loss curve's steps must increase"):
        record_plateau({"loss_curve": [[10, 0.1], [5, 0.1]]}, "zoo/x.train.json")
    assert record_plateau({}, "zoo/y.train.json").reason == "no loss curve"  # missing curve and restarts: empty
