"""The claims page's rules on hand-made stores: each rule can hold, fail, or be untestable."""

import numpy as np
import xarray as xr

from biasprobe.reports.claims import (
    Evidence,
    check_claims,
    gap_falls_with_n,
    gap_peaks_at_small_t,
    local_attention_cuts_mid_gap,
    memorizers_in_training_span,
    unet_gap_exceeds_dit,
)
from biasprobe.reports.zoo import MID_N, VARIANTS, ZooModel


def model(name, family, n, windows=(), seed=0):
    return ZooModel(name, None, family, tuple(windows), "fashion-mnist", n, "s1", seed, "0" * 64)


def gap_store(average, peak_t=20):
    t = np.array([0, 20, 100, 400, 980])
    gap = np.where(t == peak_t, 2 * average, 0.0)
    gap = gap * average * len(t) / gap.sum() if gap.sum() else gap
    return xr.Dataset({"gap": ("sigma", gap), "average_gap": gap.mean()}, coords={"t": ("sigma", t)})


def evidence(gaps: dict[tuple[str, int, str, int], float], **peaks) -> Evidence:
    models, stores = [], {}
    for (family, n, variant, seed), value in gaps.items():
        name = f"{family}-{variant}-n{n}-seed{seed}"
        models.append(model(name, family, n, VARIANTS[variant], seed))
        stores["gap", name] = gap_store(value, peaks.get("peak_t", 20))
    return Evidence(models, stores)


def test_gap_ladder_rule_holds_fails_and_needs_three_sizes():
    ladder = {("dit", n, "global", 0): g for n, g in [(10, 5.0), (100, 2.0), (1000, 0.3), (30000, 0.05)]}
    assert gap_falls_with_n("dit")(evidence(ladder)).held is True
    rising = {**ladder, ("dit", 1000, "global", 0): 3.0}
    assert gap_falls_with_n("dit")(evidence(rising)).held is False
    not_gone = {**ladder, ("dit", 30000, "global", 0): 0.5}
    assert gap_falls_with_n("dit")(evidence(not_gone)).held is False
    two = {k: v for k, v in ladder.items() if k[1] in (10, 100)}
    assert gap_falls_with_n("dit")(evidence(two)).held is None


def test_differences_must_exceed_the_seed_spread():
    seeds = lambda family, variant, values: {(family, MID_N, variant, s): v for s, v in enumerate(values)}
    clear = {**seeds("unet-ddpm", "global", [10, 11, 12]), **seeds("dit", "global", [1, 1.2, 0.8])}
    assert unet_gap_exceeds_dit(evidence(clear)).held is True
    noisy = {**seeds("unet-ddpm", "global", [0, 2.5, 1]), **seeds("dit", "global", [1, 1.2, 0.8])}
    assert unet_gap_exceeds_dit(evidence(noisy)).held is False
    cut = {**seeds("dit", "global", [2.0, 2.1, 1.9]), **seeds("dit", "local", [1.0, 1.1, 0.9])}
    claim = local_attention_cuts_mid_gap(evidence(cut))
    assert claim.held is True and "cut 50 %" in claim.ours
    assert local_attention_cuts_mid_gap(evidence(seeds("dit", "global", [2.0]))).held is None


def test_gap_peak_rule_reads_the_diffusion_step():
    gaps = {("dit", 10, "global", 0): 3.0}
    assert gap_peaks_at_small_t(evidence(gaps, peak_t=20)).held is True
    assert gap_peaks_at_small_t(evidence(gaps, peak_t=400)).held is False
    assert gap_peaks_at_small_t(evidence({("dit", 10, "global", 0): 0.5})).held is None  # no gap ≥ 1 dB


def test_an_empty_zoo_tests_nothing():
    claims = check_claims([], {})
    assert claims and all(claim.held is None and claim.outcome == "not tested" for claim in claims)


