"""The Jacobian analysis against known answers: the Wiener filter, autograd, finite differences."""

import json

import numpy as np
import pytest
import torch

import biasprobe as bp
from biasprobe.analyses.harmonic import gahb_summary
from biasprobe.analyses.jacobian import JacobianOperator, choose_method, decompose, jacobian, jacobian_matrix
from biasprobe.analyses.reference import GaussianImageModel
from biasprobe.errors import InputError
from biasprobe.images import write_image

from tests.conftest import run_cli, tiny_checkpoint

SHAPE = (1, 8, 8)


@pytest.fixture
def images():
    return torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1))


def smooth_nonlinear(y, sigma):
    """A small nonlinear, non-symmetric-Jacobian denoiser (blur of a tanh, plus a pixel shift)."""
    kernel = torch.tensor([[0.1, 0.2, 0.1], [0.2, 0.4, 0.2], [0.1, 0.2, 0.1]], dtype=y.dtype).view(1, 1, 3, 3)
    blurred = torch.nn.functional.conv2d(torch.tanh(2 * y - 1), kernel, padding=1)
    return 0.5 + 0.3 * blurred + 0.1 * torch.roll(y, 1, dims=-1) * sigma.view(-1, 1, 1, 1)


def test_gaussian_eigenvalues_and_fourier_eigenvectors(images):
    model = GaussianImageModel(SHAPE)
    ds = jacobian(model.denoiser(), images, sigmas=[0.05, 0.3])
    for j, sigma in enumerate([0.05, 0.3]):
        expected = model.eigenvalues(sigma)
        np.testing.assert_allclose(ds.spectrum.isel(sigma=j).values, np.broadcast_to(expected, (2, 64)), atol=1e-4)
        np.testing.assert_allclose(ds.effective_dimension.isel(sigma=j).values, expected.sum(), rtol=1e-4)
    assert float(ds.asymmetry.max()) < 1e-4
    np.testing.assert_allclose(ds.singular_cosine.values, 1, atol=1e-4)
    # each eigenvector lives on the frequencies of one Wiener gain: its DFT power sits on gains equal to λ
    gains = model.gains(0.3)
    vectors = ds.eigenvector.isel(image=0, sigma=1, channel=0).values
    power = np.abs(np.fft.fft2(vectors)) ** 2
    lam = ds.eigenvalue.isel(image=0, sigma=1).values
    matching = np.abs(gains[None] - lam[:, None, None]) < 1e-4
    np.testing.assert_allclose((power * matching).sum((1, 2)) / power.sum((1, 2)), 1, atol=1e-4)


def test_dense_matches_autograd_and_finite_differences():
    denoiser = bp.Denoiser.wrap(smooth_nonlinear, SHAPE)
    y = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(2))
    jac = jacobian_matrix(denoiser, y, 0.2, memory_budget=20_000)  # several chunks
    reference = torch.autograd.functional.jacobian(lambda v: denoiser.denoise(v, 0.2), y).reshape(64, 64)
    torch.testing.assert_close(jac, reference, atol=1e-6, rtol=1e-5)
    y64 = y.double()
    step = 1e-6
    columns = [(denoiser.denoise(y64 + step * e, 0.2) - denoiser.denoise(y64 - step * e, 0.2)).flatten() / (2 * step)
               for e in torch.eye(64, dtype=torch.float64).view(64, 1, *SHAPE)]
    np.testing.assert_allclose(jac.numpy(), torch.stack(columns, 1).numpy(), atol=1e-4)


