"""Training recipes: the models of a TOML file, each one a resumable task, and their manifest.

A recipe has optional ``[defaults]`` and one ``[[model]]`` table per model (or per family of
models: a list under ``n``, ``seed`` or ``subset`` expands into one model per value, the ``name``
being a format string such as ``"dit-n{n}-seed{seed}"``)::

    output = "zoo"                 # folder of the checkpoints, relative to the recipe file

    [defaults]
    data = "fashion-mnist"
    preset = "small"
    steps = 40000
    batch = 128

    [[model]]
    name = "dit-local-n{n}"
    family = "dit"
    n = [1000, 10000]
    windows = [3, 5, 7, 9, 11, 13]   # per layer from the first; 0 = global attention

Each model trains through :func:`biasprobe.training.train` into ``OUTPUT/NAME.safetensors``,
resuming from its own saved state, so a killed or time-limited sweep continues where every model
stopped. Beside each checkpoint ``NAME.train.json`` keeps its record (time, device, final loss,
loss curve, and whether the curve is on a plateau: ``loss_change_last_20pct``, ``loss_change_se``,
``plateau``, by :func:`biasprobe.training.plateau.loss_plateau`); ``manifest.json`` lists them all.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields, make_dataclass
from pathlib import Path

import numpy as np

from biasprobe.atomic import replace_file
from biasprobe.errors import InputError, ParameterError
from biasprobe.sweeps.manifest import manifest_entry, save_manifest
from biasprobe.training.settings import USER_SETTINGS, TrainingConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXPANDING = ("n", "seed", "subset")
"""Model keys whose list values expand into one model per value."""


@dataclass
class _Model:
    """What to train, on what: the model keys of a recipe entry."""

    name: str
    family: str
    n: int
    data: str = "fashion-mnist"
    preset: str | None = None
    windows: list[int] = field(default_factory=list)
    qk_norm: bool = False
    """DiT only: RMS-normalise each head's queries and keys (:class:`~biasprobe.models.dit.DiT`; zoo v2 from its
    revision of 2026-12-08, docs/zoo.md)."""
    subset: str = "s1"
    image_size: int = 32
    channels: int | None = None
    data_dir: str | None = None
    gap_images: int = 0
    """K of the paper's gap measured at every checkpoint while training (0: not measured): the first min(K, N)
    training images against K test images at t = 0, 20, …, 980 (:func:`checkpoint_gap`), kept in the record's
    ``gaps``, so that models can be compared at common steps without keeping their weights (zoo v2: 300)."""

    def config(self) -> TrainingConfig:
        """The entry's :class:`~biasprobe.training.TrainingConfig` (its training keys by their parameters)."""
        return TrainingConfig(**{s.parameter: getattr(self, s.name) for s in USER_SETTINGS})


ModelRecipe = make_dataclass(
    "ModelRecipe", [(s.name, s.annotation, field(default=s.default)) for s in USER_SETTINGS], bases=(_Model,),
    namespace={"__doc__": """One model of a recipe: what to train, on what (:class:`_Model`'s keys), and how: one key per
    training setting (:data:`biasprobe.training.loop.USER_SETTINGS`, by its user's name: ``batch``, ``lr``,
    ``ema``, ``steps``, ``compile``, …), derived from :class:`~biasprobe.training.TrainingConfig`."""},
)
ModelRecipe.__module__ = __name__  # pickled by name for the sweep's workers (make_dataclass's module= needs 3.12)

RECIPE_KEYS = {s.parameter: s.name for s in USER_SETTINGS}
"""Each training setting's recipe key by its parameter: errors of :class:`TrainingConfig` name the recipe's keys."""


@dataclass
class Recipe:
    path: Path
    output: Path
    models: list[ModelRecipe]


