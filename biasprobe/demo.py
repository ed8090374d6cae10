"""The main job on shipped data: every analysis on the checkpoint zoo, as stores, figures and an index.

``biasprobe demo`` runs it. On the zoo (bias-free UNets and DiTs trained on N = 10 … 10⁴
Fashion-MNIST images, see ``data/checkpoints/manifest.json``) it measures

1. the generalization gap of every checkpoint (An et al. Fig. 2),
2. the Jacobian eigenvectors, GAHB metrics, memorization diagnostics and verdicts of UNets and DiTs
   at small and large N (Figs. 1, 3), as ``biasprobe jacobian`` computes them,
3. attention locality of the DiTs, global and local (Fig. 4),
4. the two-model test of Kadkhodaie et al. (UNets trained on disjoint halves S1 and S2),

and writes ``index.md`` and ``index.html`` with the numbers beside the figures (PNG inline, PDF
linked), what was run and the wall time of the run. How much it computes is a :class:`DemoPlan`:
:data:`QUICK` (the default, a few minutes on a 2-core CPU) or :data:`FULL` (more images, noise levels
and dense Jacobians everywhere). The output folder is claimed as a report folder
(:class:`~biasprobe.reports.folder.ReportFolder`): new, empty, or one an earlier demo or report
wrote; a user's files in it are never replaced.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from biasprobe import validation, zoo
from biasprobe.analyses.comparison import compare
from biasprobe.analyses.generalization import gap
from biasprobe.analyses.harmonic import gahb_summary
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.locality import locality
from biasprobe.errors import InputError
from biasprobe.progress import note, stage, task
from biasprobe.reports.folder import ReportFolder
from biasprobe.reports.page import Block, Heading, Picture, Table, Text, html_page, markdown
from biasprobe.store import save

JACOBIAN_MODELS = ("unet-bf-n10", "unet-bf-n10000-s1", "dit-n10", "dit-n10000")
LOCALITY_MODELS = ("dit-n10", "dit-n1000", "dit-n10000", "dit-local-n1000")
LOCALITY_SIGMAS = (0.05, 0.2)
TWO_MODELS = ("unet-bf-n10000-s1", "unet-bf-n10000-s2")
TWO_MODEL_SIGMA = 0.1
HELD_OUT_IMAGES = 1000
"""Test-split images searched for the memorization control, as ``biasprobe jacobian --held-out``."""
STAGES = ("gap", "Jacobian", "attention", "two-model test")
TITLE = "biasprobe demo"


@dataclass(frozen=True)
class DemoPlan:
    """How much one run of the demo computes; its page states all of it.

    ``solvers`` maps a checkpoint family (``unet-bf``, ``dit``) to the Jacobian's (method, top_k) as
    :func:`~biasprobe.analyses.jacobian.jacobian` takes them (top_k None: every eigenpair; it is cut to
    d for small images). The verdict judges at most K = ⌊d/16⌋ eigenvectors after the #{λ > 1}
    skipped ones, so a matrix-free top_k above ⌊d/16⌋ leaves the verdict what the dense one would be
    unless more than top_k − ⌊d/16⌋ eigenvalues exceed 1 (the page's table shows K and #λ>1)."""

    name: str
    jacobian_models: tuple[str, ...]
    gap_images: int
    """Test images per noise level of the gap (and training images, at most N)."""
    gap_sigmas: tuple[float, ...]
    jacobian_images: int
    jacobian_sigmas: tuple[float, ...]
    """At least three, so that the dimension trend β enters the verdict as in ``biasprobe jacobian``."""
    solvers: Mapping[str, tuple[str, int | None]]
    locality_images: int
    compare_samples: int


QUICK = DemoPlan(
    name="quick", jacobian_models=("unet-bf-n10", "unet-bf-n10000-s1", "dit-n10000"), gap_images=20, gap_sigmas=tuple(np.geomspace(0.02, 0.5, 4).tolist()),
    jacobian_images=1, jacobian_sigmas=(0.05, 0.1, 0.2),
    solvers={"unet-bf": ("dense", None), "dit": ("randomized", 96)},
    locality_images=4, compare_samples=4,
)
"""The default: about three minutes on an otherwise idle 2-core CPU (docs/benchmarks.md)."""
FULL = DemoPlan(
    name="full", jacobian_models=JACOBIAN_MODELS, gap_images=100, gap_sigmas=tuple(np.geomspace(0.02, 0.5, 8).tolist()),
    jacobian_images=2, jacobian_sigmas=(0.05, 0.1, 0.2),
    solvers={"unet-bf": ("dense", None), "dit": ("dense", None)},
    locality_images=8, compare_samples=8,
)
"""``biasprobe demo --full``: every Jacobian dense, more images and noise levels (tens of minutes on 2 cores)."""


def idle_cores() -> int:
    """The CPU cores other jobs leave idle: the core count less the whole cores the 1-minute load
    average says are busy, at least 1. On the shared 2-core CPU of docs/benchmarks.md, two threads
    ran the quick demo in 2:02 at load 0.7 (one thread: 2:48 at load 1.0), but more than twice as
    slowly as one thread at load 2.5-4, where they wait on each other while other jobs hold the cores."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, cores - math.floor(load)))


def run_demo(out: str | Path = "biasprobe-demo", *, plan: DemoPlan = QUICK, k: int | None = None,
             device: str = "cpu", threads: int | None = None, progress: bool = True,
             on_file: Callable[[Path], None] | None = None) -> Path:
    """Run the demo into folder ``out`` as ``plan`` says and return the path of its ``index.md``.

    ``threads`` sets torch's CPU threads for the run (default: as they are; ``biasprobe demo`` passes
    :func:`idle_cores`), restored afterwards.
    ``k`` overrides the plan's test images per gap measurement. With ``progress``, one line follows
    the whole demo (its share done and the time left, from the plan's estimated costs: :func:`work`),
    and every stage reports as ``[k/4] STAGE CHECKPOINT (i/n)``; ``on_file`` hears of every file and
    store written (by default, with ``progress``, a ``wrote FILE`` line). Every name the demo writes is
    checked against ``out`` before any work starts."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(validation.count(threads, "threads"))
    try:
        return _run(out, plan, k, device, progress, on_file)
    finally:
        torch.set_num_threads(previous)


def _run(out: str | Path, plan: DemoPlan, k: int | None, device: str, progress: bool,
         on_file: Callable[[Path], None] | None) -> Path:
    """:func:`run_demo` once torch's threads are set."""
    import torch

    from biasprobe.figures.comparison import comparison_figure
    from biasprobe.figures.generalization import gap_figure
    from biasprobe.figures.jacobian import jacobian_figure
    from biasprobe.figures.locality import attention_maps_figure, locality_profile_figure
    from biasprobe.store import provenance

    started = time.perf_counter()
    if k is not None:
        plan = DemoPlan(**{**plan.__dict__, "gap_images": k})
    if on_file is None:
        on_file = (lambda path: note(f"wrote {path}")) if progress else (lambda path: None)
    entries = {entry["name"]: entry for entry in zoo.manifest()}
    stores = ([f"gap-{name}.zarr" for name in entries] + [f"jacobian-{name}.zarr" for name in plan.jacobian_models]
              + [f"locality-{name}.zarr" for name in LOCALITY_MODELS] + ["compare-s1-s2.zarr"])
    figures = (["gap", "locality", "compare-s1-s2"] + [f"jacobian-{name}" for name in plan.jacobian_models]
               + [f"attention-{name}" for name in LOCALITY_MODELS])
    folder = ReportFolder(out, on_file)
    folder.check([*stores, *(f"{stem}.{fmt}" for stem in figures for fmt in ("png", "pdf")), "index.md", "index.html"])
    test = zoo.evaluation_images("test")[: max(plan.gap_images, plan.jacobian_images, plan.locality_images)]
    train = {"s1": zoo.evaluation_images("train_s1"), "s2": zoo.evaluation_images("train_s2")}
    costs = work(plan, entries)

    def load(name):
        return zoo.load_checkpoint(name, device=device)

    def store(dataset: xr.Dataset, name: str) -> None:
        path = folder.store_path(name)
        save(dataset, path)
        on_file(path)

    def picture(figure, stem: str, caption: str) -> Picture:
        names = folder.write_figure(figure, stem)
        return Picture(names["png"], names["pdf"], caption)

    def at_stage(number: int, name: str, position: int, count: int):
        return stage(f"[{number}/{len(STAGES)}] {STAGES[number - 1]} {name} ({position}/{count})")

    def own_training(name):
        entry = entries[name]
        return train[entry["subset"]][: min(plan.gap_images, entry["n_train"])]

    def named(dataset: xr.Dataset, train_part: str | None = None) -> xr.Dataset:
        """``dataset`` with the coordinate ``image_source`` saying which shipped images it used (per split
        for the gap: the model's training half, then the test images)."""
        count = dataset.sizes["image"]
        if train_part is None:
            return dataset.assign_coords(image_source=("image", zoo.evaluation_names("test", count), SOURCE_ATTRS))
        names = [[*zoo.evaluation_names(part, int(used)), *[""] * (count - int(used))]  # "": no image there
                 for part, used in zip((train_part, "test"), dataset.images_per_split.values)]
        return dataset.assign_coords(image_source=(("split", "image"), names, SOURCE_ATTRS))

    with task(f"{TITLE} ({plan.name}), all {len(STAGES)} stages", sum(costs.values()), unit="est. s",
              enabled=progress) as advance_demo:
        # 1. generalization gap
        gaps = {}
        for position, name in enumerate(entries, 1):
            with at_stage(1, name, position, len(entries)):
                gaps[name] = gap(load(name), own_training(name), test[: plan.gap_images], list(plan.gap_sigmas),
                                 progress=progress)
            store(named(gaps[name], f"train_{entries[name]['subset']}"), f"gap-{name}.zarr")
            advance_demo(costs["gap", name])
        blocks: list[Block] = [
            Heading("Generalization gap (An et al. Fig. 2)"),
            picture(gap_figure(gaps), "gap", f"PSNR of D(y) on training and test images, {plan.gap_images} test "
                                             f"images (and as many training images, at most N) at each of "
                                             f"{len(plan.gap_sigmas)} σ."),
            Table(["checkpoint", "N", "average gap (dB)"],
                  [(name, str(entries[name]["n_train"]), f"{float(g.average_gap):.2f}") for name, g in gaps.items()])]
        advance_demo(costs["gap figure"])

        # 2. Jacobian eigenvectors, GAHB metrics, memorization diagnostics and the verdict
        rows, pictures, sources, solved = [], [], {}, {}
        images = test[: plan.jacobian_images]
        for position, name in enumerate(plan.jacobian_models, 1):
            with at_stage(2, name, position, len(plan.jacobian_models)):
                denoiser = load(name)
                method, top_k = plan.solvers[entries[name]["family"]]
                top_k = None if top_k is None else min(top_k, images[0].numel())
                training, held_out, sources[name] = memorization_images(denoiser, entries[name])
                result = jacobian(denoiser, images, list(plan.jacobian_sigmas), method=method, top_k=top_k, seed=0,
                                  progress=progress, training_images=training, held_out_images=held_out)
            solved[name] = f"{method}" + ("" if top_k is None else f", top {top_k}")
            summary = gahb_summary(result)
            store(named(result), f"jacobian-{name}.zarr")  # the store of `biasprobe jacobian`: the verdict is read from it
            pictures.append(picture(jacobian_figure(result, sigma=plan.jacobian_sigmas[1]), f"jacobian-{name}",
                                    f"{name}: test image 0 at σ = {plan.jacobian_sigmas[1]:g}."))
            rows.append(jacobian_row(name, solved[name], result, summary))
            advance_demo(costs["Jacobian", name])
        blocks += [Heading("Jacobian eigenvectors and the GAHB verdict (Figs. 1 and 3)"),
                   Text(jacobian_text(plan, images[0].numel(), solved, sources)),
                   Table(["checkpoint", "solver", "σ", "tr J", "#λ>1", "K", "ρ", "PR_Ω", "mem", "β", "verdict"],
                         [row for group in rows for row in group]), *pictures]

        # 3. attention locality
        maps = {}
        pictures = []
        for position, name in enumerate(LOCALITY_MODELS, 1):
            with at_stage(3, name, position, len(LOCALITY_MODELS)):
                maps[name] = locality(load(name), test[: plan.locality_images], list(LOCALITY_SIGMAS), save_maps=True,
                                      seed=0, progress=progress)
            store(named(maps[name]), f"locality-{name}.zarr")
            pictures.append(picture(attention_maps_figure(maps[name]), f"attention-{name}",
                                    f"{name}: attention maps of the centre query, per layer."))
            advance_demo(costs["attention", name])
        rows = []
        for name, result in maps.items():
            low = result.sel(sigma=LOCALITY_SIGMAS[0])
            early, late = low.mean_distance.sel(layer=slice(1, 6)), low.mean_distance.sel(layer=slice(7, 12))
            rows.append((name, f"{float(early.mean()):.2f}", f"{float(late.mean()):.2f}",
                         f"{float(low.local_mass.sel(window=3, layer=slice(1, 6)).mean()):.3f}"))
        blocks += [Heading("Attention locality (Fig. 4)"),
                   picture(locality_profile_figure(maps, sigma=LOCALITY_SIGMAS[0]), "locality",
                           f"Mean attention distance per layer at σ = {LOCALITY_SIGMAS[0]}, "
                           f"{plan.locality_images} test images."),
                   Table(["checkpoint", "mean attention distance, layers 1-6 (px)", "layers 7-12 (px)",
                          "3×3 mass, layers 1-6"], rows), *pictures]

        # 4. the two-model test
        with at_stage(4, " and ".join(TWO_MODELS), 1, 1):
            result = compare(load(TWO_MODELS[0]), load(TWO_MODELS[1]), test[: plan.gap_images],
                             (own_training(TWO_MODELS[0]), own_training(TWO_MODELS[1])),
                             sigma=TWO_MODEL_SIGMA, gap_sigmas=list(plan.gap_sigmas), samples=plan.compare_samples,
                             seed=0, progress=progress)
        store(result, "compare-s1-s2.zarr")
        blocks += [Heading("Two models on disjoint halves S1 and S2 (Kadkhodaie et al.)"),
                   Text(f"{plan.compare_samples} samples from the same noise: paired sample similarity "
                        f"{_number(result.sample_similarity.mean())}; top-{result.attrs['eigenspace_top']} Jacobian "
                        f"eigenspace overlap {_number(result.eigenspace_overlap)} at σ = {TWO_MODEL_SIGMA:g}."),
                   picture(comparison_figure(result, TWO_MODELS), "compare-s1-s2",
                           "Samples of the two models from the same noise, and their Jacobian eigenspaces.")]
        advance_demo(costs["two-model test"])

    made = provenance(device=device)
    minutes = (time.perf_counter() - started) / 60
    using = f", {torch.get_num_threads()} torch thread(s)" if device == "cpu" else ""
    load_average = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    blocks = [Heading(TITLE, 1),
              Text(f"Made by `biasprobe demo{' --full' if plan.name == FULL.name else ''}` (biasprobe "
                   f"{made['biasprobe_version']}, device {device}, {made['created']}) in {minutes:.1f} minutes on a "
                   f"machine with {os.cpu_count()} CPU cores{using}{load_average}. The stores beside this page hold every "
                   "number; figures are drawn from them."),
              Text(plan_text(plan)),
              Text("Checkpoint zoo: `data/checkpoints/manifest.json` (Fashion-MNIST, 32×32 grey)."), *blocks]
    index = folder.write_text("index.md", markdown(blocks))
    folder.write_text("index.html", html_page(blocks, TITLE))
    folder.finish()
    return index


def memorization_images(denoiser, entry: Mapping) -> tuple:
    """(training images, held-out images, where they came from) for the memorization diagnostics, as
    ``biasprobe jacobian`` takes them by default: the training set the checkpoint records
    (:func:`biasprobe.data.training_set`) and the first :data:`HELD_OUT_IMAGES` test images. Without
    the data set installed, the shipped images stand in (:func:`biasprobe.zoo.evaluation_images`: the
    recorded set itself for N ≤ 300, its first 300 images otherwise, and 300 test images); without a
    recorded training set, (None, None, why)."""
    from biasprobe import data

    recorded = denoiser.source.training
    if not recorded.get("data") or not recorded.get("n_train"):
        return None, None, "no training set recorded: memorization diagnostics skipped"
    try:
        name, training = data.training_set(recorded, denoiser.image_shape)
        held_out = data.held_out_set(name, denoiser.image_shape, HELD_OUT_IMAGES)
        return training, held_out, f"its recorded training set ({name}, N = {len(training)})"
    except InputError:
        n_train = int(recorded["n_train"])
        training = zoo.evaluation_images(f"train_{entry['subset']}")[:n_train]
        part = "its recorded training set" if len(training) == n_train else f"the first {len(training)} of its N = {n_train} training images"
        return training, zoo.evaluation_images("test"), f"{part} (shipped; {recorded['data']} is not installed)"


def jacobian_row(name: str, solver: str, result: xr.Dataset, summary: xr.Dataset) -> list[tuple[str, ...]]:
    """Rows of the page's Jacobian table, one per σ: the verdict and what decided it, from
    :func:`~biasprobe.analyses.harmonic.gahb_summary` (as ``biasprobe jacobian`` prints them)."""
    from biasprobe.analyses.harmonic import verdict_line

    rows = []
    for s, sigma in enumerate(summary.sigma.values):
        at = summary.isel(sigma=s)
        memorized = _number(at.memorization_score.mean(), ".2f") if "memorization_score" in at else "–"
        rows.append((name if s == 0 else "", solver if s == 0 else "", f"{float(sigma):g}",
                     f"{float(at.effective_dimension.mean()):.1f}", f"{float(at.count_above_one.mean()):g}",
                     f"{float(at.top.mean()):g}" + ("*" if cut_short(result, at) else ""), _number(at.mean_harmonicity, ".2f"),
                     _number(at.mean_participation), memorized, _number(at.dimension_trend.mean(), ".2f"),
                     verdict_line(summary, s)))
    return rows


def cut_short(result: xr.Dataset, summary: xr.Dataset) -> bool:
    """Whether K, the eigenvectors judged, was limited by the stored top-k rather than by the verdict's
    rule (K < ⌊d/16⌋ with every stored rank after the #λ>1 skipped ones used), at any image."""
    d = int(result.attrs["dimension"])
    room = result.sizes["rank"] - summary.count_above_one
    return bool(((summary.top < d // 16) & (summary.top >= room) & (result.sizes["rank"] < d)).any())


def jacobian_text(plan: DemoPlan, d: int, solved: Mapping[str, str], sources: Mapping[str, str]) -> str:
    """What the Jacobian stage ran, and where each checkpoint's memorization diagnostics came from."""
    data = "; ".join(f"{name}: {source}" for name, source in sources.items())
    return (f"{_images(plan.jacobian_images).capitalize()} at σ = {', '.join(f'{s:g}' for s in plan.jacobian_sigmas)} (d = {d}), computed and judged as "
            f"`biasprobe jacobian` does (verdict per σ: the most frequent category over the images, with the counts; "
            f"K eigenvectors judged after the #λ>1 skipped; ρ harmonicity, PR_Ω participation, mem the memorization "
            f"score, β the dimension trend over the {len(plan.jacobian_sigmas)} σ; K marked * where a matrix-free top-k "
            f"left fewer than the ⌊d/16⌋ = {d // 16} the dense solver could judge). Memorization diagnostics from "
            f"{data}.")


def _images(count: int) -> str:
    return "one test image" if count == 1 else f"{count} test images"


def plan_text(plan: DemoPlan) -> str:
    """One paragraph: what this run computed, and how to run the other plan."""
    solvers = ", ".join(f"{family} {method}" + ("" if top_k is None else f" top-{top_k}")
                        for family, (method, top_k) in plan.solvers.items())
    ran = (f"This is the {plan.name} demo: gap on {plan.gap_images} test images at {len(plan.gap_sigmas)} σ; Jacobians "
           f"of {_images(plan.jacobian_images)} at {len(plan.jacobian_sigmas)} σ ({solvers}) of "
           f"{', '.join(plan.jacobian_models)}; attention on "
           f"{plan.locality_images} test images at {len(LOCALITY_SIGMAS)} σ; the two-model test with "
           f"{plan.compare_samples} samples.")
    if plan.name == QUICK.name:
        return ran + (f" `biasprobe demo --full` runs the long version ({FULL.gap_images} gap images at "
                      f"{len(FULL.gap_sigmas)} σ, {FULL.jacobian_images} Jacobian images, every Jacobian dense); "
                      "`reports/demo/` in the repository holds a gallery of it.")
    return ran


def work(plan: DemoPlan, entries: Mapping[str, Mapping]) -> dict:
    """Estimated seconds of each part of the demo on the reference CPU (2 cores, otherwise idle), from
    :data:`SECONDS`: the weights of the whole demo's progress line, whose time left scales them to
    the speed measured so far."""
    def family(name):
        return "dit" if entries[name]["family"] == "dit" else "unet-bf"

    jacobian_pairs = plan.jacobian_images * len(plan.jacobian_sigmas)
    costs = {("gap", name): SECONDS["gap", family(name)] * plan.gap_images * len(plan.gap_sigmas) for name in entries}
    costs["gap figure"] = SECONDS["figure"]
    for name in plan.jacobian_models:
        method = plan.solvers[family(name)][0]
        costs["Jacobian", name] = SECONDS["Jacobian", family(name), method] * jacobian_pairs + SECONDS["figure"]
    for name in LOCALITY_MODELS:
        costs["attention", name] = SECONDS["attention"] * plan.locality_images + SECONDS["figure"]
    costs["two-model test"] = SECONDS["two-model test"] * plan.compare_samples + SECONDS["figure"]
    return costs


SECONDS = {
    ("gap", "unet-bf"): 0.02, ("gap", "dit"): 0.05,
    ("Jacobian", "unet-bf", "dense"): 5.0, ("Jacobian", "unet-bf", "randomized"): 5.0,
    ("Jacobian", "unet-bf", "lanczos"): 30.0,
    ("Jacobian", "dit", "dense"): 120.0, ("Jacobian", "dit", "randomized"): 37.0, ("Jacobian", "dit", "lanczos"): 100.0,
    "attention": 0.5, "two-model test": 3.5, "figure": 2.0,
}
"""Seconds per unit of work on the 2-core CPU of docs/benchmarks.md (one thread, load about 2; checkpoint
loading included): per (image, σ) of the gap and of the Jacobian (randomized: top-96 at d = 1024), per
image of the attention, per sample of the two-model test, per figure. Only their ratios matter: the
time left is scaled to the speed measured so far."""


SOURCE_ATTRS = {"long_name": "which shipped image (biasprobe.zoo.evaluation_images: the first 300 Fashion-MNIST "
                             "images of S1, S2 and the test split, seed 0)"}


def _number(value, spec: str = ".3f") -> str:
    """A measured number for the page; NaN in words."""
    value = float(value)
    return "undefined" if np.isnan(value) else format(value, spec)
