"""The v3 Jacobian and memorizer claims on synthetic surveys made to hold them, to fail, and to be undecidable."""

from pathlib import Path

import numpy as np
import xarray as xr

from biasprobe.reports import rules
from biasprobe.reports.survey_claims import (
    SurveyEvidence,
    equal_steps,
    memorizers_in_span,
    small_n_lambda_ratio,
    unet_harmonic_dit_not,
)
from biasprobe.reports.zoo import ZooModel

SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def model(name, family, n, steps=20000, windows=(), subset="s1"):
    return ZooModel(name=name, path=Path(name), family=family, windows=windows, data="fashion-mnist", n_train=n,
                    subset=subset, seed=0, sha256="0", steps_done=steps)


def survey(category="geometry-adaptive harmonic", largest=1.0, span=0.0, images=8, train_images=8, sigmas=SIGMAS,
           noise=0.0, seed=0):
    """A survey whose every cell has ``category``, λ₀ ≈ ``largest`` and training-span energy ≈ ``span``."""
    rng = np.random.default_rng(seed)
    count = images + train_images
    shape = (2, count, len(sigmas))
    eigenvalues = np.broadcast_to(np.array([1.0, 0.8, 0.5, 0.05] + [0.0] * 12), shape + (16,)).copy()
    return xr.Dataset(
        {"category": (("draw", "image", "sigma"), np.full(shape, category)),
         "count_above_one": (("draw", "image", "sigma"), np.zeros(shape, int)),
         "asymmetry": (("draw", "image", "sigma"), np.full(shape, 0.1)),
         "largest_eigenvalue": (("draw", "image", "sigma"), largest * np.exp(noise * rng.standard_normal(shape))),
         "denoiser_eigenvalue": (("draw", "image", "sigma", "denoiser_rank"), eigenvalues),
         "train_span_fraction": (("draw", "image", "sigma", "denoiser_rank"),
                                 np.clip(span + noise * rng.standard_normal(shape + (16,)), 0, 1)),
         "clean": (("image", "channel", "y", "x"), np.arange(count, dtype=float)[:, None, None, None] * np.ones((1, 1, 2, 2)))},
        coords={"sigma": list(sigmas), "split": ("image", ["test"] * images + ["train"] * train_images)})


ZOO = [model("unet-bf-n30000-s1", "unet-bf", 30000), model("unet-ddpm-n30000", "unet-ddpm", 30000),
       model("dit-n30000", "dit", 30000)]


def test_fig1_held_failed_unresolved_and_not_tested():
    harmonic, flat = survey(), survey("not harmonic")
    surveys = {"unet-bf-n30000-s1": harmonic, "unet-ddpm-n30000": harmonic, "dit-n30000": flat}
    judged = unet_harmonic_dit_not(SurveyEvidence(ZOO, surveys, {}))
    assert judged.outcome == rules.HELD and "20.0k steps" in judged.ours and "harmonic share 1.00" in judged.ours
    assert "2 draws, 1 seed;" in judged.ours  # the claim reads one seed and says so
    assert unet_harmonic_dit_not(SurveyEvidence(ZOO, {**surveys, "dit-n30000": harmonic}, {})).outcome == rules.FAILED
    mixed = survey().assign(category=survey().category.where(survey().image % 2 == 0, "not harmonic"))
    assert unet_harmonic_dit_not(SurveyEvidence(ZOO, {**surveys, "unet-ddpm-n30000": mixed}, {})).outcome \
        == rules.UNRESOLVED  # half the images harmonic: the interval straddles ½
    unequal = [ZOO[0], model("unet-ddpm-n30000", "unet-ddpm", 30000, steps=12622), ZOO[2]]
    judged = unet_harmonic_dit_not(SurveyEvidence(unequal, surveys, {}))
    assert judged.outcome == rules.NOT_TESTED and "unet-ddpm-n30000 12.6k" in judged.ours
    assert unet_harmonic_dit_not(SurveyEvidence(ZOO, {**surveys, "dit-n30000": survey(sigmas=(0.1,))}, {})).outcome \
        == rules.NOT_TESTED


def test_fig3_reads_the_paired_log_ratio_interval():
    zoo = [model("unet-ddpm-n10", "unet-ddpm", 10), model("unet-ddpm-n30000", "unet-ddpm", 30000),
           model("dit-n10", "dit", 10), model("dit-n30000", "dit", 30000)]

    def judge(unet_small, dit_small):
        surveys = {"unet-ddpm-n10": survey(largest=unet_small, noise=0.1, seed=1),
                   "unet-ddpm-n30000": survey(noise=0.1, seed=2),
                   "dit-n10": survey(largest=dit_small, noise=0.1, seed=3), "dit-n30000": survey(noise=0.1, seed=4)}
        return small_n_lambda_ratio(SurveyEvidence(zoo, {}, surveys, memorizer_sigma=2.0))

    assert judge(10.0, 1.2).outcome == rules.HELD
    assert judge(1.2, 10.0).outcome == rules.FAILED
    assert judge(1.5, 1.5).outcome == rules.UNRESOLVED
    assert small_n_lambda_ratio(SurveyEvidence(zoo, {}, {}, memorizer_sigma=None)).outcome == rules.NOT_TESTED
    other = {name: survey() for name in ("unet-ddpm-n10", "unet-ddpm-n30000", "dit-n10")}
    other["dit-n30000"] = survey().assign(clean=survey().clean + 1)  # other test images: nothing to pair
    judged = small_n_lambda_ratio(SurveyEvidence(zoo, {}, other, memorizer_sigma=2.0))
    assert judged.outcome == rules.NOT_TESTED and "same test images" in judged.ours
    alone = [zoo[0], zoo[0], zoo[2], zoo[3]]  # the family's N = 10 model is its largest
    assert small_n_lambda_ratio(SurveyEvidence([zoo[0], *zoo[2:]], {}, other, memorizer_sigma=2.0)).outcome \
        == rules.NOT_TESTED and alone