def read_recipe(path: str | os.PathLike, output: str | os.PathLike | None = None) -> Recipe:
    """Parse and check a recipe; ``output`` overrides its ``output`` folder."""
    path = Path(path)
    try:
        text = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"no recipe at {path}: check the path") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path} is not valid TOML: {err}") from None
    unknown = sorted(set(text) - {"output", "defaults", "model"})
    if unknown:
        raise InputError(f"{path}: unknown top-level keys {unknown}; a recipe has output, [defaults] and [[model]]")
    known = {f.name for f in fields(ModelRecipe)}
    defaults = text.get("defaults", {})
    models: list[ModelRecipe] = []
    for number, entry in enumerate(text.get("model", []), start=1):
        merged = {**defaults, **entry}
        wrong = sorted(set(merged) - known)
        if wrong:
            raise InputError(f"{path}: model {number} has unknown keys {wrong}; known: {', '.join(sorted(known))}")
        missing = [key for key in ("name", "family", "n") if key not in merged]
        if missing:
            raise InputError(f"{path}: model {number} lacks {', '.join(missing)}")
        varying = [key for key in EXPANDING if isinstance(merged.get(key), list)]
        for values in itertools.product(*(merged[key] for key in varying)):
            chosen = {**merged, **dict(zip(varying, values))}
            try:
                chosen["name"] = str(merged["name"]).format(**chosen)
            except KeyError as err:
                raise InputError(f"{path}: model {number}'s name uses {err}, which it does not set") from None
            models.append(ModelRecipe(**chosen))
    if not models:
        raise InputError(f"{path} lists no [[model]]")
    for model in models:  # training settings checked before any work: errors name the recipe's keys
        try:
            model.config()
        except ParameterError as err:
            raise InputError(f"{path}: model {model.name}: {err.render(RECIPE_KEYS)}") from None
    for model in models:
        if isinstance(model.gap_images, bool) or not isinstance(model.gap_images, int) or model.gap_images < 0:
            raise InputError(f"{path}: model {model.name}: gap_images must be a whole number ≥ 0 (the K of the gap "
                             f"measured at every checkpoint; 0: none), not {model.gap_images!r}")
        if not isinstance(model.qk_norm, bool) or (model.qk_norm and model.family != "dit"):
            raise InputError(f"{path}: model {model.name}: qk_norm is true or false and applies to family dit only "
                             f"(here {model.family}: {model.qk_norm!r})")
    names = [model.name for model in models]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"{path}: several models are named {repeated[0]!r}; give each its own name "
                         "(with {n}, {seed} or {subset} when a list expands)")
    folder = Path(output) if output is not None else path.parent / text.get("output", path.stem)
    return Recipe(path, folder, models)


def checkpoint_file(output: Path, model: ModelRecipe) -> Path:
    return output / f"{model.name}.safetensors"


def record_file(output: Path, model: ModelRecipe) -> Path:
    return output / f"{model.name}.train.json"


def gaps_file(output: Path, model: ModelRecipe) -> Path:
    """The gap rows measured since ``model``'s record was last written (``NAME.gaps.json``): written after every
    checkpoint's measurement and removed with the record's write, so that a run lost mid-way keeps them."""
    return output / f"{model.name}.gaps.json"


def recorded_recipe(saved: dict) -> dict:
    """A record's recipe entry with the keys it predates at their defaults (e.g. ``qk_norm``, added 2026-12-08): a
    model trained before a key existed was trained as its default says."""
    defaults = {f.name: f.default for f in fields(ModelRecipe) if f.default is not MISSING}
    return {**defaults, **saved}


