"""The Jacobian claims of An et al. (Figs. 1 and 3) and the memorizers' span claim under the science-v3 rules,
judged from the models' GAHB surveys (:func:`biasprobe.analyses.survey.gahb_survey`).

The rules are those of docs/methods/claims.md, fixed before any survey store was computed; their pieces live
in :mod:`biasprobe.reports.rules`. Surveys are of landed weights, which have one step count each: the models a
claim compares must have the **same** ``steps_done`` (:func:`equal_steps`), else the claim is *not tested* and
its text names the steps that differ.

- **Fig. 1** (:func:`unet_harmonic_dit_not`): the GAHB call of each model at the largest N
  (:func:`~biasprobe.analyses.harmonic.model_call` over its test images, σ = :data:`VERDICT_SIGMAS` and the
  noise draws), decided by :func:`~biasprobe.reports.rules.all_and_none`.
- **Fig. 3** (:func:`small_n_lambda_ratio`): per test image i, r_f(i) = λ₀(N = 10) / λ₀(largest N) of family f
  at the memorizer σ (mean over draws); the claim reads the 95 % bootstrap interval over images of the mean of
  log r_UNet(i) − log r_DiT(i) (:func:`~biasprobe.reports.rules.interval_above_zero`). The images are the same
  first test images for every model, so the difference is paired.
- **Memorizers** (:func:`memorizers_in_span`): each N = 10 model's span score
  (:func:`~biasprobe.reports.rules.span_score` over the significant ranks) per image, averaged over draws, at
  its training and at test images, at the memorizer σ: held when, for every memorizer, both means reach
  :data:`~biasprobe.reports.rules.SPAN_SCORE` and its test-image mean exceeds the largest-N model's
  (:func:`~biasprobe.reports.rules.compare` = +1); a memorizer whose comparison is within noise, with the rest
  held, leaves the claim unresolved. A model whose survey lacks the memorizer σ (above its training range: the
  bias-free UNets are trained at σ ≤ 1) is left out and named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from biasprobe.analyses.harmonic import MODEL_CALLS, model_call
from biasprobe.analyses.survey import SPLITS, VERDICT_SIGMAS, draw_summaries
from biasprobe.reports import rules
from biasprobe.reports.gap_claims import Judged
from biasprobe.reports.zoo import MEMORIZERS, Cell, ZooModel
from biasprobe.statistics import Estimate, bootstrap_interval, over_images, thousands



@dataclass
class SurveyEvidence:
    """The zoo's models with their surveys: at the v3 σ grid (``surveys``) and at the memorizer σ
    (``at_memorizer``, by model name; None σ: not known)."""

    models: Sequence[ZooModel]
    surveys: Mapping[str, xr.Dataset]
    at_memorizer: Mapping[str, xr.Dataset]
    memorizer_sigma: float | None = None

    def one(self, cell: Cell) -> ZooModel | None:
        """The cell's first model (seed order), None without one: the survey claims read one seed, and say so
        ("1 seed") in their text."""
        found = cell.find(self.models)
        return found[0] if found else None


def equal_steps(models: Sequence[ZooModel]) -> tuple[int | None, str]:
    """The models' common ``steps_done``, or None and a text naming the steps that differ (or are unknown)."""
    steps = {model.name: model.steps_done for model in models}
    if len(set(steps.values())) == 1 and None not in steps.values():
        return next(iter(steps.values())), ""
    shown = ", ".join(f"{name} {'?' if s is None else thousands(s)}" for name, s in steps.items())
    return None, f"not at equal steps ({shown}): not compared"


def _has_sigmas(survey: xr.Dataset, sigmas: Sequence[float]) -> bool:
    return all(np.isclose(survey.sigma.values, s).any() for s in sigmas)


def _at_sigma(survey: xr.Dataset, sigma: float) -> xr.Dataset:
    return survey.isel(sigma=int(np.argmin(np.abs(survey.sigma.values - sigma))))


