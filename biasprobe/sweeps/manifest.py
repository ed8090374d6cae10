"""The zoo manifest, one schema for its writer and its readers.

``biasprobe sweep train`` (:func:`biasprobe.sweeps.recipes.write_manifest`, through :func:`save_manifest`) writes ``manifest.json`` in
its output folder, ``{"recipe": PATH, "checkpoints": [entry, ...]}``; the reports
(:func:`biasprobe.reports.zoo.read_zoo`, ``biasprobe report paper``) read it. An entry is the model's
training record ``NAME.train.json`` without the fields only the record keeps (:data:`RECORD_ONLY`: the
loss and gradient-norm curves, the recipe entry), with the recipe's ``steps`` now and whether they are done
(``complete``): :func:`manifest_entry`. :class:`ManifestEntry` is what a reader may rely on: each of its fields (a
dataclass field, with its meaning in ``metadata["meaning"]``; without a default it is required) is read
from the entry of that name (``windows`` from ``config.windows`` first); the entry's other fields (FLOPs,
batch, time, final loss, card, gaps, …) are kept in :attr:`ManifestEntry.written` for people and tools.
docs/reports.md lists the fields (a test checks that it lists every one).
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from biasprobe.atomic import replace_file
from biasprobe.errors import InputError

MANIFEST = "manifest.json"
"""The manifest's file name in a zoo folder."""
RECORD_ONLY = ("loss_curve", "grad_norm_curve", "recipe")
"""Fields of a training record that stay in ``NAME.train.json`` and are not listed in the manifest."""


def _meaning(text: str, **options) -> dict:
    return {"metadata": {"meaning": text}, **options}


@dataclass(frozen=True)
class ManifestEntry:
    """One model of a zoo manifest, as every reader reads it."""

    name: str = field(**_meaning("unique name; part of a cached store's name"))
    file: str = field(**_meaning("what `bp.load` opens, relative to the zoo folder (a file, or a folder of shards)"))
    sha256: str = field(**_meaning("of that file (`biasprobe info` prints it); checked against each computed "
                                   "store's provenance"))
    family: str = field(**_meaning("`dit`, `unet-ddpm` or `unet-bf`"))
    n_train: int = field(**_meaning("the number of training images"))
    windows: tuple[int | None, ...] = field(default=(), **_meaning(
        "attention window per DiT layer, `null` for a global layer, read from `config.windows` (else a top-level "
        "`windows`); trailing global layers are dropped. It names the variant"))
    data: str = field(default="fashion-mnist", **_meaning("data set name for `biasprobe.data.load`"))
    subset: str = field(default="s1", **_meaning("`s1` or `s2`, the half of the training split"))
    seed: int = field(default=0, **_meaning("the seed of the subset: the training images are `data.load(data, "
                                            "\"train\", n_train, subset=subset, seed=seed)`"))
    steps_done: int | None = field(default=None, **_meaning("training steps done"))
    steps: int | None = field(default=None, **_meaning("the recipe's steps"))
    complete: bool | None = field(default=None, **_meaning("whether the recipe's steps are done"))
    loss_change_last_20pct: float | None = field(default=None, **_meaning(
        "relative change of the mean loss over the last 20 % of the steps done against the 20 % before"))
    loss_change_se: float | None = field(default=None, **_meaning("its standard error"))
    plateau: bool | None = field(default=None, **_meaning(
        "whether the loss curve is on a plateau (`biasprobe.training.plateau`)"))
    written: dict = field(default_factory=dict, repr=False, compare=False)
    """The whole entry as written, every field included."""

    @property
    def judged(self) -> bool:
        """Whether the entry carries the plateau judgement (else a reader may judge the record's loss curve)."""
        return "plateau" in self.written

    @classmethod
    def read(cls, entry: dict) -> ManifestEntry:
        """The entry ``entry`` (a manifest's JSON object); KeyError, TypeError or ValueError when it is not one."""
        windows = list((entry.get("config") or {}).get("windows", entry.get("windows")) or [])
        while windows and windows[-1] is None:
            windows.pop()
        values = {}
        for spec in fields(cls):
            if spec.name in ("written", "windows"):
                continue
            if spec.default is MISSING:
                values[spec.name] = entry[spec.name]  # required: KeyError names it
            else:
                values[spec.name] = spec.default if entry.get(spec.name) is None else entry[spec.name]
        for name in ("n_train", "seed", "steps_done", "steps"):
            if values.get(name) is not None:
                values[name] = int(values[name])
        return cls(**values, windows=tuple(windows), written=dict(entry))


REQUIRED_FIELDS = tuple(spec.name for spec in fields(ManifestEntry)
                        if spec.default is MISSING and spec.default_factory is MISSING)
"""The fields every entry must have."""


def manifest_entry(record: dict, steps: int) -> dict:
    """The manifest entry of a model from its training ``record``: the record without :data:`RECORD_ONLY`,
    with ``steps`` (the recipe's now) and ``complete`` (whether they are done)."""
    entry = {key: value for key, value in record.items() if key not in RECORD_ONLY}
    done = entry.get("steps_done")
    return {**entry, "steps": steps, "complete": bool(done is not None and done >= steps)}


def save_manifest(folder: str | os.PathLike, recipe: str | os.PathLike, entries: list[dict]) -> Path:
    """Write ``folder/manifest.json`` (atomically) listing ``entries`` (from :func:`manifest_entry`), written by
    the recipe at ``recipe``; its path."""
    path = Path(folder) / MANIFEST
    text = json.dumps({"recipe": str(recipe), "checkpoints": entries}, indent=1) + "\n"
    replace_file(lambda tmp: tmp.write_text(text), path)
    return path


def read_manifest(folder: str | os.PathLike) -> list[ManifestEntry]:
    """The entries of ``folder/manifest.json``; :class:`~biasprobe.errors.InputError` when it is missing or not a
    manifest."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise InputError(f"no zoo manifest at {path}")
    try:
        return [ManifestEntry.read(entry) for entry in json.loads(path.read_text())["checkpoints"]]
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path} is not a zoo manifest ({err}); see docs/reports.md for its fields") from None