@pytest.mark.parametrize("method", ["randomized", "lanczos"])
def test_matrix_free_top_k_matches_dense(method):
    denoiser = bp.Denoiser.wrap(smooth_nonlinear, (1, 16, 16))
    y = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    dense = decompose(JacobianOperator(denoiser, y, 0.1), "dense")
    top = decompose(JacobianOperator(denoiser, y, 0.1), method, 8, tolerance=1e-6)
    np.testing.assert_allclose(top.spectrum, dense.spectrum[:8], rtol=1e-4)
    overlap = np.abs(np.sum(top.eigenvectors * dense.eigenvectors[:8], axis=1))
    np.testing.assert_allclose(overlap, 1, atol=1e-3)
    # the stored residuals are the true ones
    jac = jacobian_matrix(denoiser, y, 0.1).double().numpy()
    vectors, values = top.eigenvectors.T, top.spectrum
    true = np.linalg.norm((jac + jac.T) / 2 @ vectors - vectors * values, axis=0) / np.abs(values)
    np.testing.assert_allclose(top.eigen_residual, true, rtol=1e-2, atol=1e-6)
    assert top.eigen_residual.max() < 1e-2
    np.testing.assert_allclose(top.asymmetry, dense.asymmetry, rtol=0.3)
    if method == "lanczos":  # its singular triplets come from svds, not from the eigen-subspace
        np.testing.assert_allclose(top.singular_spectrum, dense.singular_spectrum[:8], rtol=1e-4)


@pytest.mark.parametrize("method", ["dense", "randomized", "lanczos"])
def test_without_singular_triplets_the_eigenpairs_are_the_same_and_cost_no_more(method):
    """singular=False (what the GAHB survey asks) skips the SVD / svds and changes none of the eigen-parts."""
    denoiser = bp.Denoiser.wrap(smooth_nonlinear, (1, 16, 16))
    y = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    top_k = None if method == "dense" else 8
    both = decompose(JacobianOperator(denoiser, y, 0.1), method, top_k, tolerance=1e-6)
    eigen = decompose(JacobianOperator(denoiser, y, 0.1), method, top_k, tolerance=1e-6, singular=False)
    assert both.singular_spectrum is not None and eigen.singular_spectrum is None and eigen.singular_residual is None
    for name in ("spectrum", "eigenvectors", "eigen_residual", "jacobian_residual"):
        np.testing.assert_allclose(getattr(eigen, name), getattr(both, name), rtol=1e-6, atol=1e-9)
    assert eigen.trace == pytest.approx(both.trace) and eigen.asymmetry == pytest.approx(both.asymmetry)
    if method == "lanczos":  # svds spends products of its own
        assert eigen.products < both.products
    else:
        assert eigen.products == both.products


def test_a_jacobian_store_without_singular_triplets_has_every_other_variable_unchanged(images):
    denoiser = bp.Denoiser.wrap(smooth_nonlinear, SHAPE)
    both = jacobian(denoiser, images, sigmas=[0.1, 0.3])
    eigen = jacobian(denoiser, images, sigmas=[0.1, 0.3], singular=False)
    singular = {"singular_value", "singular_cosine", "singular_residual", "singular_spectrum"}
    assert singular <= set(both.data_vars) and not singular & set(eigen.data_vars)
    assert list(eigen.data_vars) == [name for name in both.data_vars if name not in singular]
    for name in eigen.data_vars:
        np.testing.assert_array_equal(eigen[name].values, both[name].values)
    assert {**eigen.attrs, "created": ""} == {**both.attrs, "created": ""}  # the time of creation may differ


def test_randomized_returns_k_pairs_when_it_converges_at_once():
    """J = I converges in the first block, which is smaller than k: still k eigenpairs."""
    identity = bp.Denoiser.wrap(lambda y, sigma: y.clone(), (1, 16, 16))
    top = decompose(JacobianOperator(identity, torch.rand(1, 1, 16, 16), 0.1), "randomized", 40)
    assert top.eigenvectors.shape == (40, 256)
    np.testing.assert_allclose(top.spectrum, 1, atol=1e-6)


def test_bias_free_unet_is_homogeneous(tmp_path):
    """J y = D(y) for the bias-free UNet: a positively homogeneous map is its own Jacobian's action."""
    denoiser = bp.load(tiny_checkpoint(tmp_path / "u.pt", "unet-bf", image_size=8))
    y = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(4))
    jac = jacobian_matrix(denoiser, y, 0.1)
    with torch.no_grad():
        torch.testing.assert_close(jac @ y.flatten(), denoiser.denoise(y, 0.1).flatten(), atol=1e-5, rtol=1e-4)