def _call_text(name: str, survey: xr.Dataset) -> tuple[str, str]:
    call, share, (low, high) = model_call(draw_summaries(survey, VERDICT_SIGMAS))
    tested = survey.isel(image=np.flatnonzero(survey.split.values == SPLITS[0]))
    tested = tested.isel(sigma=[int(np.argmin(np.abs(tested.sigma.values - s))) for s in VERDICT_SIGMAS])
    above = int(np.median(tested.count_above_one.values))
    return call, (f"{name}: {call} (harmonic share {share:.2f}, 95 % interval {low:.2f}-{high:.2f}, "
                  f"{tested.sizes['image']} images × {tested.sizes['draw']} draws, 1 seed; #λ > 1 median {above}, "
                  f"asymmetry {float(tested.asymmetry.mean()):.2f})")


FIG1_RULE = ("∂D/∂y for all; the GAHB call of each model at the largest N over 8 test images × σ = 0.05, 0.2, 1 × "
             "2 draws (an image is harmonic when its most frequent category is geometry-adaptive harmonic; the "
             "call reads the 95 % bootstrap interval of the harmonic share against ½); both UNets called "
             "geometry-adaptive harmonic and the DiT not → held; a UNet not, or the DiT geometry-adaptive "
             "harmonic → did not hold; otherwise unresolved; models at equal steps")


def unet_harmonic_dit_not(evidence: SurveyEvidence) -> Judged:
    cells = (Cell("unet-bf"), Cell("unet-ddpm"), Cell("dit"))
    models = [evidence.one(cell) for cell in cells]
    judged = dict(source="An et al. Fig. 1", statement="UNet Jacobian eigenvectors are geometry-adaptive harmonic "
                  "bases, the DiT's are not", paper="shown on one image each", rule=FIG1_RULE)
    if any(m is None or m.name not in evidence.surveys for m in models):
        missing = [cell.describe() for cell, m in zip(cells, models) if m is None or m.name not in evidence.surveys]
        return Judged(**judged, ours=f"no survey of {', '.join(missing)}", outcome=rules.NOT_TESTED)
    if not all(_has_sigmas(evidence.surveys[m.name], VERDICT_SIGMAS) for m in models):
        return Judged(**judged, ours="a survey lacks σ = 0.05, 0.2 or 1", outcome=rules.NOT_TESTED)
    if any(int((evidence.surveys[m.name].split.values == SPLITS[0]).sum()) < 2 for m in models):
        return Judged(**judged, ours="a survey has fewer than two test images: no interval", outcome=rules.NOT_TESTED)
    steps, why = equal_steps(models)
    texts = [_call_text(m.label(), evidence.surveys[m.name]) for m in models]
    ours = "; ".join(text for _, text in texts) + (f"; at {thousands(steps)} steps" if steps else f"; {why}")
    if steps is None:
        return Judged(**judged, ours=ours, outcome=rules.NOT_TESTED)
    (bf, _), (ddpm, _), (dit, _) = texts
    return Judged(**judged, ours=ours, outcome=rules.all_and_none([bf, ddpm], dit, MODEL_CALLS[0], MODEL_CALLS[1]))


def _tested_clean(survey: xr.Dataset) -> np.ndarray:
    """The survey's clean test images (what a paired comparison pairs)."""
    return survey.clean.isel(image=np.flatnonzero(survey.split.values == SPLITS[0])).values


def _largest_eigenvalue(survey: xr.Dataset, sigma: float) -> np.ndarray:
    """λ₀ per test image at ``sigma``, the mean over draws."""
    at = _at_sigma(survey, sigma)
    at = at.isel(image=np.flatnonzero(at.split.values == SPLITS[0]))
    return at.largest_eigenvalue.mean("draw").values


FIG3_RULE = ("per test image, r = λ₀(N = 10)/λ₀(largest N) of ∂D/∂y at the memorizer σ (mean over 2 draws), paired "
             "over the same images; held if the 95 % bootstrap interval over images of mean(log r_UNet − log r_DiT) "
             "lies above 0, did not hold if below, else unresolved; the four models at equal steps")


