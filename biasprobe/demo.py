"""The main job on shipped data: every analysis on the checkpoint zoo, as stores, figures and an index.

``biasprobe demo`` runs it. On the zoo (bias-free UNets and DiTs trained on N = 10 … 10⁴
Fashion-MNIST images, see ``data/checkpoints/manifest.json``) it measures

1. the generalization gap of every checkpoint (An et al. Fig. 2),
2. the Jacobian eigenvectors and GAHB metrics of UNets and DiTs at small and large N (Figs. 1, 3),
3. attention locality of the DiTs, global and local (Fig. 4),
4. the two-model test of Kadkhodaie et al. (UNets trained on disjoint halves S1 and S2),

and writes ``index.md`` and ``index.html`` with the numbers beside the figures (PNG inline, PDF
linked) and the wall time of the run. The output folder is claimed as a report folder
(:class:`~biasprobe.reports.folder.ReportFolder`): new, empty, or one an earlier demo or report
wrote; a user's files in it are never replaced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from biasprobe import zoo
from biasprobe.analyses.comparison import compare
from biasprobe.analyses.generalization import gap
from biasprobe.analyses.harmonic import gahb_summary
from biasprobe.analyses.jacobian import jacobian
from biasprobe.analyses.locality import locality
from biasprobe.progress import note, stage
from biasprobe.reports.folder import ReportFolder
from biasprobe.reports.page import Block, Heading, Picture, Table, Text, html_page, markdown
from biasprobe.store import save

SIGMA = 0.1
GAP_SIGMAS = np.geomspace(0.02, 0.5, 8).tolist()
JACOBIAN_MODELS = ("unet-bf-n10", "unet-bf-n10000-s1", "dit-n10", "dit-n10000")
LOCALITY_MODELS = ("dit-n10", "dit-n1000", "dit-n10000", "dit-local-n1000")
LOCALITY_SIGMAS = (0.05, 0.2)
TWO_MODELS = ("unet-bf-n10000-s1", "unet-bf-n10000-s2")
STAGES = ("gap", "Jacobian", "attention", "two-model test")
TITLE = "biasprobe demo"


def run_demo(out: str | Path = "biasprobe-demo", *, k: int = 100, device: str = "cpu", progress: bool = True,
             on_file: Callable[[Path], None] | None = None) -> Path:
    """Run the demo into folder ``out`` and return the path of its ``index.md``.

    With ``progress``, every stage reports as ``[k/4] STAGE CHECKPOINT (i/n)``; ``on_file`` hears of
    every file and store written (by default, with ``progress``, a ``wrote FILE`` line). Every name
    the demo writes is checked against ``out`` before any work starts."""
    from biasprobe.figures.comparison import comparison_figure
    from biasprobe.figures.generalization import gap_figure
    from biasprobe.figures.jacobian import jacobian_figure
    from biasprobe.figures.locality import attention_maps_figure, locality_profile_figure
    from biasprobe.store import provenance

    started = time.perf_counter()
    if on_file is None:
        on_file = (lambda path: note(f"wrote {path}")) if progress else (lambda path: None)
    entries = {entry["name"]: entry for entry in zoo.manifest()}
    stores = ([f"gap-{name}.zarr" for name in entries] + [f"jacobian-{name}.zarr" for name in JACOBIAN_MODELS]
              + [f"locality-{name}.zarr" for name in LOCALITY_MODELS] + ["compare-s1-s2.zarr"])
    figures = (["gap", "locality", "compare-s1-s2"] + [f"jacobian-{name}" for name in JACOBIAN_MODELS]
               + [f"attention-{name}" for name in LOCALITY_MODELS])
    folder = ReportFolder(out, on_file)
    folder.check([*stores, *(f"{stem}.{fmt}" for stem in figures for fmt in ("png", "pdf")), "index.md", "index.html"])
    test = zoo.evaluation_images("test")[:k]
    train = {"s1": zoo.evaluation_images("train_s1"), "s2": zoo.evaluation_images("train_s2")}

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
        return train[entry["subset"]][: min(k, entry["n_train"])]

    def named(dataset: xr.Dataset, train_part: str | None = None) -> xr.Dataset:
        """``dataset`` with the coordinate ``image_source`` saying which shipped images it used (per split
        for the gap: the model's training half, then the test images)."""
        count = dataset.sizes["image"]
        if train_part is None:
            return dataset.assign_coords(image_source=("image", zoo.evaluation_names("test", count), SOURCE_ATTRS))
        names = [[*zoo.evaluation_names(part, int(used)), *[""] * (count - int(used))]  # "": no image there
                 for part, used in zip((train_part, "test"), dataset.images_per_split.values)]
        return dataset.assign_coords(image_source=(("split", "image"), names, SOURCE_ATTRS))

    # 1. generalization gap
    gaps = {}
    for position, name in enumerate(entries, 1):
        with at_stage(1, name, position, len(entries)):
            gaps[name] = gap(load(name), own_training(name), test, GAP_SIGMAS, progress=progress)
        store(named(gaps[name], f"train_{entries[name]['subset']}"), f"gap-{name}.zarr")
    blocks: list[Block] = [
        Heading("Generalization gap (An et al. Fig. 2)"),
        picture(gap_figure(gaps), "gap", f"PSNR of D(y) on training and test images, {k} test images per σ."),
        Table(["checkpoint", "N", "average gap (dB)"],
              [(name, str(entries[name]["n_train"]), f"{float(g.average_gap):.2f}") for name, g in gaps.items()])]

    # 2. Jacobian eigenvectors and GAHB metrics
    rows, pictures = [], []
    for position, name in enumerate(JACOBIAN_MODELS, 1):
        with at_stage(2, name, position, len(JACOBIAN_MODELS)):
            result = jacobian(load(name), test[:2], [SIGMA], seed=0, progress=progress)
        summary = gahb_summary(result)
        store(named(xr.merge([result, summary], compat="override", join="outer")), f"jacobian-{name}.zarr")
        pictures.append(picture(jacobian_figure(result), f"jacobian-{name}", f"{name}: test image 0 at σ = {SIGMA}."))
        rows.append((name, f"{float(result.effective_dimension.mean()):.1f}",
                     f"{float(summary.mean_harmonicity[0]):.2f}", f"{float(summary.mean_participation[0]):.3f}",
                     f"{float(summary.adaptivity[0]):.2f}", str(summary.verdict.values[0])))
    blocks += [Heading(f"Jacobian eigenvectors at σ = {SIGMA} (Figs. 1 and 3)"),
               Text("Two test images, dense Jacobian (d = 1024); numbers are means over the images."),
               Table(["checkpoint", "tr J", "harmonicity", "participation", "adaptivity", "verdict"], rows), *pictures]

    # 3. attention locality
    maps = {}
    pictures = []
    for position, name in enumerate(LOCALITY_MODELS, 1):
        with at_stage(3, name, position, len(LOCALITY_MODELS)):
            maps[name] = locality(load(name), test[:8], list(LOCALITY_SIGMAS), save_maps=True, seed=0,
                                  progress=progress)
        store(named(maps[name]), f"locality-{name}.zarr")
        pictures.append(picture(attention_maps_figure(maps[name]), f"attention-{name}",
                                f"{name}: attention maps of the centre query, per layer."))
    rows = []
    for name, result in maps.items():
        low = result.sel(sigma=LOCALITY_SIGMAS[0])
        early, late = low.mean_distance.sel(layer=slice(1, 6)), low.mean_distance.sel(layer=slice(7, 12))
        rows.append((name, f"{float(early.mean()):.2f}", f"{float(late.mean()):.2f}",
                     f"{float(low.local_mass.sel(window=3, layer=slice(1, 6)).mean()):.3f}"))
    blocks += [Heading("Attention locality (Fig. 4)"),
               picture(locality_profile_figure(maps, sigma=LOCALITY_SIGMAS[0]), "locality",
                       f"Mean attention distance per layer at σ = {LOCALITY_SIGMAS[0]}, 8 test images."),
               Table(["checkpoint", "mean attention distance, layers 1-6 (px)", "layers 7-12 (px)",
                      "3×3 mass, layers 1-6"], rows), *pictures]

    # 4. the two-model test
    with at_stage(4, " and ".join(TWO_MODELS), 1, 1):
        result = compare(load(TWO_MODELS[0]), load(TWO_MODELS[1]), test,
                         (own_training(TWO_MODELS[0]), own_training(TWO_MODELS[1])),
                         sigma=SIGMA, samples=8, seed=0, progress=progress)
    store(result, "compare-s1-s2.zarr")
    blocks += [Heading("Two models on disjoint halves S1 and S2 (Kadkhodaie et al.)"),
               Text(f"Paired sample similarity {_number(result.sample_similarity.mean())}; "
                    f"top-{result.attrs['eigenspace_top']} Jacobian eigenspace overlap "
                    f"{_number(result.eigenspace_overlap)}."),
               picture(comparison_figure(result, TWO_MODELS), "compare-s1-s2",
                       "Samples of the two models from the same noise, and their Jacobian eigenspaces.")]

    made = provenance(device=device)
    minutes = (time.perf_counter() - started) / 60
    load_average = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    blocks = [Heading(TITLE, 1),
              Text(f"Made by `biasprobe demo` (biasprobe {made['biasprobe_version']}, device {device}, "
                   f"{made['created']}) in {minutes:.1f} minutes on a machine with {os.cpu_count()} CPU cores"
                   f"{load_average}. The stores beside this page hold every number; figures are drawn from them."),
              Text("Checkpoint zoo: `data/checkpoints/manifest.json` (Fashion-MNIST, 32×32 grey)."), *blocks]
    index = folder.write_text("index.md", markdown(blocks))
    folder.write_text("index.html", html_page(blocks, TITLE))
    folder.finish()
    return index


SOURCE_ATTRS = {"long_name": "which shipped image (biasprobe.zoo.evaluation_images: the first 300 Fashion-MNIST "
                             "images of S1, S2 and the test split, seed 0)"}


def _number(value, spec: str = ".3f") -> str:
    """A measured number for the page; NaN in words."""
    value = float(value)
    return "undefined" if np.isnan(value) else format(value, spec)