def train_model(model: ModelRecipe, output: str, device: str = "auto") -> dict:
    """One task: train ``model`` into ``output`` and write its record; returns the record.

    The run resumes from its saved state if there is one; else, when ``NAME.safetensors`` exists
    with fewer steps than the recipe's (its state lost, e.g. a round on a machine whose state never
    came back), it is warm-restarted from those weights (:func:`biasprobe.training.train`'s
    ``init``: fresh optimizer, EMA from the weights, the step count going on). A finished model is
    left alone; a checkpoint trained otherwise than its recipe entry says is refused.
    """
    import torch

    from biasprobe import data
    from biasprobe.checkpoints import read_checkpoint
    from biasprobe.denoiser import file_sha256
    from biasprobe.models import forward_flops, from_preset
    from biasprobe.sweeps.engine import worker_device
    from biasprobe.training import state_path, train
    from biasprobe.training.loop import changed_settings
    from biasprobe.training.plateau import record_plateau

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    target = checkpoint_file(folder, model)
    record_path = record_file(folder, model)
    earlier = json.loads(record_path.read_text()) if record_path.exists() else {}
    init = None
    before = earlier.get("recipe")  # the settings the run had so far (setting_changes)
    if target.exists() and not state_path(target).exists():
        trained = read_checkpoint(target).training
        before = before or trained  # a record lost with its round: the checkpoint's own settings
        done = int(trained.get("steps_done", 0))
        changed = changed_settings(recorded_recipe(earlier.get("recipe", asdict(model))), asdict(model), RERUN_SETTINGS)
        if changed:
            raise InputError(f"{target} was trained by another recipe entry ({changed}); give {model.name} its "
                             "recorded settings, or another name or output folder to train it anew")
        if done >= model.steps:  # finished: left alone
            if not earlier:
                raise InputError(f"{target} has done its {done} steps but its record {record_path.name} is missing; "
                                 "restore the record (e.g. from version control)")
            return earlier
        init = target
    images = data.load(model.data, "train", model.n, size=model.image_size, channels=model.channels,
                       subset=model.subset, seed=model.seed, data_dir=model.data_dir)
    torch.manual_seed(model.seed)
    windows = [w or None for w in model.windows]
    network, _ = from_preset(model.family, model.preset, image_size=model.image_size, channels=images.shape[1],
                             windows=windows, qk_norm=model.qk_norm)
    flops = forward_flops(network, tuple(images.shape[1:]))
    metadata = {"data": model.data, "subset": model.subset, "preset": model.preset, "image_size": model.image_size,
                "recipe_name": model.name}
    device = worker_device(device)
    began = time.perf_counter()
    interim = gaps_file(folder, model)
    rows = earlier.get("gaps", []) + (json.loads(interim.read_text()) if interim.exists() else [])
    gaps = sorted({row["steps"]: row for row in rows}.values(), key=lambda row: row["steps"])
    gaps = [row for row in gaps if init is not None or state_path(target).exists()]

    def measure(steps_done: int) -> None:
        gaps[:] = [row for row in gaps if row["steps"] < steps_done] + [checkpoint_gap_row(target, model, device)]
        _write_json(interim, gaps)
    result = train(network, images, target, model.config(), metadata=metadata, device=device, progress=False,
                   init=init, on_checkpoint=measure if model.gap_images else None)
    losses = np.asarray(result.losses, dtype=float)
    earlier_curve = [point for point in earlier.get("loss_curve", []) if point[0] <= result.losses_from]
    norms = np.asarray(result.grad_norms, dtype=float)
    earlier_norms = [point for point in earlier.get("grad_norm_curve", []) if point[0] <= result.losses_from]
    peaks = [peak] if (peak := earlier.get("grad_norm_max")) and peak[0] <= result.losses_from else []
    finite = np.where(np.isfinite(norms), norms, -np.inf)  # [step, ‖g‖] of the run's largest finite gradient norm
    if np.isfinite(finite).any():
        peaks.append([result.losses_from + int(np.argmax(finite)) + 1, float(finite.max())])
    record = {
        "name": model.name, "file": target.name, "family": model.family, "preset": model.preset,
        "config": dict(network.config), "windows": network.config.get("windows"), "flops_per_forward": flops,
        "data": model.data, "n_train": len(images), "subset": model.subset, "seed": model.seed, "steps": model.steps,
        "batch": model.batch, "steps_done": result.steps_done, "complete": result.steps_done >= model.steps,
        "warm_restarts": result.warm_restarts,
        "time_s": round(earlier.get("time_s", 0.0) * (result.resumed_from > 0) + time.perf_counter() - began, 3),
        "card": torch.cuda.get_device_name(device) if str(device).startswith("cuda") else "cpu",
        "final_loss": float(losses[-min(100, len(losses)):].mean()) if len(losses) else None,
        "loss_curve": earlier_curve + [[result.losses_from + step, value] for step, value in _curve(losses)],
        "grad_norm_curve": earlier_norms + [[result.losses_from + step, value] for step, value in _curve(norms)],
        "sha256": file_sha256(target), "recipe": asdict(model),
        "setting_changes": earlier.get("setting_changes", []) + (  # a run from scratch changes nothing
            setting_changes(before, model, result.resumed_from) if result.resumed_from else []),
    }
    if peaks:
        record["grad_norm_max"] = max(peaks, key=lambda peak: peak[1])
    if gaps:
        record["gaps"] = gaps
    record.update(record_plateau(record, record_path).record())
    _write_json(record_path, record)
    interim.unlink(missing_ok=True)
    return record


ENTROPY_IMAGES, ENTROPY_SIGMA = 8, 0.5
"""The checkpoint's attention entropy is measured at its first 8 training images at σ = 0.5."""


