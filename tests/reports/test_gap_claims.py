"""The v3 gap claims (biasprobe.reports.gap_claims) on a synthetic zoo with per-checkpoint gap rows."""

import json

import numpy as np

from biasprobe.reports import rules
from biasprobe.reports.gap_claims import GapEvidence, judge_gap_claims
from biasprobe.reports.zoo import VARIANTS, ZooModel

T = np.arange(0, 1000, 20)
PROFILE = np.clip((600 - T) / 400.0, 0, 1)  # flat to t = 200, gone from t = 600


def rows(average: float, steps=(2000, 4000, 6000), se: float = 0.1) -> list[dict]:
    """Gap rows whose per-t gap peaks at t = 0 and fades by t = 700, averaging ``average`` (last step)."""
    out = []
    for k, step in enumerate(steps):
        scale = average * (k + 1) / len(steps)
        gap = PROFILE * scale / PROFILE.mean()
        out.append({"steps": step, "average_gap": float(gap.mean()), "average_gap_sem": se, "t": T.tolist(),
                    "gap": gap.tolist(), "gap_sem": [se] * len(T)})
    return out


def model(folder, name, family, n, variant="global", gaps=None, seed=0) -> ZooModel:
    if gaps is not None:
        (folder / f"{name}.train.json").write_text(json.dumps({"name": name, "gaps": gaps}))
    windows = VARIANTS[variant] if family == "dit" else ()
    return ZooModel(name, folder / f"{name}.safetensors", family, windows, "fashion-mnist", n, "s1", seed, "0" * 64)


def zoo(folder) -> list[ZooModel]:
    models = [model(folder, f"dit-n{n}", "dit", n, gaps=rows(g)) for n, g in
              ((10, 20.0), (100, 1.2), (1000, 0.1))]
    models.append(model(folder, "dit-n10000", "dit", 10000, gaps=rows(0.02, steps=(2000, 4000))))
    models += [model(folder, f"dit-n100-seed{s}", "dit", 100, gaps=rows(1.3), seed=s) for s in (1, 2)]
    models += [model(folder, f"dit-local-n{n}", "dit", n, "local", gaps=rows(g)) for n, g in ((100, 0.6), (10000, 0.03))]
    models += [model(folder, f"unet-ddpm-n{n}", "unet-ddpm", n, gaps=rows(g)) for n, g in
               ((10, 25.0), (100, 10.0), (1000, 0.6), (10000, 0.05))]
    models += [model(folder, f"dit-{v}-n100", "dit", 100, v, gaps=rows(g)) for v, g in
               (("mix", 1.0), ("tail", 1.1), ("local*", 0.5), ("windows 5×6", 0.62), ("windows 3,3,5,5,7,7", 0.65))]
    return models


def test_the_gap_claims_hold_on_a_zoo_made_to_hold_them(tmp_path):
    evidence = GapEvidence(zoo(tmp_path))
    assert evidence.transition_n() == 100  # 1.2 dB (three seeds) at the common step: neither memorizing nor gone
    judged = judge_gap_claims(zoo(tmp_path))
    assert [j.outcome for j in judged] == [rules.HELD] * len(judged), [(j.statement, j.outcome, j.ours) for j in judged]
    # the DiT ladder is compared where every N has a row: N = 10000 stops at 4000 steps
    assert "at 4.0k steps" in judged[1].ours and "(3 seeds)" in judged[1].ours


def test_unequal_steps_and_missing_rows_are_not_tested_and_noise_is_unresolved(tmp_path):
    models = zoo(tmp_path)
    # local attention only measured at steps the global model never reached: no common step
    models = [m for m in models if m.name != "dit-local-n100"]
    models.append(model(tmp_path, "dit-local-n100", "dit", 100, "local", gaps=rows(0.6, steps=(8000,))))
    # a v1 model (no record rows) in a cell another claim needs
    models = [m for m in models if m.name != "dit-tail-n100"] + [model(tmp_path, "dit-tail-n100", "dit", 100, "tail")]
    judged = {j.statement: j for j in judge_gap_claims(models)}
    cut = next(j for s, j in judged.items() if s.startswith("Local attention"))
    assert cut.outcome == rules.NOT_TESTED and "no common step" in cut.ours
    assert next(j for s, j in judged.items() if s.startswith("Local layers")).outcome == rules.NOT_TESTED
    # a window-budget difference inside the noise keeps "changes little"; one far outside breaks it
    models = [m for m in zoo(tmp_path) if m.name != "dit-windows 5×6-n100"]
    models.append(model(tmp_path, "dit-windows 5×6-n100", "dit", 100, "windows 5×6", gaps=rows(2.0)))
    budget = next(j for j in judge_gap_claims(models) if j.statement.startswith("The same window"))
    assert budget.outcome == rules.FAILED