def small_n_lambda_ratio(evidence: SurveyEvidence) -> Judged:
    cells = (Cell("unet-ddpm", 10), Cell("unet-ddpm"), Cell("dit", 10), Cell("dit"))
    models = [evidence.one(cell) for cell in cells]
    judged = dict(source="An et al. Fig. 3", statement="the UNet's λ₀ at N = 10 is huge against its large-N value; "
                  "the DiT's changes far less", paper="UNet λ₀ 65.2 (N = 10); DiT 16.7 and 7.8", rule=FIG3_RULE)
    sigma = evidence.memorizer_sigma
    if sigma is None or any(m is None or m.name not in evidence.at_memorizer for m in models) or not all(
            _has_sigmas(evidence.at_memorizer[m.name], [sigma]) for m in models):
        return Judged(**judged, ours="no survey at the memorizer σ of every model", outcome=rules.NOT_TESTED)
    if models[0].name == models[1].name or models[2].name == models[3].name:
        return Judged(**judged, ours="a family's N = 10 model is also its largest: no ratio", outcome=rules.NOT_TESTED)
    cleans = [_tested_clean(evidence.at_memorizer[m.name]) for m in models]
    if any(c.shape != cleans[0].shape or not np.array_equal(c, cleans[0]) for c in cleans):
        return Judged(**judged, ours="the surveys are not of the same test images: no paired ratio",
                      outcome=rules.NOT_TESTED)
    steps, why = equal_steps(models)
    small_u, large_u, small_d, large_d = (_largest_eigenvalue(evidence.at_memorizer[m.name], sigma) for m in models)
    with np.errstate(divide="ignore", invalid="ignore"):
        difference = np.log(small_u / large_u) - np.log(small_d / large_d)
    difference = difference[np.isfinite(difference)]
    if len(difference) < 2:
        return Judged(**judged, ours=f"{len(difference)} image(s) with a finite ratio: no interval",
                      outcome=rules.NOT_TESTED)
    low, high = bootstrap_interval(difference)
    ours = (f"σ = {sigma:g}: UNet r median {np.median(small_u / large_u):.2f}, DiT r median "
            f"{np.median(small_d / large_d):.2f}; mean log(r_UNet/r_DiT) {difference.mean():.2f} "
            f"(95 % interval {low:.2f} to {high:.2f}, {len(difference)} images, 1 seed per model)"
            + (f"; at {thousands(steps)} steps" if steps else f"; {why}"))
    return Judged(**judged, ours=ours, outcome=rules.interval_above_zero(low, high) if steps else rules.NOT_TESTED)


def span_scores(survey: xr.Dataset, sigma: float, split: str) -> np.ndarray:
    """Each image's span score (:func:`~biasprobe.reports.rules.span_score`) at ``sigma``, averaged over draws."""
    at = _at_sigma(survey, sigma)
    at = at.isel(image=np.flatnonzero(at.split.values == split))
    scores = np.array([[rules.span_score(at.denoiser_eigenvalue.isel(image=i, draw=r).values,
                                         at.train_span_fraction.isel(image=i, draw=r).values)
                        for r in range(at.sizes["draw"])] for i in range(at.sizes["image"])])
    return np.nanmean(scores, axis=1) if scores.size else scores


def _mean(values: np.ndarray, steps: int | None) -> Estimate | None:
    """The mean with its standard error over images; None with fewer than two finite values (no noise estimate)."""
    estimate = over_images(values, steps)
    return estimate if np.isfinite(estimate.se) else None


SPAN_RULE = (f"at the memorizer σ, each N = 10 model's span score (Σ λ_k ‖P e_k‖² / Σ λ_k over the ranks λ_k ≥ "
             f"{rules.SPAN_SIGNIFICANT}·λ₀, at most {rules.SPAN_RANKS}; P on the centred span of its 10 nearest "
             f"training images), mean over images: ≥ {rules.SPAN_SCORE} at its training images and at test images, "
             "and above the largest-N model's at test images (2 s.e.); a comparison within noise leaves it "
             "unresolved; each memorizer and its contrast at equal steps")


