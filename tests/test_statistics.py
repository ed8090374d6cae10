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


def test_the_paired_difference_of_two_gaps_on_the_same_images():
    import math

    import pytest

    from biasprobe.statistics import Estimate, combine_seeds, compare, paired_difference

    generator = np.random.default_rng(1)
    train, test = generator.normal(30, 2, 40), generator.normal(25, 2, 60)
    noise_train, noise_test = generator.normal(0, 0.1, 40), generator.normal(0, 0.1, 60)
    first = {"train": train + 0.5 + noise_train, "test": test + 0.1 + noise_test}
    found = paired_difference(first, {"train": train, "test": test})
    expected = (0.5 + noise_train.mean()) - (0.1 + noise_test.mean())
    assert found.value == pytest.approx(expected)
    assert found.se == pytest.approx(math.sqrt(noise_train.var(ddof=1) / 40 + noise_test.var(ddof=1) / 60))
    with pytest.raises(ValueError, match="not the same images"):
        paired_difference(first, {"train": train[:39], "test": test})
    # the paired band decides where the independent one cannot; non-finite estimates are refused
    a, b = Estimate(1.2, 0.1), Estimate(1.0, 0.1)
    assert compare(a, b, 2.0) == 0 and compare(a, b, 2.0, Estimate(0.2, 0.01)) == 1
    with pytest.raises(ValueError, match="finite"):
        compare(Estimate(float("nan"), 0.1), b, 2.0)
    assert math.isnan(combine_seeds([1.0, float("nan"), 1.0], [0.1, 0.1, 0.1]).value)