def test_the_ladder_takes_every_n_the_zoo_has_so_a_transition_between_powers_of_ten_is_found(tmp_path):
    """Zoo v2 at 20 000 steps: N = 10² memorizes, 10³ generalizes; the N = 300 between them is the transition."""
    models = [model(tmp_path, f"dit-n{n}", "dit", n, gaps=rows(g)) for n, g in ((100, 4.4), (1000, 0.01))]
    assert GapEvidence(models).transition_n() is None  # the powers of ten alone have no N in the transition regime
    models.append(model(tmp_path, "dit-n300", "dit", 300, gaps=rows(1.5)))
    ladder, step = GapEvidence(models).ladder("dit")
    assert list(ladder) == [100, 300, 1000] and step == 6000
    assert GapEvidence(models).transition_n() == 300
    assert GapEvidence(models).ladder("dit", "local") == ({}, None)  # a variant without models has no ladder


def with_images(gaps: list[dict], train: np.ndarray, test: np.ndarray) -> list[dict]:
    """The rows with each image's t-averaged PSNR (what zoo v2's records keep), the average gap made consistent."""
    return [{**row, "image_psnr": {"train": train.tolist(), "test": test.tolist()},
             "average_gap": float(train.mean() - test.mean())} for row in gaps]


def test_models_measured_on_the_same_images_are_compared_by_their_paired_difference(tmp_path):
    """Two models on the same 50 + 50 images whose per-image PSNRs differ by a constant 0.2 dB on the training
    images (and not at all on the test images): their gaps differ by 0.2 dB with a paired s.e. near 0, so the
    local-cuts-the-gap claim holds, while the independent band (√2 · 0.1 · 2 = 0.28 dB) would call it unresolved."""
    generator = np.random.default_rng(0)
    train, test = 26.2 + 0.5 * generator.standard_normal(50), 25 + 0.5 * generator.standard_normal(50)  # gap ≈ 1.2 dB
    models = [m for m in zoo(tmp_path) if m.name not in ("dit-n100", "dit-local-n100", "dit-n100-seed1", "dit-n100-seed2")]
    models.append(model(tmp_path, "dit-n100", "dit", 100, gaps=with_images(rows(1.2), train + 0.2, test)))
    models.append(model(tmp_path, "dit-local-n100", "dit", 100, "local", gaps=with_images(rows(1.0), train, test)))
    evidence = GapEvidence(models)
    from biasprobe.reports.zoo import Cell

    difference = evidence.difference(Cell("dit", 100), Cell("dit", 100, "local"), 6000)
    assert abs(difference.value - 0.2) < 1e-9 and difference.se < 1e-9
    judged = {j.key: j for j in judge_gap_claims(models)}
    cut = judged["local_cuts_transition_gap"]
    assert cut.outcome == rules.HELD and "paired on the same images: difference +0.20 ± 0.00" in cut.ours
    unpaired = rules.smaller(evidence.estimate(Cell("dit", 100, "local"), 6000), evidence.estimate(Cell("dit", 100), 6000))
    assert unpaired == rules.UNRESOLVED  # what the independent band says of the same numbers
    # another seed (other training images) is never paired: the independent band
    other = model(tmp_path, "dit-local-n100", "dit", 100, "local", gaps=with_images(rows(1.0), train, test), seed=3)
    assert GapEvidence([*models[:-1], other]).difference(Cell("dit", 100), Cell("dit", 100, "local"), 6000) is None


def test_a_diverged_model_is_never_within_noise(tmp_path):
    """A NaN gap (a diverged model's rows) leaves the claims that read it not tested, never held."""
    nan_rows = [{**row, "average_gap": float("nan"), "gap": [float("nan")] * len(T)} for row in rows(0.03)]
    models = [m for m in zoo(tmp_path) if m.name != "dit-local-n10000"]
    models.append(model(tmp_path, "dit-local-n10000", "dit", 10000, "local", gaps=nan_rows))
    judged = {j.key: j for j in judge_gap_claims(models)}
    assert judged["local_same_at_largest_n"].outcome == rules.NOT_TESTED
    assert judged["gap_peaks_early"].outcome == rules.NOT_TESTED