def test_memorizers_span_rule_and_left_out_models():
    zoo = [model("dit-n10", "dit", 10), model("dit-n30000", "dit", 30000),
           model("unet-bf-n10-s1", "unet-bf", 10), model("unet-bf-n30000-s1", "unet-bf", 30000)]
    low_sigma = dict(sigmas=(0.05, 0.2, 1.0))  # the bias-free UNets: no survey above their training range

    def judge(memorizer_span, contrast_span):
        surveys = {"dit-n10": survey(span=memorizer_span, noise=0.05, seed=1),
                   "dit-n30000": survey(span=contrast_span, noise=0.05, seed=2),
                   "unet-bf-n10-s1": survey(span=0.9, **low_sigma), "unet-bf-n30000-s1": survey(**low_sigma)}
        return memorizers_in_span(SurveyEvidence(zoo, {}, surveys, memorizer_sigma=2.0))

    judged = judge(0.9, 0.1)
    assert judged.outcome == rules.HELD
    assert "without a survey at σ = 2: bias-free UNet N=10" in judged.ours
    assert judge(0.3, 0.1).outcome == rules.FAILED  # not in the span
    assert judge(0.9, 0.9).outcome == rules.UNRESOLVED  # no larger than the generalizing model's
    assert memorizers_in_span(SurveyEvidence(zoo, {}, {}, memorizer_sigma=None)).outcome == rules.NOT_TESTED
    # one memorizer failing decides, even when another cannot be compared (unequal steps)
    unequal = [*zoo[:2], model("unet-ddpm-n10", "unet-ddpm", 10), model("unet-ddpm-n30000", "unet-ddpm", 30000, steps=12622)]
    surveys = {"dit-n10": survey(span=0.09, noise=0.05, seed=1), "dit-n30000": survey(span=0.1, noise=0.05, seed=2),
               "unet-ddpm-n10": survey(span=0.9), "unet-ddpm-n30000": survey(span=0.1)}
    assert memorizers_in_span(SurveyEvidence(unequal, {}, surveys, memorizer_sigma=2.0)).outcome == rules.FAILED
    lonely = [model("dit-n10", "dit", 10)]  # its largest N is 10: no contrast
    judged = memorizers_in_span(SurveyEvidence(lonely, {}, {"dit-n10": survey(span=0.9)}, memorizer_sigma=2.0))
    assert judged.outcome == rules.NOT_TESTED and "no larger-N model to contrast" in judged.ours


def test_equal_steps_names_what_differs():
    assert equal_steps(ZOO) == (20000, "")
    steps, why = equal_steps([ZOO[0], model("x", "dit", 10, steps=None)])
    assert steps is None and "x ?" in why


def test_the_sample_claims_print_their_intervals_over_samples():
    """v3 keeps the sample claims' v2 rules and prints each share with its bootstrap interval over samples."""
    from biasprobe.reports.sample_claims import copies_at_small_n, memorized

    def store(similarities):
        values = np.asarray(similarities, float)
        return xr.Dataset({"nearest_similarity": ("sample", values),
                           "memorized_share": ((), float((values > 0.95).mean()), {"threshold": 0.95}),
                           "sample_image": (("sample", "channel", "y", "x"), np.zeros((len(values), 1, 2, 2)))})

    assert list(memorized(store([0.99, 0.5, 0.96]))) == [1.0, 0.0, 1.0]
    zoo = [model(f"unet-bf-n{n}-{s}", "unet-bf", n, subset=s) for n in (10, 30000) for s in ("s1", "s2")]
    stores = {("memorization", "unet-bf-n10-s1"): store([0.99] * 8), ("memorization", "unet-bf-n10-s2"): store([0.99] * 6 + [0.5] * 2),
              ("memorization", "unet-bf-n30000-s1"): store([0.5] * 8), ("memorization", "unet-bf-n30000-s2"): store([0.5] * 8)}
    judged = copies_at_small_n(zoo, stores)
    assert judged.outcome == rules.HELD
    unequal = [*zoo[:3], model("unet-bf-n30000-s2", "unet-bf", 30000, steps=12000, subset="s2")]
    judged = copies_at_small_n(unequal, stores)
    assert judged.outcome == rules.NOT_TESTED and "unet-bf-n30000-s2 12.0k" in judged.ours
    assert "N = 10 S1 / S2: 1.00 [1.00, 1.00] / 0.75 [" in judged.ours and "N = 30000 S1 / S2: 0.00" in judged.ours


def test_the_memorizers_the_zoo_lacks_are_named():
    zoo = [model("dit-n10", "dit", 10), model("dit-n30000", "dit", 30000)]
    surveys = {"dit-n10": survey(span=0.9, noise=0.05, seed=1), "dit-n30000": survey(span=0.1, noise=0.05, seed=2)}
    judged = memorizers_in_span(SurveyEvidence(zoo, {}, surveys, memorizer_sigma=2.0))
    assert judged.outcome == rules.HELD  # each N = 10 model the zoo has holds
    assert "not in the zoo: DiT local N=10 (s1), DDPM UNet N=10 (s1)" in judged.ours
    assert "bias-free UNet N=10 (s2)" in judged.ours