def test_raw_output_relates_to_denoiser_jacobian(tmp_path):
    """ε-prediction in [-1, 1] units: ∂D/∂y = I − σ_n ∂ε̂/∂y_n with σ_n = 2σ; attention falls back to math."""
    denoiser = bp.load(tiny_checkpoint(tmp_path / "dit.pt", "dit", image_size=8))
    y = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(5))
    j_denoised = jacobian_matrix(denoiser, y, 0.2)
    j_raw = jacobian_matrix(denoiser, y, 0.2, output="raw")
    torch.testing.assert_close(j_denoised, torch.eye(64) - 0.4 * j_raw, atol=1e-5, rtol=1e-4)
    operator = JacobianOperator(denoiser, y, 0.2)
    columns = operator.columns(torch.eye(64)[:4])  # forward mode through attention (its math path)
    torch.testing.assert_close(columns, j_denoised[:, :4].T, atol=1e-5, rtol=1e-4)
    assert all(m.observer is None for m in denoiser.attention_modules().values())


def test_dataset_layout_seeds_and_timesteps(tmp_path):
    denoiser = bp.load(tiny_checkpoint(tmp_path / "d.pt", "dit", image_size=8, channels=3))
    clean = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    ds = jacobian(denoiser, clean, timesteps=[10, 40], top_k=4, method="randomized", seed=3)
    assert ds.eigenvector.dims == ("image", "sigma", "rank", "channel", "y", "x")
    assert ds.sizes["rank"] == 4 and ds.attrs["method"] == "randomized"
    np.testing.assert_allclose(ds.t.values, [10, 40])
    again = jacobian(denoiser, clean[1:], timesteps=[10, 40], top_k=4, method="randomized", seed=3)
    # the noise of image 1 depends on its index in the run, not on the other images
    assert not np.allclose(again.noisy.isel(image=0).values, ds.noisy.isel(image=1).values)
    np.testing.assert_allclose(ds.noisy.isel(image=0).values, jacobian(
        denoiser, clean[:1], timesteps=[10, 40], top_k=4, method="randomized", seed=3).noisy.isel(image=0).values)
    path = bp.save(ds, tmp_path / "j.zarr")
    assert bp.open(path).attrs["analysis"] == "jacobian"


def test_method_choice_and_errors():
    assert choose_method("auto", 256, None) == "dense"
    assert choose_method("auto", 1024, 32) == "randomized"  # 416 rows + columns cost less than 1024 rows
    assert choose_method("auto", 1024, 64) == "dense"
    assert choose_method("auto", 4096, 32) == "randomized"
    assert choose_method("auto", 3 * 256 * 256, None) == "randomized"
    denoiser = bp.Denoiser.wrap(smooth_nonlinear, SHAPE)
    with pytest.raises(InputError, match="top_k < d"):
        jacobian(denoiser, torch.rand(1, *SHAPE), sigmas=[0.1], top_k=64, method="randomized")
    with pytest.raises(InputError, match="output"):
        jacobian(denoiser, torch.rand(1, *SHAPE), sigmas=[0.1], output="eps")


def test_cli_writes_store_and_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out lands in the current folder
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", "unet-bf", image_size=8)
    for name in ("a", "b"):
        write_image(torch.rand(*SHAPE), tmp_path / f"{name}.png")
    result = run_cli("jacobian", checkpoint, "--image", tmp_path / "a.png", "--image", tmp_path / "b.png",
                     "--sigma", "0.05,0.2", "--figure", tmp_path / "fig.png")
    assert result.returncode == 0, result.stderr
    assert "GAHB" in result.stdout and (tmp_path / "fig.png").exists()
    ds = bp.open(tmp_path / "tiny.jacobian.zarr")
    assert ds.sizes["image"] == 2 and ds.sizes["sigma"] == 2 and ds.sizes["index"] == 64


