"""The v3 attention claim between the gap's memorizing and generalizing N, on synthetic records and stores."""

import json

import numpy as np
import xarray as xr

from biasprobe.reports import rules
from biasprobe.reports.attention_claims import attention_gets_local
from biasprobe.reports.zoo import ZooModel


def zoo(folder, gaps, steps=20000, unequal=None):
    """Global DiTs at the N of ``gaps`` (N -> average gap at the landed step), each with its record's gap row."""
    models = []
    for n, gap in gaps.items():
        done = unequal if unequal and n == max(gaps) else steps
        name = f"dit-n{n}"
        (folder / f"{name}.train.json").write_text(json.dumps(
            {"gaps": [{"steps": done, "average_gap": gap, "average_gap_sem": 0.1}]}))
        models.append(ZooModel(name=name, path=folder / f"{name}.safetensors", family="dit", windows=(),
                               data="fashion-mnist", n_train=n, subset="s1", seed=0, sha256="0", steps_done=done))
    return models


def locality(mean, seed):
    values = mean + 0.2 * np.random.default_rng(seed).standard_normal((8, 1, 12, 2))
    return xr.Dataset({"mean_distance": (("image", "sigma", "layer", "head"), values)})


def test_held_failed_unresolved_and_not_tested(tmp_path):
    models = zoo(tmp_path, {10: 9.0, 100: 4.0, 1000: 1.0, 30000: 0.1})
    judge = lambda memorizing, generalizing, seeds=(1, 2): attention_gets_local(models, {  # noqa: E731
        ("locality", "dit-n100"): locality(memorizing, seeds[0]),
        ("locality", "dit-n30000"): locality(generalizing, seeds[1])})
    judged = judge(15.0, 13.0)
    assert judged.outcome == rules.HELD  # N = 100 is the largest memorizing N, 30000 the smallest generalizing
    assert "memorizing N = 100" in judged.ours and "generalizing N = 30000" in judged.ours and "20.0k steps" in judged.ours
    assert judge(13.0, 15.0).outcome == rules.FAILED
    assert judge(14.0, 14.01, seeds=(1, 1)).outcome == rules.UNRESOLVED  # 0.01 px apart, s.e. about 0.015 each
    assert attention_gets_local(models, {}).outcome == rules.NOT_TESTED
    unequal = zoo(tmp_path, {10: 9.0, 100: 4.0, 30000: 0.1}, unequal=12000)
    judged = attention_gets_local(unequal, {("locality", "dit-n100"): locality(15, 1),
                                            ("locality", "dit-n30000"): locality(13, 2)})
    assert judged.outcome == rules.NOT_TESTED and "dit-n30000 12.0k" in judged.ours
    no_generalizer = zoo(tmp_path, {10: 9.0, 100: 4.0})
    assert "no memorizing N below a generalizing N" in attention_gets_local(no_generalizer, {}).ours
    backwards = zoo(tmp_path, {10: 0.1, 100: 4.0})  # a ladder that memorizes above where it generalizes
    assert attention_gets_local(backwards, {("locality", "dit-n10"): locality(13, 1),
                                            ("locality", "dit-n100"): locality(15, 2)}).outcome == rules.NOT_TESTED


def test_the_regimes_read_every_n_the_zoo_has(tmp_path):
    """zoo v2's N = 300 counts: a memorizing gap there makes it the memorizing N; a NaN gap (diverged) is left out."""
    import json

    from biasprobe.reports.attention_claims import landed_regimes
    from biasprobe.reports.gap_claims import GapEvidence
    from biasprobe.reports.zoo import ZooModel

    models = []
    for n, gap in ((100, 4.4), (300, float("nan")), (1000, 0.01)):
        name = f"dit-n{n}"
        (tmp_path / f"{name}.train.json").write_text(json.dumps(
            {"name": name, "gaps": [{"steps": 2000, "average_gap": gap, "average_gap_sem": 0.1}]}))
        models.append(ZooModel(name, tmp_path / f"{name}.safetensors", "dit", (), "fashion-mnist", n, "s1", 0,
                               "0" * 64, steps_done=2000))
    assert landed_regimes(GapEvidence(models)) == {100: "memorizing", 1000: "generalizing"}
    (tmp_path / "dit-n300.train.json").write_text(json.dumps(
        {"name": "dit-n300", "gaps": [{"steps": 2000, "average_gap": 3.5, "average_gap_sem": 0.1}]}))
    assert landed_regimes(GapEvidence(models)) == {100: "memorizing", 300: "memorizing", 1000: "generalizing"}