def checkpoint_gap_row(path: Path, model: ModelRecipe, device) -> dict:
    """The paper's gap of the checkpoint at ``path`` (K = ``model.gap_images``), as one row of a record's ``gaps``:
    steps, the average gap and its standard error, per step t the gap and its standard error, and ``image_psnr``:
    per split (train, test) each image's PSNR averaged over t, from which two models measured on the same images
    are compared by their paired difference (:func:`biasprobe.statistics.paired_difference`; the checkpoints are
    not kept, so this can only be measured while training); for a network
    with attention also ``attention_entropy``: per layer, the lowest over heads of the mean attention entropy
    H = −Σ_k p log p (nats; :func:`biasprobe.analyses.locality.locality` at :data:`ENTROPY_IMAGES` training
    images, σ = :data:`ENTROPY_SIGMA`), which falls towards 0 where attention collapses onto single keys (the
    first suspect of zoo v2's diverged local DiTs, docs/zoo.md)."""
    from biasprobe.analyses.generalization import checkpoint_gap
    from biasprobe.analyses.locality import locality
    from biasprobe.data import training_set
    from biasprobe.formats import load
    from biasprobe.models import attention_modules

    denoiser = load(path, device=device)
    result = checkpoint_gap(denoiser, k=model.gap_images, data_dir=model.data_dir)
    rounded = lambda values: [round(float(v), 4) for v in values]  # noqa: E731
    per_image = result.psnr.mean("sigma", skipna=True)  # each image's PSNR averaged over t: the pairing's unit
    row = {"steps": int(denoiser.source.training["steps_done"]), "average_gap": round(float(result.average_gap), 4),
           "average_gap_sem": round(float(result.average_gap_sem), 4),
           "images": [int(v) for v in result.images_per_split.values], "t": rounded(result.t.values),
           "gap": rounded(result.gap.values), "gap_sem": rounded(result.gap_sem.values),
           "image_psnr": {split: rounded(per_image.sel(split=split).values[: int(count)])
                          for split, count in zip(per_image.split.values, result.images_per_split.values)}}
    if attention_modules(denoiser.network):
        _, images = training_set(denoiser.source.training, denoiser.image_shape, None, None, model.data_dir)
        entropy = locality(denoiser, images[:ENTROPY_IMAGES], sigmas=[ENTROPY_SIGMA]).entropy
        row["attention_entropy"] = rounded(entropy.mean(("image", "sigma")).min("head").values)
    return row


RERUN_SETTINGS = (*(s.name for s in USER_SETTINGS if s.changeable), "gap_images")
"""Recipe keys a later round may change for a model already (partly) trained."""

FUNCTION_SETTINGS = ("grad_clip",)
"""Changeable recipe keys that change what a step computes (not only how fast or how it is saved): a record
lists when each changed (``setting_changes``), since its ``recipe`` holds only the latest values."""


def setting_changes(before: dict | None, model: ModelRecipe, step: int) -> list[dict]:
    """``[{"step": step, KEY: [old, new]}]`` for the :data:`FUNCTION_SETTINGS` in which ``model`` differs from
    the recipe entry ``before`` of the model's earlier rounds (absent keys are their defaults); [] if none."""
    if not before:
        return []
    now, defaults = asdict(model), {f.name: f.default for f in fields(ModelRecipe)}
    changed = {key: [before.get(key, defaults[key]), now[key]] for key in FUNCTION_SETTINGS
               if before.get(key, defaults[key]) != now[key]}
    return [{"step": step, **changed}] if changed else []


def _write_json(path: Path, value: dict | list) -> None:
    replace_file(lambda tmp: tmp.write_text(json.dumps(value, indent=1) + "\n"), path)


def _curve(values: np.ndarray, points: int = 200) -> list[list[float]]:
    """A per-step series (losses, gradient norms) as up to ``points`` (step, mean over the steps since the
    previous point) pairs; steps without a value (NaN: gradient norms of older states) are left out."""
    if not len(values):
        return []
    edges = np.unique(np.linspace(0, len(values), min(points, len(values)) + 1).astype(int))
    return [[int(end), float(np.nanmean(values[start:end]))] for start, end in itertools.pairwise(edges)
            if np.isfinite(values[start:end]).any()]


