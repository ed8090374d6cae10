"""GAHB metrics on vectors with known answers, and the verdict on the six calibration denoisers."""

import numpy as np
import pytest
import torch
import xarray as xr

import biasprobe as bp
from biasprobe.analyses.harmonic import (
    CATEGORIES,
    denoiser_order,
    frequency_centroid,
    gahb_summary,
    participation_ratio,
    roughness,
    support_energy,
)
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.span import span_basis, span_energy
from biasprobe.analyses.reference import GaussianImageModel
from biasprobe.analyses.support import grid_laplacian, grid_roughness, support_mask
from biasprobe.errors import InputError
from tests import gahb_references as references


def vectors(*fields: np.ndarray) -> xr.DataArray:
    """Unit vectors (rank, channel, y, x) from (H, W) fields."""
    stacked = np.stack([f / np.linalg.norm(f) for f in fields])[:, None]
    return xr.DataArray(stacked, dims=("rank", "channel", "y", "x"))


def test_metrics_of_known_vectors():
    n = 16
    x = np.arange(n)
    delta = np.zeros((n, n))
    delta[3, 5] = 1
    wave = np.cos(2 * np.pi * 3 * x / n)[None, :] * np.ones((n, 1))  # f = (0, 3/16)
    checker = np.cos(2 * np.pi * 3 * x / n)[:, None] * np.cos(2 * np.pi * 3 * x / n)[None, :]
    flat = np.ones((n, n))
    v = vectors(delta, wave, checker, flat)
    np.testing.assert_allclose(participation_ratio(v).values, [1 / n**2, 2 / 3, 4 / 9, 1])
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    np.testing.assert_allclose(frequency_centroid(v).values, [np.hypot(fy, fx).mean(), 3 / n, np.hypot(3 / n, 3 / n), 0])
    # on a left-half support: the flat vector has half its energy there; a pixel inside is all in it
    half = xr.DataArray(np.arange(n)[None, :].repeat(n, 0) < n // 2, dims=("y", "x"))
    np.testing.assert_allclose(support_energy(v, half).values[[0, 3]], [1, 0.5])
    np.testing.assert_allclose(participation_ratio(v, half).values[[0, 3]], [1 / (n * n / 2), 1])
    rough = roughness(v, half).values
    assert rough[3] == 0 and rough[0] == 4  # constant: 0; a pixel with four neighbours in Ω: its degree


def test_grid_roughness_is_the_laplacian_quadratic_form():
    rng = np.random.default_rng(0)
    mask = support_mask(np.pad(np.ones((1, 5, 6)), ((0, 0), (2, 3), (1, 2))), dilation=0)
    field = rng.standard_normal(mask.shape)
    inside = field[mask]
    expected = inside @ grid_laplacian(mask) @ inside / (inside @ inside)
    np.testing.assert_allclose(grid_roughness(field[None], mask), expected)


def test_support_masks():
    image = np.zeros((1, 16, 16))
    image[0, 5:9, 6:10] = 0.8
    assert support_mask(image).sum() == 6 * 6 - 4  # the 4×4 square dilated by the 3×3 cross
    assert support_mask(image, "object", dilation=0).sum() == 16
    edges = support_mask(image, "edges", dilation=0)
    assert edges.any() and not edges[7, 7:9].any() and edges[5, 7]  # the square's rim, not its interior
    assert support_mask(image, "frame").all()
    with pytest.raises(InputError, match="support must be one of"):
        support_mask(image, "blob")


def test_span_energy():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((3, 20))
    inside = images.T @ rng.standard_normal(3)
    basis = span_basis(images)
    assert basis.shape == (20, 3)
    np.testing.assert_allclose(span_energy(np.stack([inside, images[0]]), basis), 1)
    outside = rng.standard_normal(20)
    outside -= basis @ (basis.T @ outside)
    np.testing.assert_allclose(span_energy(outside, basis), 0, atol=1e-12)


@pytest.fixture(scope="module")
def calibration():
    return {case.name: (case, gahb_summary(references.run(case))) for case in references.cases()}


@pytest.mark.parametrize("name", [case.name for case in references.cases()])
def test_calibration_references_get_their_known_answer(calibration, name):
    case, summary = calibration[name]
    assert (summary.verdict == case.expected).all(), summary.category.values
    assert (summary.category == case.expected).all(), summary.category.values


def test_calibration_separates_the_metrics(calibration):
    """The scores behind the verdicts, beyond the thresholds' margins."""
    wiener = calibration["Wiener filter of a stationary Gaussian"][1]
    laplace = calibration["Laplacian eigenfunctions of Ω"][1]
    pixel = calibration["pixel-wise shrinkage"][1]
    for summary in (wiener, laplace):
        assert (summary.harmonicity > 0.85).all()
    assert (np.abs(wiener.confinement_excess) < 0.1).all() and (laplace.confinement_excess > 0.95).all()
    assert (pixel.participation < 0.02).all()
    memorizer = calibration["projection onto the training span + shrinkage"][1]
    assert (memorizer.memorization_score > 0.9).all() and (np.abs(wiener.memorization_score) < 0.2).all()
    collapsed = calibration["posterior mean at training images"][1]
    assert (collapsed.count_above_half == 0).all() and (wiener.count_above_half > 0).all()
    # a generalizing (Wiener) denoiser's tr J falls with σ
    assert (wiener.dimension_trend < -0.1).all()


def test_dimension_trend_separates_memorizers_from_the_rest(calibration):
    """β = d log tr J / d log σ: flat for span projections (rank ≤ N − 1 ≪ d), falling for every
    denoiser built without a training set, with a margin of at least 0.08 on both sides of the threshold."""
    from biasprobe.analyses.harmonic import TREND_THRESHOLD

    flat = [references.UNSEEN_SPAN, references.UNSEEN_SMALL_SPAN, "projection onto the training span + shrinkage"]
    falling = ["Wiener filter of a stationary Gaussian", "pixel-wise shrinkage", "Laplacian eigenfunctions of Ω",
               "random orthonormal eigenvectors"]
    for name in flat:
        assert (calibration[name][1].dimension_trend > TREND_THRESHOLD + 0.08).all(), name
    for name in falling:
        assert (calibration[name][1].dimension_trend < TREND_THRESHOLD - 0.08).all(), name


def test_memorizer_without_its_training_set_is_caught_by_its_flat_trend(calibration):
    """No training images, so no span score: the verdict rests on β and says so."""
    for name in (references.UNSEEN_SPAN, references.UNSEEN_SMALL_SPAN):
        summary = calibration[name][1]
        assert "memorization_score" not in summary
        assert all(reason.startswith("tr J flat in σ: β = ") for reason in summary.reason.values.ravel())
    known = calibration["projection onto the training span + shrinkage"][1]
    assert all("training-span score" in r and "tr J flat" in r for r in known.reason.values.ravel())
    assert (calibration["posterior mean at training images"][1].reason == "no λ > 0.5").all()


def test_trend_needs_three_noise_levels():
    """With two σ the slope is reported but does not judge: the memorizer without its training set is then
    read by its eigenvectors alone (not memorizing)."""
    case = next(case for case in references.cases() if case.name == references.UNSEEN_SPAN)
    summary = gahb_summary(references.run(references.Case(case.name, case.images, (0.05, 0.2), case.support,
                                                          case.expected, training_known=False)))
    assert np.isfinite(summary.dimension_trend).all() and summary.attrs["trend_min_sigmas"] == 3
    assert not (summary.category == CATEGORIES[1]).any()


def test_dimension_trend_is_stored_and_follows_a_power_law():
    """The jacobian store keeps β per image; tr J = c·σ^β gives back β exactly."""
    from biasprobe.analyses.harmonic import dimension_trend

    sigma = np.array([0.05, 0.1, 0.2])
    trace = xr.DataArray(np.array([7 * sigma**-0.5, 3 * sigma**0.0]), dims=("image", "sigma"),
                         coords={"image": [0, 1], "sigma": sigma})
    np.testing.assert_allclose(dimension_trend(trace).values, [-0.5, 0.0], atol=1e-12)
    images = references.held_out()[:1]
    stored = jacobian(GaussianImageModel(references.SHAPE).denoiser(), images,
                      sigmas=[0.05, 0.1, 0.2])
    np.testing.assert_allclose(stored.dimension_trend.values, dimension_trend(stored.effective_dimension).values)


def test_degenerate_spectrum_gets_no_verdict():
    """D(y) = y: J = I, every basis is an eigenbasis, so neither harmonic nor not."""
    images = references.held_out()[:2]
    identity = bp.Denoiser.wrap(lambda y, sigma: y.clone(), references.SHAPE)
    summary = gahb_summary(jacobian(identity, images, sigmas=[0.1], top_k=16, method="randomized"))
    np.testing.assert_allclose(summary.spectral_spread.values, 0, atol=1e-6)
    assert summary.verdict.item() == "undetermined (degenerate spectrum)"
    assert int(summary.category_count.sel(label=CATEGORIES[2]).sum()) == 2


def test_raw_output_maps_back_or_refuses(tmp_path):
    """J = I − σ_n J_raw for an ε-prediction network: the raw store, mapped, gives the denoiser's pairs."""
    from tests.conftest import tiny_checkpoint

    denoiser = bp.load(tiny_checkpoint(tmp_path / "dit.pt", "dit", image_size=8))
    image = torch.rand(1, *denoiser.image_shape, generator=torch.Generator().manual_seed(0))
    denoised = jacobian(denoiser, image, sigmas=[0.2])
    raw = jacobian(denoiser, image, sigmas=[0.2], output="raw")
    mapped = denoiser_order(raw)
    np.testing.assert_allclose(mapped.spectrum.values, denoised.spectrum.values, atol=1e-4)
    np.testing.assert_allclose(mapped.effective_dimension.values, denoised.effective_dimension.values, atol=1e-3)
    assert (gahb_summary(raw).verdict.values == gahb_summary(denoised).verdict.values).all()
    top = jacobian(denoiser, image, sigmas=[0.2], output="raw", top_k=8, method="randomized")
    with pytest.raises(InputError, match="bottom ones"):
        gahb_summary(top)


def test_verdict_is_the_most_frequent_category_or_a_split():
    from biasprobe.analyses.harmonic import most_frequent

    counts = np.zeros(len(CATEGORIES), dtype=int)
    counts[[3, 6]] = [2, 1]
    assert most_frequent(counts) == CATEGORIES[3]
    counts[6] = 2
    assert most_frequent(counts) == f"split: {CATEGORIES[3]} / {CATEGORIES[6]}"


def eigen_store(vectors: np.ndarray, values: np.ndarray, image: torch.Tensor) -> xr.Dataset:
    """A jacobian Dataset of one image and σ whose symmetric J has these orthonormal eigenvectors (columns)."""
    shape = tuple(image.shape)
    return xr.Dataset({
        "clean": (("image", "channel", "y", "x"), image[None].numpy()),
        "denoised": (("image", "sigma", "channel", "y", "x"), image[None, None].numpy()),
        "eigenvalue": (("image", "sigma", "rank"), values[None, None]),
        "eigenvector": (("image", "sigma", "rank", "channel", "y", "x"), vectors.T.reshape(1, 1, -1, *shape)),
    }, coords={"image": [0], "sigma": [0.1]})


def test_span_fraction_per_rank_in_the_denoisers_order():
    """f_T(j) = ‖P_T e_j‖²: 1 for the top N − 1 eigenvectors of a projection onto the affine span of the N
    training images, 0 beyond, chance-like for random eigenvectors; centring drops the mean image's own part."""
    from biasprobe.analyses.span import jacobian_memorization

    train, held_out = references.training(), references.held_out()
    probe, d = held_out[0], train[0].numel()
    flat = train.flatten(1).double().numpy()
    principal = np.linalg.svd((flat - flat.mean(0)).T, full_matrices=False)[0][:, :9]
    rest = np.linalg.svd(np.eye(d) - principal @ principal.T)[0][:, : d - 9]
    memorizer = eigen_store(np.hstack([principal, rest]), np.r_[np.linspace(0.9, 0.5, 9), np.zeros(d - 9)], probe)
    found = jacobian_memorization(memorizer, train, held_out, centred=True)
    fraction = found.train_span_fraction.isel(image=0, sigma=0)
    assert found.sizes["denoiser_rank"] == d and (fraction[:9] > 1 - 1e-9).all() and (fraction[9:] < 1e-9).all()
    assert float(found.train_span_chance.squeeze()) == pytest.approx(9 / d) and found.attrs["chance"] == 9 / d
    assert float(found.train_span_energy.sel(top=10).squeeze()) == pytest.approx(float(fraction[:10].mean()))
    assert (found.held_out_span_fraction.isel(image=0, sigma=0)[:9] < 0.9).all()  # the control's span is another

    random = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))[0]
    chance = jacobian_memorization(eigen_store(random, np.linspace(1, 0, d), probe), train, held_out, centred=True)
    assert float(chance.train_span_energy.sel(top=20).squeeze()) < 3 * 9 / d

    mean = flat.mean(0) / np.linalg.norm(flat.mean(0))
    along_mean = eigen_store(np.linalg.qr(np.column_stack([mean, random[:, 1:]]))[0], np.linspace(1, 0, d), probe)
    top = lambda centred: float(jacobian_memorization(along_mean, train, held_out, centred=centred)
                                .train_span_fraction.isel(image=0, sigma=0, denoiser_rank=0))
    assert top(False) == pytest.approx(1, abs=1e-9) and top(True) < 0.9  # 0.85: x̄ is mostly in the differences' span