def test_cli_rejects_a_wrong_size_image(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", "unet-bf", image_size=8)
    write_image(torch.rand(1, 12, 12), tmp_path / "big.png")
    result = run_cli("jacobian", checkpoint, "--image", tmp_path / "big.png")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--resize" in result.stderr


def test_cli_side_by_side_with_training_data(tmp_path, monkeypatch):
    """Two checkpoints, explicit --train-data: one store each with the support and the memorization
    diagnostics, and one figure with a row per checkpoint."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "set.npz", train=rng.random((12, 8, 8)), test=rng.random((12, 8, 8)))
    first = tiny_checkpoint(tmp_path / "first.pt", "unet-bf", image_size=8)
    second = tiny_checkpoint(tmp_path / "second.pt", "dit", image_size=8)
    write_image(torch.rand(*SHAPE), tmp_path / "a.png")
    common = ("--image", tmp_path / "a.png", "--sigma", "0.1", "--train-data", f"npz:{tmp_path / 'set.npz'}",
              "--n-train", "5", "--neighbours", "3", "--held-out", "12")
    result = run_cli("jacobian", first, second, *common, "--figure", tmp_path / "rows.png")
    assert result.returncode == 0, result.stderr
    assert "GAHB verdict" in result.stdout and "wrote second.jacobian.zarr" in result.stdout
    assert (tmp_path / "rows.png").exists()
    assert max(len(line) for line in result.stdout.splitlines() if not line.startswith("wrote ")) <= 80 and "…" not in result.stdout  # paths print whole
    assert "cos tr" in result.stdout and "[2/2] second: Jacobians" in result.stderr
    for name in ("first", "second"):
        ds = bp.open(tmp_path / f"{name}.jacobian.zarr")
        assert ds.support.attrs["method"] == "object" and ds.attrs["memorization_n_train"] == 5
        assert ds.memorization_score.shape == (1, 1) and np.isfinite(ds.nearest_train_cosine).all()
    data = json.loads(run_cli("jacobian", first, second, *common, "--json").stdout)
    assert [c["checkpoint"] for c in data["checkpoints"]] == ["first", "second"]
    assert [g["checkpoint"] for g in data["gahb"]] == ["first", "second"]
    second_store = bp.open(tmp_path / "second.jacobian.zarr")
    assert data["gahb"][1]["memorization_score"] == pytest.approx(second_store.memorization_score.item())
    assert data["gahb"][1]["category"] == str(gahb_summary(second_store).category.item())
    assert sum(data["verdicts"][1]["counts"].values()) == 1
    refused = run_cli("jacobian", first, second, *common, "--out", tmp_path / "one.zarr")
    assert refused.returncode == 1 and "drop --out" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("family", ["unet-bf", "unet-ddpm", "dit"])
def test_images_batched_into_one_backward_give_each_image_its_own_jacobian(tmp_path, family):
    from biasprobe.autodiff import dense_jacobians

    denoiser = bp.load(tiny_checkpoint(tmp_path / "m.pt", family, seed=3))
    ys = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    done = []
    matrices, vmapped = dense_jacobians(denoiser, ys, 0.3, memory_budget=2e6, on_products=done.append)
    assert vmapped and matrices.shape == (3, 64, 64) and sum(done) == 3 * 64 and len(done) > 1  # in chunks
    for y, matrix in zip(ys, matrices):
        torch.testing.assert_close(matrix, jacobian_matrix(denoiser, y[None], 0.3), rtol=1e-5, atol=1e-6)


def test_a_jacobian_over_many_images_batches_them_and_stores_what_one_by_one_gives(tmp_path, monkeypatch):
    from biasprobe import autodiff
    from biasprobe.analyses import jacobian as module

    denoiser = bp.load(tiny_checkpoint(tmp_path / "m.pt", "dit", seed=4))
    images = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(5))
    batches = []
    real = autodiff.dense_jacobians
    monkeypatch.setattr(module, "dense_jacobians", lambda d, ys, *a, **k: batches.append(len(ys)) or real(d, ys, *a, **k))
    together = jacobian(denoiser, images, sigmas=[0.1, 0.5], method="dense")
    monkeypatch.setattr(module, "images_per_batch", lambda *a, **k: 1)
    alone = jacobian(denoiser, images, sigmas=[0.1, 0.5], method="dense")
    assert batches == [5, 5] + [1] * 10  # one batch per σ, then one image at a time
    for name in ("noisy", "denoised", "spectrum", "singular_spectrum", "effective_dimension", "asymmetry"):
        np.testing.assert_allclose(together[name].values, alone[name].values, rtol=1e-5, atol=1e-6, err_msg=name)
    top = (together.eigenvector.isel(rank=slice(0, 4)) * alone.eigenvector.isel(rank=slice(0, 4))).sum(
        ("channel", "y", "x"))
    np.testing.assert_allclose(np.abs(top.values), 1, atol=1e-4)
