"""The GAHB survey (science v3) on denoisers whose answers are known (tests/gahb_references.py)."""

import numpy as np
import pytest
import torch

from biasprobe.analyses import reference
from biasprobe.analyses.harmonic import gahb_summary, model_call
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.support import support_mask
from biasprobe.analyses.survey import draw_seed, draw_summaries, gahb_survey
from biasprobe.errors import InputError
from tests.gahb_references import SHAPE, held_out, training


def test_a_wiener_filter_is_called_not_adaptive_over_images_sigmas_and_draws():
    survey = gahb_survey(reference.GaussianImageModel(SHAPE).denoiser(), held_out()[:3], [0.05, 0.2], draws=2)
    assert dict(survey.category.sizes) == {"draw": 2, "image": 3, "sigma": 2}
    assert set(survey.category.values.ravel()) == {"fixed harmonic"}
    assert list(survey.split.values) == ["test"] * 3 and survey.attrs["output"] == "denoised"
    assert model_call(draw_summaries(survey)) == ("not geometry-adaptive harmonic", 0.0, (0.0, 0.0))
    # J of a Wiener filter does not depend on y: both draws give one spectrum, λ₀ = P₀/(P₀ + σ²) < 1
    np.testing.assert_allclose(survey.spectrum.sel(draw=0), survey.spectrum.sel(draw=1), atol=1e-5)
    assert float(survey.largest_eigenvalue.max()) < 1


def test_laplacian_eigenfunctions_of_the_support_are_called_geometry_adaptive_harmonic():
    image = held_out()[1]
    denoiser = reference.support_harmonic_denoiser(support_mask(image.numpy()))
    survey = gahb_survey(denoiser, image[None].repeat(3, 1, 1, 1), [0.05, 0.1], draws=2)
    call, share, interval = model_call(draw_summaries(survey))
    assert (call, share, interval) == ("geometry-adaptive harmonic", 1.0, (1.0, 1.0))
    assert survey.eigenvector.dims == ("sigma", "rank", "channel", "y", "x")


def test_each_draw_is_the_jacobian_store_of_its_seed_and_draws_differ():
    """A survey's draw r is jacobian() with the noise seed draw_seed(seed, r), summarised by gahb_summary."""
    train, images = training(), held_out()[:2]
    denoiser = reference.posterior_mean_denoiser(train)
    survey = gahb_survey(denoiser, images, [1.0], draws=2, seed=3)
    for draw in (0, 1):
        store = jacobian(denoiser, images, [1.0], output="denoised", method="dense", seed=draw_seed(3, draw))
        summary = gahb_summary(store)
        assert list(survey.category.sel(draw=draw).values.ravel()) == list(summary.category.values.ravel())
        np.testing.assert_allclose(survey.spectrum.sel(draw=draw), store.spectrum, rtol=1e-6, atol=1e-9)
    assert not np.allclose(survey.spectrum.sel(draw=0), survey.spectrum.sel(draw=1))  # independent noise


def test_training_images_are_analysed_and_the_span_measured_against_the_control():
    train = training()
    survey = gahb_survey(reference.posterior_mean_denoiser(train), held_out()[:2], [1.0], draws=1,
                         training_images=train, training_analysed=2, held_out_images=held_out()[10:])
    assert list(survey.split.values) == ["test", "test", "train", "train"]
    tested = survey.isel(image=[0, 1], draw=0, sigma=0)
    # the exact posterior mean memorizes: its top eigenvector lies in the training span, not the held-out one
    assert (tested.train_span_fraction.isel(denoiser_rank=0) > 0.9).all()
    assert (tested.train_span_fraction.isel(denoiser_rank=0) > tested.held_out_span_fraction.isel(denoiser_rank=0)).all()
    # at a test image the posterior weights may be one-hot (J ≈ 0: collapsed); where not, it memorizes
    assert set(tested.category.values) <= {"memorizing", "collapsed"} and "memorizing" in tested.category.values
    assert len(draw_summaries(survey, split="train")) == 1
    with pytest.raises(InputError, match="no σ = 0.5"):
        draw_summaries(survey, sigmas=[0.5])


def test_bad_requests_are_the_librarys_errors():
    denoiser = reference.GaussianImageModel(SHAPE).denoiser()
    with pytest.raises(InputError, match="training_analysed needs training_images"):
        gahb_survey(denoiser, held_out()[:1], [0.1], training_analysed=1)
    with pytest.raises(InputError, match="draws"):
        gahb_survey(denoiser, held_out()[:1], [0.1], draws=0)
    with pytest.raises(InputError, match="control"):
        gahb_survey(denoiser, held_out()[:1], [0.1], held_out_images=held_out()[:3])
    big = reference.pixelwise_shrinkage((1, 72, 72))
    with pytest.raises(InputError, match="densely"):
        gahb_survey(big, torch.rand(1, 1, 72, 72), [0.1])


def test_the_survey_has_its_figure_and_numbers(tmp_path):
    """Registered once: `biasprobe report` draws its figure and prints its numbers from the store alone."""
    from biasprobe.analyses.base import registry, resolve
    from biasprobe.figures.survey import survey_figure

    train = training()
    survey = gahb_survey(reference.posterior_mean_denoiser(train), held_out()[:2], [0.2, 1.0], draws=2,
                         training_images=train, training_analysed=1, held_out_images=held_out()[10:])
    entry = registry()["gahb-survey"]
    numbers = dict(resolve(entry.numbers)({"m": survey}))
    assert numbers["m: GAHB call (2 test images × 2 draws)"].startswith("not geometry-adaptive harmonic (harmonic share 0.00")
    assert "asymmetry" in numbers["m, σ = 0.2"]
    figure = survey_figure(survey)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[:2] == ["GAHB category at test images (2 × 2 draws)", "GAHB category at train images (1 × 2 draws)"]
    bars = [patch.get_height() for patch in figure.axes[0].patches]
    assert np.isclose(sum(bars), 2)  # per σ the shares of the categories add up to 1