def test_raw_stores_are_mapped_to_the_denoisers_order(tmp_path):
    """A raw-output store's span fractions come in the denoiser's order: the numbers of its denoised twin."""
    from biasprobe.analyses.span import jacobian_memorization
    from tests.conftest import tiny_checkpoint

    denoiser = bp.load(tiny_checkpoint(tmp_path / "dit.pt", "dit", image_size=8))
    generator = torch.Generator().manual_seed(0)
    image, train, held_out = (torch.rand(n, *denoiser.image_shape, generator=generator) for n in (1, 4, 12))
    raw, denoised = (jacobian(denoiser, image, sigmas=[0.2], output=output) for output in ("raw", "denoised"))
    a, b = (jacobian_memorization(ds, train, held_out, centred=True) for ds in (raw, denoised))
    np.testing.assert_allclose(a.denoiser_eigenvalue, b.denoiser_eigenvalue, atol=1e-4)
    np.testing.assert_allclose(a.train_span_fraction, b.train_span_fraction, atol=1e-3)
    assert a.attrs["chance"] == 3 / 64 and 0 < float(a.train_span_energy.sel(top=5).squeeze()) < 1


def test_the_ideal_memorizer_is_in_its_training_span_where_its_weights_spread():
    """Known answer: the exact posterior mean of N images has J = Σ wᵢ (xᵢ − D)(xᵢ − D)ᵀ/σ², so where the
    weights spread its top N − 1 eigenvectors lie in span{xᵢ − x̄} (fraction 1) and a held-out span holds
    them no better than chance; where they are one-hot (small σ) J = 0 and there is nothing to find."""
    from biasprobe.analyses.base import noise_seed
    from biasprobe.analyses.ideal import ideal_memorizer_span
    from biasprobe.analyses.reference import posterior_weights
    from biasprobe.noise import noisy

    generator = torch.Generator().manual_seed(0)
    train, images = torch.rand(5, 1, 8, 8, generator=generator), torch.rand(40, 1, 8, 8, generator=generator)
    found = ideal_memorizer_span(train, images[:1], images[1:], [0.01, 3.0], weight_images=images[:8], centred=True)
    chance = 4 / 64
    spread = found.sel(sigma=3.0).isel(image=0)
    assert (spread.train_span_fraction[:4] > 1 - 1e-6).all() and (spread.denoiser_eigenvalue[:4] > 1e-4).all()
    assert float(spread.held_out_span_fraction[:4].mean()) < 3 * chance
    assert float(spread.train_span_chance) == pytest.approx(chance)
    one_hot = found.sel(sigma=0.01)
    assert float(one_hot.mean_max_posterior_weight) == pytest.approx(1) and float(abs(one_hot.denoiser_eigenvalue).max()) < 1e-9
    assert float(found.mean_max_posterior_weight.sel(sigma=3.0)) < 0.9
    y = noisy(images[2:3].double(), 3.0, noise_seed(0, 2, 0))  # the weights at the noise a one-σ run draws
    assert float(found.max_posterior_weight.sel(sigma=3.0, weight_image=2)) == pytest.approx(
        float(posterior_weights(y, train.double(), 3.0).max()))


