"""The analysis parameters of the paper recipe (:class:`Settings`), part of every cached store's key.

What each parameter means, why it has its default and what it costs: docs/reports.md
("``biasprobe report paper``", "The memorizer σ").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from biasprobe.reports.cache import store_key
from biasprobe.reports.zoo import IDEAL, ZooModel


@dataclass(frozen=True)
class Settings:
    """The analysis parameters of the recipe.

    ``k`` images per split for the gap (the paper's K = 300) and for the nearest-image search; the gap of
    scheduled models at the diffusion steps ``gap_timesteps``, of blind ones at 20 σ from 0.01 to 1.
    Jacobians and attention at one noise level ``sigma`` ([0, 1] scale) on the first test image(s)
    (``locality_images`` for attention); ``samples`` samples of ``sampler_steps`` steps for memorization;
    the training-span control is the span of the ``held_out`` first test images; the memorizer σ is the
    smallest of ``memorizer_sigmas`` that passes :func:`biasprobe.reports.memorizers.memorizer_sigma`.

    ``version`` 3 is science v3's measurement (:data:`V3`, docs/methods/claims.md): the paper's gap (K = 300
    test images against min(K, N) training images, t = 0, 20, …, 980), Jacobians of D for every family, and the
    GAHB survey (``gahb-survey``: ``survey_images`` test images and as many training images × ``survey_sigmas``
    within each model's training range × ``survey_draws`` noise draws). The fields science v3 added enter a
    store's key only under version 3, so the v2 stores keep theirs."""

    k: int = 50
    gap_timesteps: tuple[int, ...] = (0, 10, 20, 40, 60, 100, 200, 400, 980)
    sigma: float = 0.1
    locality_images: int = 8
    samples: int = 8
    sampler_steps: int = 100
    held_out: int = 300
    memorizer_sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    version: int = 2
    survey_sigmas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    survey_images: int = 8
    survey_draws: int = 2

    def used_by(self, kind: str) -> dict:
        """The parameters the analysis ``kind`` reads (a store's key depends on these alone)."""
        names = {"gap": ("k", "gap_timesteps"), "jacobian": ("sigma",), "locality": ("sigma", "locality_images"),
                 "memorization": ("samples", "sampler_steps"), "training-span": ("sigma", "held_out"),
                 IDEAL: ("sigma", "k", "held_out", "memorizer_sigmas"),
                 SURVEY: ("survey_sigmas", "survey_images", "survey_draws", "held_out")}.get(kind, tuple(self.described()))
        if self.version != 2:
            names = ("version", *names)
        return {name: getattr(self, name) for name in names}

    def described(self) -> dict:
        """The parameters as the page prints them: under version 2 without the fields science v3 added."""
        values = asdict(self)
        return values if self.version != 2 else {k: v for k, v in values.items() if k not in V3_FIELDS}

    def key(self, kind: str, model: ZooModel) -> str:
        """The cache key of the store of ``kind`` for ``model`` (:func:`biasprobe.reports.cache.store_key`):
        the checkpoint's sha256 and the parameters that analysis reads, with a derived analysis's options."""
        return store_key(kind, model.sha256, {**self.used_by(kind), **DERIVED_OPTIONS.get(kind, {})})


V3_FIELDS = ("version", "survey_sigmas", "survey_images", "survey_draws")
"""The fields science v3 added (in no v2 store's key, nor in the v2 page's text)."""

SURVEY = "gahb-survey"
"""The analysis of science v3's Jacobian claims (:func:`biasprobe.analyses.survey.gahb_survey`)."""

V3 = Settings(version=3, k=300, gap_timesteps=tuple(range(0, 1000, 20)))
"""Science v3's measurement (docs/methods/claims.md, "What is measured"), fixed before any v3 store."""

DERIVED = {"training-span": "jacobian"}
"""Analyses computed from another analysis's store of the same model (and its images), not from the model."""
DERIVED_OPTIONS = {"training-span": {"centred": True, "neighbours": 10}}
"""The options of each derived analysis (part of its stores' cache key)."""
