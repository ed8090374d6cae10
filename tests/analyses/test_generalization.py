"""Generalization gap, samplers and memorization against cases with known answers."""

import numpy as np
import pytest
import torch

import biasprobe as bp
from biasprobe.analyses.generalization import gap, psnr
from biasprobe.analyses.memorization import centred_unit, memorization, nearest_training, paired_similarity
from biasprobe.training.samplers import sample

from tests.conftest import run_cli, tiny_checkpoint

SHAPE = (1, 8, 8)


def random_images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def nearest_image_oracle(training: torch.Tensor) -> bp.Denoiser:
    """Returns the training image nearest to y: a perfect memorizer."""
    def fn(y, sigma):
        distance = ((y[:, None] - training[None]) ** 2).flatten(2).sum(-1)
        return training[distance.argmin(1)]
    return bp.Denoiser.wrap(fn, SHAPE)


def shrinkage(mean: float = 0.5, variance: float = 1 / 12) -> bp.Denoiser:
    """The MMSE denoiser of i.i.d. Gaussian pixels: fitted on neither split, so it cannot favour one."""
    return bp.Denoiser.wrap(lambda y, s: mean + (y - mean) * variance / (variance + s.view(-1, 1, 1, 1) ** 2), SHAPE)


def test_psnr_formula():
    clean = torch.zeros(1, *SHAPE)
    assert float(psnr(clean + 0.1, clean)) == pytest.approx(20.0)
    assert float(psnr(clean + 2.0, clean)) == pytest.approx(0.0)  # clipped to 1: error 1


def test_memorizer_has_a_large_gap_and_a_blind_fit_has_none():
    train, test = random_images(100, 0), random_images(100, 1)
    memorizer = gap(nearest_image_oracle(train), train, test, sigmas=[0.05, 0.1, 0.2])
    assert np.all(memorizer.gap.values > 30)
    fitted_on_neither = gap(shrinkage(), train, test, sigmas=[0.05, 0.1, 0.2, 0.4])
    assert np.all(np.abs(fitted_on_neither.gap.values) < 3 * fitted_on_neither.gap_sem.values)
    assert abs(float(fitted_on_neither.average_gap)) < 0.5
    # per-image values are stored, and the summary is their mean
    np.testing.assert_allclose(fitted_on_neither.mean_psnr.values, fitted_on_neither.psnr.mean("image").values)


def test_average_gap_standard_error_covers_a_fit_on_neither_split():
    # 40 draws of two splits from one distribution: the average gap's s.e. must describe its scatter
    averages, errors = [], []
    for draw in range(40):
        result = gap(shrinkage(), random_images(30, 2 * draw), random_images(30, 2 * draw + 1),
                     sigmas=[0.05, 0.2, 0.5], seed=draw)
        averages.append(float(result.average_gap))
        errors.append(float(result.average_gap_sem))
    assert np.std(averages, ddof=1) == pytest.approx(np.mean(errors), rel=0.35)


def test_untrained_network_has_no_gap(tmp_path):
    d = bp.load(tiny_checkpoint(tmp_path / "dit.pt", "dit"))
    result = gap(d, random_images(60, 0), random_images(60, 1), timesteps=[50, 200])
    assert np.all(np.abs(result.gap.values) < 3 * result.gap_sem.values)
    np.testing.assert_allclose(result.t.values, [50, 200], atol=1e-6)


def test_samplers_are_seeded_and_batch_independent(tmp_path):
    d = bp.load(tiny_checkpoint(tmp_path / "dit.pt", "dit"))
    for method in ("ddim", "ddpm"):
        a = sample(d, 3, method=method, steps=5, seed=4, batch_size=3)
        b = sample(d, 3, method=method, steps=5, seed=4, batch_size=2)
        torch.testing.assert_close(a, b)
        assert not torch.allclose(a, sample(d, 3, method=method, steps=5, seed=5))
    blind = bp.load(tiny_checkpoint(tmp_path / "bf.pt", "unet-bf"))
    first = sample(blind, 2, seed=1, max_iterations=20)
    torch.testing.assert_close(first, sample(blind, 2, seed=1, max_iterations=20, batch_size=1))
    with pytest.raises(bp.InputError, match="blind"):
        sample(blind, 2, method="ddim")


def test_ddim_with_the_exact_denoiser_of_a_point_mass_lands_on_it():
    target = torch.full(SHAPE, 0.3)
    point = bp.Denoiser.wrap(lambda y, s: target.expand_as(y), SHAPE)
    point.sigma_to_t = lambda s: 0.0  # pretend to have a schedule
    from biasprobe.schedules import Schedule
    point.schedule = Schedule()
    point.t_to_sigma = lambda t: float(Schedule().sigma(t)) / 2
    torch.testing.assert_close(sample(point, 2, method="ddim", steps=10), target.expand(2, *SHAPE))


def test_nearest_training_and_paired_similarity():
    training = random_images(20, 0)
    copies = training[[3, 7]] * 0.5 + 0.2  # brightness and contrast changes keep the mean-removed cosine at 1
    found = nearest_training(torch.cat([copies, random_images(2, 9)]), training)
    assert list(found.nearest_index.values[:2]) == [3, 7]
    np.testing.assert_allclose(found.nearest_similarity.values[:2], 1.0, atol=1e-9)
    assert float(found.memorized_share) == 0.5
    np.testing.assert_allclose(paired_similarity(copies, training[[3, 7]]), 1.0, atol=1e-9)
    assert np.allclose(centred_unit(training).norm(dim=1).numpy(), 1.0)


def test_memorizer_samples_copy_training_images():
    training = random_images(10, 0)
    result = memorization(nearest_image_oracle(training), 6, training, method="ascent", max_iterations=5, seed=2)
    assert float(result.memorized_share) == 1.0
    assert result.nearest_image.shape == (6, *SHAPE)


def test_gap_cli_reads_the_training_data_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default stores land in the current folder
    images = (np.random.default_rng(0).random((55, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images[:30], test=images[30:])
    ckpt = tmp_path / "m.pt"
    result = run_cli("train", "unet-bf", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}",
                     "--n-train", "10", "--steps", "3", "--batch", "4", "--image-size", "8", "-o", ckpt)
    assert result.returncode == 0, result.stderr
    result = run_cli("gap", ckpt, "--k", "5", "--sigma", "0.1,0.2", "--figure", tmp_path / "gap.png")
    assert result.returncode == 0, result.stderr
    stored = bp.open(tmp_path / "m.gap.zarr")
    assert stored.attrs["n_train"] == 10 and list(stored.images_per_split.values) == [5, 5]
    # K above N: the N images the model saw, never images of the nested subset it did not see, against K test
    # images (the paper's K per split where N allows: a small N does not shrink the test split)
    result = run_cli("gap", ckpt, "--per-split", "20", "--sigma", "0.1", "--out", tmp_path / "k20.zarr")
    assert result.returncode == 0, result.stderr
    assert list(bp.open(tmp_path / "k20.zarr").images_per_split.values) == [10, 20]
    assert "10 training and 20 test images" in " ".join(result.stdout.split())
    assert (tmp_path / "gap.png").stat().st_size > 0
    result = run_cli("sample", ckpt, "-n", "2", "--png", tmp_path / "s.png")
    assert result.returncode == 0, result.stderr
    assert "nearest_similarity" in bp.open(tmp_path / "m.samples.zarr")