def test_compared_cells_state_their_training_steps():
    seeds = {("dit", MID_N, "global", s): g for s, g in enumerate([2.0, 2.1, 1.9])}
    seeds |= {("dit", MID_N, "local", s): g for s, g in enumerate([1.0, 1.1, 0.9])}
    found = evidence(seeds)
    steps = {"global": [20900, 19876, 20812], "local": [17573, 18634, 17717]}
    found.models = [ZooModel(**{**vars(m), "steps_done": steps[m.variant][m.seed]}) for m in found.models]
    ours = local_attention_cuts_mid_gap(found).ours
    assert "global 2.00 ± 0.10 (3 seeds) at 19.9k-20.9k steps" in ours
    assert "local 1.00 ± 0.10 (3 seeds) at 17.6k-18.6k steps" in ours
    assert " steps" not in local_attention_cuts_mid_gap(evidence(seeds)).ours  # a manifest without steps


def span_store(top: float, n_train: int, ranks: int = 64, sigma: float = 0.1) -> xr.Dataset:
    """A training-span store whose top 10 eigenvectors have energy ``top`` in the span (0.01 beyond)."""
    fraction = np.where(np.arange(ranks) < 10, top, 0.01)[None, None]
    return xr.Dataset({"train_span_fraction": (("image", "sigma", "denoiser_rank"), fraction),
                       "held_out_span_fraction": (("image", "sigma", "denoiser_rank"), fraction / 4),
                       "train_span_chance": (("image", "sigma"), [[9 / ranks]]),
                       "nearest_train_cosine": (("image", "sigma"), [[0.9]]),
                       "denoiser_eigenvalue": (("image", "sigma", "denoiser_rank"), np.linspace(1, 0, ranks)[None, None])},
                      coords={"sigma": [sigma]}, attrs={"n_train": n_train})


def memorizer_evidence(share: float, top: float, contrast: float | None, families=("unet-ddpm", "dit")) -> Evidence:
    models, stores = [], {}
    for family in families:
        models.append(model(f"{family}-n10", family, 10))
        stores["memorization", f"{family}-n10"] = xr.Dataset({"memorized_share": share})
        stores["training-span", f"{family}-n10"] = span_store(top, 10)
        if contrast is not None:
            models.append(model(f"{family}-n30000", family, 30000))
            stores["training-span", f"{family}-n30000"] = span_store(contrast, 30000)
    return Evidence(models, stores)


def test_memorizer_rule_holds_fails_and_needs_a_larger_n_contrast():
    claim = memorizers_in_training_span(memorizer_evidence(share=0.75, top=0.8, contrast=0.3))
    assert claim.held is True and "DDPM UNet N=10: share 0.75, top 10 in span 0.80 (largest N 0.30" in claim.ours
    assert memorizers_in_training_span(memorizer_evidence(share=0.25, top=0.8, contrast=0.3)).held is False
    assert memorizers_in_training_span(memorizer_evidence(share=0.75, top=0.45, contrast=0.1)).held is False
    close = memorizers_in_training_span(memorizer_evidence(share=0.75, top=0.8, contrast=0.75))
    assert close.held is False and "in span: fails" in close.ours  # not 0.1 above the contrast
    assert memorizers_in_training_span(memorizer_evidence(share=0.75, top=0.8, contrast=None)).held is None
    assert memorizers_in_training_span(Evidence([], {})).held is None


def test_one_failing_memorizer_fails_the_claim():
    found = memorizer_evidence(share=0.75, top=0.8, contrast=0.3)
    found.stores["memorization", "dit-n10"] = xr.Dataset({"memorized_share": 0.0})
    claim = memorizers_in_training_span(found)
    assert claim.held is False and "DiT N=10: share 0.00" in claim.ours and "copies: fails" in claim.ours


