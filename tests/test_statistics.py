"""Estimates with standard errors, their comparison and bootstrap intervals (biasprobe.statistics)."""

import math

import numpy as np
import pytest

from biasprobe import statistics

def test_one_seed_keeps_its_image_error_and_is_said():
    estimate = statistics.combine_seeds([2.0], [0.1], steps=16000)
    assert (estimate.value, estimate.se, estimate.seeds) == (2.0, 0.1, 1)
    assert estimate.text() == "2.00 ± 0.10 (1 seed, 16.0k steps)"

def test_seed_scatter_or_image_noise_whichever_is_larger():
    scattered = statistics.combine_seeds([1.0, 2.0, 3.0], [0.01, 0.01, 0.01])
    assert scattered.value == pytest.approx(2.0)
    assert scattered.se == pytest.approx(1.0 / math.sqrt(3))  # sd 1 over √3 seeds
    noisy = statistics.combine_seeds([2.0, 2.0, 2.0], [0.3, 0.3, 0.3])
    assert noisy.se == pytest.approx(math.sqrt(3 * 0.09) / 3)  # identical seeds: the image noise remains
    with pytest.raises(ValueError):
        statistics.combine_seeds([1.0, 2.0], [0.1])

def test_bootstrap_interval_covers_a_known_mean_at_its_width():
    values = np.random.default_rng(1).normal(3.0, 1.0, size=400)
    low, high = statistics.bootstrap_interval(values)
    assert low < 3.0 < high
    assert high - low == pytest.approx(2 * 1.96 / math.sqrt(400), rel=0.2)
    assert statistics.bootstrap_interval(values) == (low, high)  # seeded
    assert all(math.isnan(v) for v in statistics.bootstrap_interval([1.0]))


def test_over_images_is_the_mean_and_its_standard_error_over_finite_values():
    from biasprobe.statistics import over_images

    found = over_images([1.0, 2.0, 3.0, float("nan")], steps=2000)
    assert found.value == 2.0 and found.se == pytest.approx(1 / np.sqrt(3)) and found.steps == 2000
    assert np.isnan(over_images([4.0]).se) and over_images([4.0]).value == 4.0
    assert np.isnan(over_images([]).value)