def test_a_few_overshoot_eigenvalues_above_one_do_not_decide_the_verdict():
    """Science v3's selection: eigenvalues above 1 (a shrinking denoiser's overshoot directions, isolated pixels on
    the zoo's DDPM UNet) are counted, never judged, and cannot shrink K: prepending three single-pixel
    eigenvectors with λ = 1.2, 1.15, 1.1 to the Laplacian-eigenfunction reference leaves its verdict and K alone."""
    case = next(c for c in references.cases() if c.name == "Laplacian eigenfunctions of Ω")
    store = references.run(case)
    before = gahb_summary(store)
    count = 3
    pixels = np.zeros((store.sizes["image"], store.sizes["sigma"], count, *store.eigenvector.shape[-3:]))
    for k in range(count):
        pixels[:, :, k, 0, 2 + 3 * k, 2 + 3 * k] = 1.0  # single pixels near a corner
    values = np.broadcast_to([1.2, 1.15, 1.1], (store.sizes["image"], store.sizes["sigma"], count))
    altered = store.copy()
    altered["eigenvalue"] = (store.eigenvalue.dims,
                             np.concatenate([values, store.eigenvalue.values[:, :, :-count]], axis=2))
    altered["eigenvector"] = (store.eigenvector.dims,
                              np.concatenate([pixels, store.eigenvector.values[:, :, :-count]], axis=2))
    after = gahb_summary(altered)
    assert (after.count_above_one == count).all() and (before.count_above_one == 0).all()
    assert (after.category == "geometry-adaptive harmonic").all(), after.reason.values
    np.testing.assert_array_equal(after.top.values, before.top.values)
    np.testing.assert_allclose(after.harmonicity.values, before.harmonicity.values, atol=1e-12)