def ideal_store(scale: float = 1.0, grid=(0.01, 0.1, 0.3, 1.0, 3.0, 10.0)) -> xr.Dataset:
    """The ideal memorizer of ten random 8×8 images (brightness scaled by ``scale``) over ``grid``."""
    import torch

    from biasprobe.analyses.ideal import ideal_memorizer_span

    generator = torch.Generator().manual_seed(0)
    train, images = torch.rand(10, 1, 8, 8, generator=generator), torch.rand(40, 1, 8, 8, generator=generator)
    store = ideal_memorizer_span(scale * train, scale * images[:1], scale * images[1:], grid,
                                 weight_images=scale * images[:8], centred=True)
    store.attrs["grid"] = list(grid)
    return store


def test_the_memorizer_sigma_is_the_smallest_of_the_grid_where_the_ideal_memorizer_passes():
    """Calibrated on the known answer: at the chosen σ the ideal memorizer's weights have spread and its top
    eigenvectors pass the span rule; at every smaller σ of the grid one of the two fails; a training set whose
    images lie further apart (their weights spread at larger σ) moves it up; no σ, no store: None."""
    from biasprobe.reports.claims import MAX_WEIGHT, SPAN_FRACTION, ideal_in_span, memorizer_sigma, top_mean

    grid = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)
    near, far = ideal_store(), ideal_store(scale=4.0)
    chosen = memorizer_sigma([near], grid)
    weight = lambda store, s: float(store.mean_max_posterior_weight.sel(sigma=s))
    assert chosen is not None and weight(near, chosen) <= MAX_WEIGHT and ideal_in_span(near, chosen)
    assert top_mean(near.sel(sigma=chosen), "train_span_fraction") >= SPAN_FRACTION
    assert all(weight(near, s) > MAX_WEIGHT or not ideal_in_span(near, s) for s in grid if s < chosen)
    assert weight(near, 0.01) == 1 and not ideal_in_span(near, 0.01)  # one-hot weights: J = 0
    both = memorizer_sigma([near, far], grid)
    assert both is not None and both > chosen and both == memorizer_sigma([far], grid)
    assert memorizer_sigma([near], [s for s in grid if s < chosen]) is None and memorizer_sigma([], grid) is None


def test_the_memorizer_claim_states_both_sigmas_by_the_same_rule():
    from biasprobe.reports.claims import memorizers_in_training_span_at_memorizer_sigma
    from biasprobe.reports.zoo import AT_MEMORIZER_SIGMA, IDEAL

    found = memorizer_evidence(share=0.75, top=0.3, contrast=0.1)  # σ = 0.1: in span fails
    ideal = ideal_store()
    for family in ("unet-ddpm", "dit"):
        found.stores[IDEAL, f"{family}-n10"] = ideal
        found.stores[AT_MEMORIZER_SIGMA, f"{family}-n10"] = span_store(0.8, 10, sigma=3.0)
        found.stores[AT_MEMORIZER_SIGMA, f"{family}-n30000"] = span_store(0.3, 30000, sigma=3.0)
    claim = memorizers_in_training_span_at_memorizer_sigma(found)
    assert claim.held is True and claim.ours.startswith("σ = 0.1: did not hold (the line above); σ = 3: held (")
    assert "DiT N=10: share 0.75, top 10 in span 0.80 (largest N 0.30" in claim.ours
    assert memorizers_in_training_span(found).held is False  # the σ = 0.1 line is untouched
    assert "0.01, 0.1, 0.3, 1, 3, 10" in claim.rule and "≥ 0.5" in claim.rule
    found.stores[AT_MEMORIZER_SIGMA, "dit-n30000"] = span_store(0.75, 30000, sigma=3.0)
    assert memorizers_in_training_span_at_memorizer_sigma(found).held is False  # not 0.1 above the contrast
    found.stores = {key: store for key, store in found.stores.items() if key[0] != AT_MEMORIZER_SIGMA}
    found.stores[IDEAL, "dit-n10"] = ideal_store(grid=(0.01, 0.1))
    for key in [key for key in found.stores if key[0] == IDEAL and key[1] != "dit-n10"]:
        del found.stores[key]
    nothing = memorizers_in_training_span_at_memorizer_sigma(found)
    assert nothing.held is None and "no σ of the grid 0.01, 0.1 passes the memorizer-σ rule" in nothing.ours
