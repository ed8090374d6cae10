"""The eigensolvers on explicit matrices of known spectrum (no network involved)."""

import numpy as np
import pytest
import torch

from biasprobe.eigensolvers import MatrixOperator, choose_method, decompose, krylov_limit
from biasprobe.errors import InputError


def symmetric_matrix(d: int, eigenvalues: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Q diag(λ) Qᵀ for a random orthogonal Q."""
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0]
    return torch.from_numpy(q @ np.diag(eigenvalues) @ q.T)


def test_dense_recovers_a_known_spectrum_exactly():
    d = 48
    values = np.geomspace(1.0, 1e-3, d)
    result = decompose(MatrixOperator(symmetric_matrix(d, values)), "dense")
    np.testing.assert_allclose(result.spectrum, values, rtol=1e-5)
    np.testing.assert_allclose(result.singular_spectrum, values, rtol=1e-5)
    np.testing.assert_allclose(result.singular_cosine, 1.0, atol=1e-4)
    assert result.trace == pytest.approx(values.sum(), rel=1e-5)
    assert result.asymmetry < 1e-6
    assert result.products == d


def test_dense_measures_asymmetry_and_singular_values_of_a_general_matrix():
    matrix = torch.from_numpy(np.random.default_rng(1).standard_normal((20, 20)))
    result = decompose(MatrixOperator(matrix), "dense")
    expected = torch.linalg.matrix_norm(matrix - matrix.T) / torch.linalg.matrix_norm(matrix)
    assert result.asymmetry == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(result.singular_spectrum, torch.linalg.svdvals(matrix).numpy(), rtol=1e-5)
    symmetric_part = np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())[::-1]
    np.testing.assert_allclose(result.spectrum, symmetric_part, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["randomized", "lanczos"])
def test_matrix_free_methods_find_the_top_eigenpairs(method):
    d, k = 200, 8
    values = np.geomspace(1.0, 1e-4, d)
    operator = MatrixOperator(symmetric_matrix(d, values, seed=2))
    result = decompose(operator, method, k, tolerance=1e-4, seed=3)
    np.testing.assert_allclose(result.spectrum[:k], values[:k], rtol=1e-3)
    np.testing.assert_allclose(result.singular_spectrum[:k], values[:k], rtol=1e-3)
    assert (result.eigen_residual < 1e-2).all()
    assert result.eigenvectors.shape == (k, d)
    assert operator.products > 0 and result.products >= operator.products - 1
    if method == "randomized":
        assert operator.products <= 2 * krylov_limit(d, k)


def test_randomized_eigenvectors_span_the_true_top_eigenspace():
    d, k = 120, 5
    values = np.concatenate([np.linspace(2.0, 1.0, k), np.full(d - k, 0.01)])
    matrix = symmetric_matrix(d, values, seed=4)
    result = decompose(MatrixOperator(matrix), "randomized", k, tolerance=1e-6, seed=0)
    true = np.linalg.eigh(matrix.numpy())[1][:, ::-1][:, :k]
    overlap = np.linalg.norm(true.T @ result.eigenvectors.T) ** 2 / k
    assert overlap == pytest.approx(1.0, abs=1e-4)


def test_auto_and_bad_requests():
    assert choose_method("auto", 64, None) == "dense"
    assert choose_method("auto", 10_000, None) == "randomized"
    assert choose_method("auto", 4096, 4) == "randomized"
    with pytest.raises(InputError, match="method must be one of"):
        choose_method("qr", 10, None)
    with pytest.raises(InputError, match="top_k < d"):
        decompose(MatrixOperator(torch.eye(5)), "randomized", 5)
    with pytest.raises(InputError, match="square"):
        MatrixOperator(torch.zeros(3, 4))


def test_the_krylov_loop_keeps_q_s_q_equal_to_its_recomputation(monkeypatch):
    """The randomized solver grows Qᵀ S Q block by block (O(d m b) a step, not O(d m²)); at every step it equals
    Qᵀ (JQ + JᵀQ)/2 computed afresh, for a non-symmetric J too."""
    from biasprobe import eigensolvers

    matrix = torch.from_numpy(np.random.default_rng(5).standard_normal((150, 150))) / 12
    matrix = matrix + symmetric_matrix(150, np.geomspace(3.0, 1e-3, 150), seed=6)
    checked, original = [], eigensolvers._eigenpairs

    def checking(basis, j_basis, jt_basis, stored, projected=None):
        if basis is not None and projected is not None:
            fresh = basis.T @ ((j_basis + jt_basis) / 2)
            torch.testing.assert_close(projected, fresh, rtol=1e-10, atol=1e-12)
            checked.append(basis.shape[1])
        return original(basis, j_basis, jt_basis, stored, projected)

    monkeypatch.setattr(eigensolvers, "_eigenpairs", checking)
    result = decompose(MatrixOperator(matrix), "randomized", 8, tolerance=1e-12, seed=1)
    assert len(checked) >= 3 and checked == sorted(checked)  # several growth steps were checked
    symmetric = np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())[::-1][:8]
    np.testing.assert_allclose(result.spectrum[:8], symmetric, rtol=1e-6)