def categories(rows: list[list[str]]) -> xr.Dataset:
    """A summary-like Dataset with these categories per (image, σ)."""
    return xr.Dataset({"category": (("image", "sigma"), np.array(rows, dtype=object))},
                      coords={"image": np.arange(len(rows)), "sigma": np.arange(len(rows[0]))})


def test_model_call_needs_the_bootstrap_interval_off_one_half():
    from biasprobe.analyses.harmonic import image_categories, model_call

    harmonic, other = CATEGORIES[3], CATEGORIES[6]
    assert model_call([categories([[harmonic] * 3] * 8)])[0] == "geometry-adaptive harmonic"
    assert model_call([categories([[other] * 3] * 8)])[0] == "not geometry-adaptive harmonic"
    call, share, (low, high) = model_call([categories([[harmonic] * 3, [other] * 3] * 4)])
    assert call == "undecided" and share == 0.5 and low < 0.5 < high
    # six of eight images: the interval still reaches one half
    assert model_call([categories([[harmonic] * 3] * 6 + [[other] * 3] * 2)])[0] == "undecided"
    # an image's category is its most frequent over σ and draws: two draws, 2 of 3 σ harmonic in each
    first, second = categories([[harmonic, harmonic, other]] * 8), categories([[other, harmonic, harmonic]] * 8)
    assert (image_categories([first, second]) == harmonic).all()
    assert model_call([first, second], seed=1)[0] == "geometry-adaptive harmonic"


def test_a_tied_image_is_not_counted_as_harmonic():
    """Three σ × two draws = six votes: an image split 3-3 between harmonic and not harmonic is a tie, not
    harmonic (until 2026-12-08 ties went to the first category, harmonic); eight such images are not harmonic."""
    from biasprobe.analyses.harmonic import image_categories, model_call

    harmonic, other = CATEGORIES[3], CATEGORIES[6]
    first, second = categories([[harmonic, harmonic, other]] * 8), categories([[other, other, harmonic]] * 8)
    tied = image_categories([first, second])
    assert (tied == f"split: {harmonic} / {other}").all()
    assert model_call([first, second])[0] == "not geometry-adaptive harmonic"