def complete_record(record: dict, model: ModelRecipe) -> dict:
    """``record`` with what records of older versions lack: ``flops_per_forward`` (computed from its
    ``config``) and ``warm_restarts`` (none, as no older version made any); its plateau fields
    (``loss_change_last_20pct``, ``loss_change_se``, ``plateau``) are judged anew from its loss curve
    (:func:`biasprobe.training.plateau.loss_plateau`)."""
    from biasprobe.models import build_model, forward_flops
    from biasprobe.training.plateau import record_plateau

    record = dict(record)
    if "flops_per_forward" not in record:
        network = build_model(record["family"], **record["config"])
        shape = (record["config"]["channels"], model.image_size, model.image_size)
        record["flops_per_forward"] = forward_flops(network, shape)
    record.setdefault("warm_restarts", [])
    record.update(record_plateau(record, f"the training record of {model.name}").record())
    return record


def write_manifest(recipe: Recipe) -> Path:
    """``manifest.json`` in the output folder (:mod:`biasprobe.sweeps.manifest`, the schema the reports read):
    the record of every model of the recipe trained so far (without the loss curves, which stay in each
    ``NAME.train.json``), each with its plateau judgement and, as ``steps`` and ``complete``, the recipe's
    steps now and whether they are done (a record keeps the steps it was trained towards, which a recipe
    raised since does not change). Records of older versions are completed first (:func:`complete_record`)
    and rewritten."""
    entries = []
    for model in recipe.models:
        path = record_file(recipe.output, model)
        if path.exists():
            earlier = json.loads(path.read_text())
            record = complete_record(earlier, model)
            if record != earlier:
                _write_json(path, record)
            entries.append(manifest_entry(record, model.steps))
    recipe.output.mkdir(parents=True, exist_ok=True)  # also when no model got as far as its first save
    return save_manifest(recipe.output, recipe.path, entries)


def train_recipe(
    recipe: str | os.PathLike | Recipe,
    *,
    output: str | os.PathLike | None = None,
    only: list[str] | None = None,
    device: str = "auto",
    max_minutes: float | None = None,
    compile: bool | str | None = None,
    compile_scope: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    per_gpu: int = 1,
    processes: bool = True,
    progress: bool = False,
    on_dashboard=None,
) -> Path:
    """Train the models of ``recipe`` (those named in ``only``, in its order; default all), one task each, on a local
    dask cluster (``per_gpu`` workers per GPU; ``workers=0``: one after another here) or on
    ``scheduler``; ``max_minutes`` caps each model's time in this run (it resumes next time) and
    ``compile`` (not None) replaces the recipe's compile setting for this run (e.g. ``"reduce-overhead"``:
    the same function, recorded in each model's record), as ``compile_scope`` (not None) does the
    recipe's ``compile_scope``. Writes ``manifest.json`` and returns its path;
    failed models raise :class:`SweepError` after the others."""
    from biasprobe.sweeps import engine
    from biasprobe.sweeps.engine import SweepError
    from biasprobe.training.loop import checked_compile_scope, compile_mode

    if compile_scope is not None:
        checked_compile_scope(compile_scope)
    if not isinstance(recipe, Recipe):
        recipe = read_recipe(recipe, output)
    models = recipe.models
    if only:
        unknown = sorted(set(only) - {model.name for model in models})
        if unknown:
            raise InputError(f"no model {unknown[0]!r} in {recipe.path}; it has {', '.join(m.name for m in models)}")
        by_name = {model.name: model for model in models}
        models = [by_name[name] for name in dict.fromkeys(only)]  # in the order asked: the order they start in
    overrides = {"max_minutes": max_minutes, "compile": None if compile is None else compile_mode(compile),
                 "compile_scope": compile_scope}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if overrides:
        models = [ModelRecipe(**{**asdict(model), **overrides}) for model in models]
    tasks = {model.name: (model, str(recipe.output.resolve()), device) for model in models}
    outcome = engine.run(train_model, tasks, workers=workers, scheduler=scheduler, per_gpu=per_gpu,
                         processes=processes, progress=progress, description="training",
                         unit="models", on_dashboard=on_dashboard)
    manifest = write_manifest(recipe)
    if outcome.failed:
        listing = "; ".join(f"{name}: {error}" for name, error in outcome.failed.items())
        raise SweepError(f"{len(outcome.failed)} of {len(models)} models failed ({listing}); the others are in "
                         f"{recipe.output}; run the recipe again to retry (each model resumes)",
                         outcome.failed, outcome.tracebacks)
    return manifest
