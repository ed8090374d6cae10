"""The zoo as the reports read it: its models (:class:`ZooModel`, from ``manifest.json``), how far
each is trained (:class:`TrainedSoFar`), and the cells a report asks it for (:class:`Cell`: family,
attention variant, N, subset), with the names the paper recipe (:mod:`biasprobe.reports.paper`) and
its claims (:mod:`biasprobe.reports.claims`) share.

The zoo is a folder with ``manifest.json``, read through the one schema that ``biasprobe sweep train``
writes it with (:mod:`biasprobe.sweeps.manifest`, :class:`~biasprobe.sweeps.manifest.ManifestEntry`):
a model's name, file, sha256, family, training images (``data``, ``n_train``, ``subset``, ``seed``) and
attention windows (which pick its variant in :data:`VARIANTS`).

A report may read **several zoos** in order of precedence (zoo v2 before zoo v1: ``("data/zoo/v2",
"data/zoo")``): each family comes whole from the first zoo that has a model of it (:func:`read_zoo`), so that
no comparison mixes a family's models of two zoos (zoo v2's DiT is twice as wide as zoo v1's), and every
model carries the folder it came from (:attr:`ZooModel.zoo`), which the page names.

How far each model is trained is read for the page's "How far the zoo is trained" table
(:func:`zoo_training`): ``steps_done`` and ``steps`` (the recipe's), and the plateau judgement
``loss_change_last_20pct``, ``loss_change_se``, ``plateau``; an entry without it is judged from its
record ``NAME.train.json``'s loss curve beside the manifest
(:func:`biasprobe.training.plateau.loss_plateau`), and one with neither is listed as not judged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from biasprobe.errors import InputError
from biasprobe.sweeps.manifest import MANIFEST, read_manifest

LOCAL = (3, 5, 7, 9, 11, 13)
VARIANTS: dict[str, tuple[int | None, ...]] = {
    "global": (),
    "local": LOCAL,                                            # head: layers 1-6 (the paper's default)
    "mix": (3, None, 5, None, 7, None, 9, None, 11, None, 13),  # interleaved: layers 1, 3, …, 11 (our choice)
    "tail": (None,) * 6 + LOCAL,                               # layers 7-12
    "local*": (3, 3, 3, 5, 5, 5, 7, 7, 7),                     # nine local layers, layers 1-9 (our order)
    "windows 5×6": (5,) * 6,                                   # Fig. 8: the same budget, one size
    "windows 3,3,5,5,7,7": (3, 3, 5, 5, 7, 7),                 # Fig. 8: the same budget, growing
}
"""Attention window per DiT layer of each variant the paper compares (trailing global layers left out).
Where the paper does not say the placement (mix, local*), ours is written here; train the zoo with these."""

FAMILY_NAMES = {"dit": "DiT", "unet-ddpm": "DDPM UNet", "unet-bf": "bias-free UNet"}
N_VALUES = (10, 100, 1000, 10000, 30000)
"""The zoo's training-set sizes; the paper's 10⁵ is 3·10⁴ here (Fashion-MNIST's S1 half has 30000)."""
TRANSITION_N = 300
"""Zoo v2's N between 10² and 10³ (added 2026-12-07, before it was trained): its width-128 DiT memorizes 10² and
generalizes at 10³ at the recipe's 20 000 steps, so the powers of ten have no N in the transition regime
(docs/methods/claims.md). Science v3's ladders and gap figures include it."""
SEEDS = 3


@dataclass(frozen=True)
class ZooModel:
    """One checkpoint of the zoo, as the recipe reads its manifest entry."""

    name: str
    path: Path
    family: str
    windows: tuple[int | None, ...]
    data: str
    n_train: int
    subset: str
    seed: int
    sha256: str
    steps_done: int | None = None
    zoo: Path | None = None
    """The zoo folder the model was read from."""
    qk_norm: bool = False
    """Whether its attention normalises queries and keys (a DiT config's ``qk_norm``; zoo v2's revised DiTs)."""

    @property
    def variant(self) -> str | None:
        """The name of this model's attention variant in :data:`VARIANTS` (None: none of them)."""
        if self.family != "dit":
            return "global"
        return next((name for name, windows in VARIANTS.items() if windows == self.windows), None)

    def label(self) -> str:
        variant = "" if self.variant in ("global", None) else f" {self.variant}"
        return f"{FAMILY_NAMES.get(self.family, self.family)}{variant} N={self.n_train}"


Zoos = str | os.PathLike | Sequence[str | os.PathLike]
"""One zoo folder, or several in order of precedence."""


def zoo_folders(zoo: Zoos) -> list[Path]:
    """``zoo`` as a list of folders (one folder or several; at least one, none twice)."""
    folders = [Path(zoo)] if isinstance(zoo, (str, os.PathLike)) else [Path(folder) for folder in zoo]
    if not folders:
        raise InputError("give at least one {zoo} folder", parameters=["zoo"])
    if len({folder.resolve() for folder in folders}) < len(folders):
        raise InputError(f"a {{zoo}} folder is given twice ({', '.join(map(str, folders))})", parameters=["zoo"])
    return folders


def read_zoo(zoo: Zoos) -> list[ZooModel]:
    """The models of the zoo at ``zoo`` (its ``manifest.json``, see the module doc); of several zoos, each family's
    models from the first zoo that has that family."""
    models, taken = [], set()
    for folder in zoo_folders(zoo):
        here = _read_one_zoo(folder)
        models += [model for model in here if model.family not in taken]
        taken |= {model.family for model in here}
    return models


def _read_one_zoo(folder: Path) -> list[ZooModel]:
    if not (folder / MANIFEST).exists():
        raise InputError(f"no zoo manifest at {folder / MANIFEST}: the paper zoo ships in data/zoo of the repository "
                         "(run from its root or pass {zoo} PATH/data/zoo), or train one (docs/zoo.md); {zoo} "
                         "data/checkpoints is the small shipped zoo", parameters=["zoo"])
    return [ZooModel(name=entry.name, path=folder / entry.file, family=entry.family, windows=entry.windows,
                     data=entry.data, n_train=entry.n_train, subset=entry.subset, seed=entry.seed,
                     sha256=entry.sha256, steps_done=entry.steps_done, zoo=folder,
                     qk_norm=bool((entry.written.get("config") or {}).get("qk_norm", False)))
            for entry in read_manifest(folder)]


def zoo_sources(models: Sequence[ZooModel]) -> dict[Path, list[str]]:
    """Each zoo folder of ``models`` with the family names it gave, in the order read."""
    sources: dict[Path, list[str]] = {}
    for model in models:
        families = sources.setdefault(model.zoo, [])
        name = FAMILY_NAMES.get(model.family, model.family)
        if name not in families:
            families.append(name)
    return sources


@dataclass(frozen=True)
class TrainedSoFar:
    """How far one zoo model is trained: steps done, the recipe's steps, and the plateau judgement
    (``change``: the relative change of the mean loss over the last 20 % of the steps done against the
    20 % before, ``change_se`` its standard error; ``plateau`` None: no loss curve to judge)."""

    name: str
    steps_done: int | None
    steps: int | None
    change: float | None
    change_se: float | None
    plateau: bool | None
    zoo: Path | None = None


def zoo_training(zoo: Zoos) -> list[TrainedSoFar]:
    """How far each model of the zoo at ``zoo`` is trained (of several zoos, each model :func:`read_zoo` takes),
    from its manifest entry or else from its training record's loss curve (see the module doc)."""
    folders = zoo_folders(zoo)
    chosen = {(model.zoo, model.name) for model in read_zoo(folders)}
    return [state for folder in folders for state in _one_zoo_training(folder) if (folder, state.name) in chosen]


def _one_zoo_training(folder: Path) -> list[TrainedSoFar]:
    from biasprobe.training.plateau import record_plateau

    states = []
    for entry in read_manifest(folder):
        judged = {"loss_change_last_20pct": entry.loss_change_last_20pct, "loss_change_se": entry.loss_change_se,
                  "plateau": entry.plateau}
        steps_done, steps = entry.steps_done, entry.steps
        record_path = folder / f"{entry.name}.train.json"
        if not entry.judged and record_path.exists():
            record = json.loads(record_path.read_text())
            if record.get("loss_curve"):
                judged = record_plateau(record, record_path).record()
            steps_done = entry.steps_done if "steps_done" in entry.written else record.get("steps_done")
            steps = entry.steps if "steps" in entry.written else record.get("steps")
        change = judged["loss_change_last_20pct"]
        plateau = judged["plateau"] if change is not None else None  # a curve too short to judge: not judged
        states.append(TrainedSoFar(entry.name, steps_done, steps, change, judged["loss_change_se"], plateau, folder))
    return states


@dataclass(frozen=True)
class Cell:
    """A model an item needs: family, attention variant, N (None: the largest the zoo has) and subset;
    ``analysis`` names the store the item reads for it when that is not the item's own."""

    family: str
    n: int | None = None
    variant: str = "global"
    subset: str = "s1"
    seeds: int = 1
    analysis: str | None = None

    def describe(self) -> str:
        variant = "" if self.variant == "global" else f" {self.variant}"
        n = "largest N" if self.n is None else f"N={self.n}"
        seeds = f", {self.seeds} seeds" if self.seeds > 1 else ""
        store = f"; {self.analysis}" if self.analysis else ""
        return f"{FAMILY_NAMES.get(self.family, self.family)}{variant} {n} ({self.subset}{seeds}{store})"

    def find(self, zoo: Sequence[ZooModel]) -> list[ZooModel]:
        """The zoo's models of this cell, one per seed (sorted by seed)."""
        matches = [m for m in zoo if m.family == self.family and m.variant == self.variant and m.subset == self.subset]
        if self.n is None and matches:
            largest = max(m.n_train for m in matches)
            matches = [m for m in matches if m.n_train == largest]
        elif self.n is not None:
            matches = [m for m in matches if m.n_train == self.n]
        return sorted(matches, key=lambda m: m.seed)


MID_N = 100
"""The N where the zoo's gap is mid-range (the paper's 10³-10⁴): the N of the seeds and of Tables 2 and 3.
The zoo's pilot and first round (docs/zoo.md) put it at 10²: its short-trained DiTs and UNets open a
gap there and none at N ≥ 10³."""
MEMORIZERS = (("dit", "global", "s1"), ("dit", "local", "s1"), ("unet-ddpm", "global", "s1"),
              ("unet-bf", "global", "s1"), ("unet-bf", "global", "s2"))
"""(family, variant, subset) of the N = 10 models checked as memorizers; the contrast of each is the largest-N
model of its family and variant on S1."""
IDEAL = "ideal-memorizer"
"""The store of the ideal memorizer (the posterior mean of an N = 10 model's training images) at the report's σ
and the memorizer-σ grid: the known answer of the span test, and what the memorizer σ is chosen from."""
AT_MEMORIZER_SIGMA = "training-span at the memorizer σ"
"""The training-span stores at the memorizer σ (ordinary training-span stores of ``Settings(sigma=σ)``, keyed
so; the name the report's store table and its claims look them up by)."""
SURVEY_AT_MEMORIZER_SIGMA = "gahb-survey at the memorizer σ"
"""The GAHB surveys at the memorizer σ (science v3: Fig. 3's λ₀ ratio and the memorizers' span score; ordinary
gahb-survey stores of ``Settings(survey_sigmas=(σ,))``), of the models trained at that σ."""
