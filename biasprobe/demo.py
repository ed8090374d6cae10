"""The main job on shipped data: every analysis on the checkpoint zoo, as stores, figures and an index.

``biasprobe demo`` runs it. On the zoo (bias-free UNets and DiTs trained on N = 10 … 10⁴
Fashion-MNIST images, see ``data/checkpoints/manifest.json``) it measures

1. the generalization gap of every checkpoint (An et al. Fig. 2),
2. the Jacobian eigenvectors and GAHB metrics of UNets and DiTs at small and large N (Figs. 1, 3),
3. attention locality of the DiTs, global and local (Fig. 4),
4. the two-model test of Kadkhodaie et al. (UNets trained on disjoint halves S1 and S2),

and writes ``index.md`` with the numbers beside the figures.
"""

from __future__ import annotations

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
from biasprobe.store import save

SIGMA = 0.1
GAP_SIGMAS = np.geomspace(0.02, 0.5, 8).tolist()
JACOBIAN_MODELS = ("unet-bf-n10", "unet-bf-n10000-s1", "dit-n10", "dit-n10000")
LOCALITY_MODELS = ("dit-n10", "dit-n1000", "dit-n10000", "dit-local-n1000")


STAGES = ("gap", "Jacobian", "attention", "two-model test")


def run_demo(out: str | Path = "biasprobe-demo", *, k: int = 100, device: str = "cpu", progress: bool = True) -> Path:
    """Run the demo into folder ``out`` and return the path of its ``index.md``.

    With ``progress``, every stage reports as ``[k/4] STAGE CHECKPOINT (i/n)`` and every file
    written gets a ``wrote FILE`` line."""
    from biasprobe.figures.comparison import comparison_figure
    from biasprobe.figures.generalization import gap_figure
    from biasprobe.figures.jacobian import jacobian_figure
    from biasprobe.figures.locality import attention_maps_figure, locality_profile_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = {entry["name"]: entry for entry in zoo.manifest()}
    test = zoo.evaluation_images("test")[:k]
    train = {"s1": zoo.evaluation_images("train_s1"), "s2": zoo.evaluation_images("train_s2")}
    from biasprobe.store import provenance

    made = provenance(device=device)
    lines = ["# biasprobe demo", "",
             f"Made by `biasprobe demo` (biasprobe {made['biasprobe_version']}, device {device}, {made['created']}); "
             "the stores beside this file hold every number.", "",
             "Checkpoint zoo: `data/checkpoints/manifest.json` (Fashion-MNIST, 32×32 grey).", ""]

    def load(name):
        return zoo.load_checkpoint(name, device=device)

    def tell(path: Path) -> None:
        if progress:
            note(f"wrote {path}")

    def store(dataset: xr.Dataset, path: Path) -> None:
        save(dataset, path)
        tell(path)

    def draw(figure, path: Path, dpi: int = 110) -> None:
        figure.savefig(path, dpi=dpi)
        tell(path)

    def at(number: int, name: str, position: int, count: int):
        return stage(f"[{number}/{len(STAGES)}] {STAGES[number - 1]} {name} ({position}/{count})")

    def own_training(name):
        entry = entries[name]
        return train[entry["subset"]][: min(k, entry["n_train"])]

    # 1. generalization gap
    gaps = {}
    for position, name in enumerate(entries, 1):
        with at(1, name, position, len(entries)):
            gaps[name] = gap(load(name), own_training(name), test, GAP_SIGMAS, progress=progress)
        store(gaps[name], out / f"gap-{name}.zarr")
    draw(gap_figure(gaps), out / "gap.png", dpi=120)
    lines += ["## Generalization gap (An et al. Fig. 2)", "", "![gap](gap.png)", "",
              "| checkpoint | N | average gap (dB) |", "| --- | --- | --- |"]
    lines += [f"| {name} | {entries[name]['n_train']} | {float(g.average_gap):.2f} |" for name, g in gaps.items()]

    # 2. Jacobian eigenvectors and GAHB metrics
    lines += ["", f"## Jacobian eigenvectors at σ = {SIGMA} (Figs. 1 and 3)", "",
              "| checkpoint | tr J | harmonicity | participation | adaptivity | verdict |", "| --- | --- | --- | --- | --- | --- |"]
    for position, name in enumerate(JACOBIAN_MODELS, 1):
        with at(2, name, position, len(JACOBIAN_MODELS)):
            result = jacobian(load(name), test[:2], [SIGMA], seed=0, progress=progress)
        summary = gahb_summary(result)
        store(xr.merge([result, summary], compat="override", join="outer"), out / f"jacobian-{name}.zarr")
        draw(jacobian_figure(result), out / f"jacobian-{name}.png")
        lines.append(f"| {name} | {float(result.effective_dimension.mean()):.1f} | "
                     f"{float(summary.mean_harmonicity[0]):.2f} | {float(summary.mean_participation[0]):.3f} | "
                     f"{float(summary.adaptivity[0]):.2f} | {summary.verdict.values[0]!s} |")
    lines += [""] + [f"![{name}](jacobian-{name}.png)" for name in JACOBIAN_MODELS]

    # 3. attention locality
    maps = {}
    for position, name in enumerate(LOCALITY_MODELS, 1):
        with at(3, name, position, len(LOCALITY_MODELS)):
            maps[name] = locality(load(name), test[:8], [0.05, 0.2], save_maps=True, seed=0, progress=progress)
        store(maps[name], out / f"locality-{name}.zarr")
        draw(attention_maps_figure(maps[name]), out / f"attention-{name}.png")
    draw(locality_profile_figure(maps, sigma=0.05), out / "locality.png", dpi=120)
    lines += ["", "## Attention locality (Fig. 4)", "", "![locality](locality.png)", "",
              "| checkpoint | mean attention distance, layers 1-6 (px) | layers 7-12 (px) | 3×3 mass, layers 1-6 |",
              "| --- | --- | --- | --- |"]
    for name, result in maps.items():
        at = result.sel(sigma=0.05)
        early, late = at.mean_distance.sel(layer=slice(1, 6)), at.mean_distance.sel(layer=slice(7, 12))
        lines.append(f"| {name} | {float(early.mean()):.2f} | {float(late.mean()):.2f} | "
                     f"{float(at.local_mass.sel(window=3, layer=slice(1, 6)).mean()):.3f} |")
    lines += [""] + [f"![{name}](attention-{name}.png)" for name in LOCALITY_MODELS]

    # 4. the two-model test
    pair = ("unet-bf-n10000-s1", "unet-bf-n10000-s2")
    with at(4, " and ".join(pair), 1, 1):
        result = compare(load(pair[0]), load(pair[1]), test, (own_training(pair[0]), own_training(pair[1])),
                         sigma=SIGMA, samples=8, seed=0, progress=progress)
    store(result, out / "compare-s1-s2.zarr")
    draw(comparison_figure(result, pair), out / "compare-s1-s2.png")
    lines += ["", "## Two models on disjoint halves S1 and S2 (Kadkhodaie et al.)", "",
              f"Paired sample similarity {float(result.sample_similarity.mean()):.3f}; "
              f"top-{result.attrs['eigenspace_top']} Jacobian eigenspace overlap "
              f"{float(result.eigenspace_overlap):.3f}.", "", "![compare](compare-s1-s2.png)", ""]
    index = out / "index.md"
    index.write_text("\n".join(lines) + "\n")
    tell(index)
    return index
