"""The analyses benchmark's precision deviation (tests/benchmarks/bench_analyses.py ``deviation``, whose numbers
docs/benchmarks.md and docs/methods/jacobian.md quote) against matrices whose answer is known, and its survey
fallback part (whose ratios docs/methods/claims.md quotes) against the dense decomposition it is compared with."""

import math

import pytest
import torch

from tests.conftest import import_benchmark, tiny_checkpoint


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("bench_analyses")


@pytest.fixture(scope="module")
def deviation(bench):
    return bench.deviation


def test_the_deviation_reads_a_known_eigenvalue_shift_and_a_known_rotation(deviation):
    d = 16
    values = torch.arange(d, 0, -1, dtype=torch.float64)  # λ₀ = 16 > … > 1, eigenvectors the standard basis
    reference = torch.diag(values)
    assert deviation(reference, reference) == {"eigenvalue_error_rel": 0.0, "top8_subspace_angle_deg": 0.0}
    shifted = reference.clone()
    shifted[3, 3] += 0.4  # one eigenvalue moves by 0.4 = 2.5 % of λ₀; the eigenvectors stay
    result = deviation(reference, shifted)
    assert result["eigenvalue_error_rel"] == pytest.approx(0.4 / 16) and result["top8_subspace_angle_deg"] < 1e-6
    # turn e₀ towards e₁₀ (outside the top 8) by 5°, keeping the spectrum: the top-8 eigenspace turns by 5°
    angle = math.radians(5)
    rotation = torch.eye(d, dtype=torch.float64)
    rotation[0, 0] = rotation[10, 10] = math.cos(angle)
    rotation[10, 0], rotation[0, 10] = math.sin(angle), -math.sin(angle)
    turned = rotation @ reference @ rotation.T
    result = deviation(reference, turned)
    assert result["top8_subspace_angle_deg"] == pytest.approx(5.0, abs=1e-6)
    assert result["eigenvalue_error_rel"] < 1e-12
    # only the symmetric part counts: an antisymmetric addition changes nothing
    skew = torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = deviation(reference, reference + (skew - skew.T))
    assert result["eigenvalue_error_rel"] < 1e-12 and result["top8_subspace_angle_deg"] < 1e-5


def test_the_fallback_part_finds_the_dense_eigenpairs_and_counts_its_time_against_dense(bench, tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.safetensors", "unet-bf", image_size=8)  # d = 64
    rows = bench.fallback_part([str(path)], torch.device("cpu"), ["lanczos", "randomized"], 1e-6, k=8)
    assert [row["method"] for row in rows] == ["dense", "lanczos", "randomized"]
    dense, *free = rows
    assert dense["products"] == 64 and dense["times_dense"] == 1.0
    for row in free:
        assert row["eigenvalue_error_rel"] < 1e-4 and row["top8_subspace_angle_deg"] < 0.5 and row["products"] > 0
        assert row["times_dense"] == pytest.approx(row["seconds"] / dense["seconds"])