def memorizers_in_span(evidence: SurveyEvidence) -> Judged:
    judged = dict(source="Kadkhodaie et al. / An et al. Fig. 3", statement="a memorizer's leading Jacobian "
                  "directions lie in the span of its training images", paper="(no number given)", rule=SPAN_RULE)
    sigma = evidence.memorizer_sigma
    if sigma is None:
        return Judged(**judged, ours="the memorizer σ is not known", outcome=rules.NOT_TESTED)
    texts, outcomes, left_out, missing, absent = [], [], [], [], []
    for family, variant, subset in MEMORIZERS:
        memorizer, contrast = evidence.one(Cell(family, 10, variant, subset)), evidence.one(Cell(family, None, variant))
        if memorizer is None:  # the rule judges each N = 10 model the zoo has; the page names those it lacks
            absent.append(Cell(family, 10, variant, subset).describe())
            continue
        if contrast is None or memorizer.name == contrast.name:
            if memorizer is not None:
                missing.append(f"{memorizer.label()} (no larger-N model to contrast)")
            continue
        surveys = [evidence.at_memorizer.get(m.name) for m in (memorizer, contrast)]
        if any(s is None or not _has_sigmas(s, [sigma]) for s in surveys):
            left_out.append(memorizer.label())  # e.g. trained below the memorizer σ: no survey there, by design
            continue
        steps, why = equal_steps([memorizer, contrast])
        train = _mean(span_scores(surveys[0], sigma, SPLITS[1]), steps)
        test = _mean(span_scores(surveys[0], sigma, SPLITS[0]), steps)
        other = _mean(span_scores(surveys[1], sigma, SPLITS[0]), steps)
        shown = lambda e: "—" if e is None else e.text()  # noqa: E731
        texts.append(f"{memorizer.label()}: training images {shown(train)}, test images {shown(test)}, "
                     f"{contrast.label()} {shown(other)}" + (f" ({why})" if steps is None else ""))
        if steps is None or None in (train, test, other):
            outcomes.append(rules.NOT_TESTED)
        elif train.value < rules.SPAN_SCORE or test.value < rules.SPAN_SCORE or rules.compare(test, other) == -1:
            outcomes.append(rules.FAILED)
        else:
            outcomes.append(rules.HELD if rules.compare(test, other) == 1 else rules.UNRESOLVED)
    ours = (f"σ = {sigma:g}: " + "; ".join(texts)
            + (f"; without a survey at σ = {sigma:g}: {', '.join(left_out)}" if left_out else "")
            + (f"; not compared: {', '.join(missing)}" if missing else "")
            + (f"; not in the zoo: {', '.join(absent)}" if absent else ""))
    # one memorizer that fails decides; then a missing comparison; then one within noise (every memorizer must hold)
    outcome = next((o for o in (rules.FAILED, rules.NOT_TESTED, rules.UNRESOLVED) if o in outcomes),
                   rules.HELD if outcomes else rules.NOT_TESTED)
    if not texts:
        ours = ("no memorizer with a survey" + (f"; not compared: {', '.join(missing)}" if missing else "")
                + (f"; not in the zoo: {', '.join(absent)}" if absent else ""))
    return Judged(**judged, ours=ours, outcome=outcome)


SURVEY_CLAIMS = (unet_harmonic_dit_not, small_n_lambda_ratio, memorizers_in_span)


def judge_survey_claims(evidence: SurveyEvidence) -> list[Judged]:
    """Every survey claim on the evidence, in the paper's order."""
    return [replace(claim(evidence), key=claim.__name__) for claim in SURVEY_CLAIMS]


__all__ = ["FIG1_RULE", "FIG3_RULE", "SPAN_RULE", "SURVEY_CLAIMS", "VERDICT_SIGMAS", "SurveyEvidence",
           "equal_steps", "judge_survey_claims", "memorizers_in_span", "small_n_lambda_ratio", "span_scores",
           "unet_harmonic_dit_not"]
