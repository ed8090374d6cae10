"""``biasprobe sweep``: one analysis over many checkpoints into one store, and training recipes,
on dask.distributed (a local cluster by default, any scheduler by address)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.help import CONTEXT, MARKUP, CommandGroup
from biasprobe_cli.options import deprecated_flag, parse_numbers, parse_windows
from biasprobe_cli.output import Column, Report, number

from biasprobe.errors import InputError

app = typer.Typer(
    rich_markup_mode=MARKUP,
    context_settings=CONTEXT,
    cls=CommandGroup,
    help="Run an analysis over many checkpoints into one store (a `checkpoint` dimension), or train the models "
    "of a recipe, on dask.distributed: a local cluster (one worker per GPU, else per core) or --scheduler "
    "ADDRESS. An interrupted sweep resumes where it stopped when run again.",
    no_args_is_help=True,
)

Checkpoints = Annotated[list[Path], typer.Argument(help="Checkpoints to analyse (each named by its file stem).")]
Workers = Annotated[
    int | None,
    typer.Option(help="Local cluster size: worker processes (default one per GPU, else one per CPU core); "
                 "0 runs the tasks one after another in this process."),
]
Scheduler = Annotated[
    str | None,
    typer.Option(help="Address (tcp://host:8786) or scheduler file of a running dask scheduler to use instead "
                 "of a local cluster (e.g. dask-jobqueue on SLURM)."),
]
PerGpu = Annotated[int, typer.Option(help="Local workers per GPU (several small models share a GPU); default --workers.")]
Device = Annotated[str, typer.Option(help="auto (each worker its own GPU, else the CPU), cpu or cuda.")]
Seed = Annotated[int, typer.Option(help="Seed of the noise draws (the same for every checkpoint).")]
Sigma = Annotated[str | None, typer.Option(help="Noise levels σ on the [0, 1] scale, comma-separated.")]
Steps = Annotated[str | None, typer.Option("--t", help="Noise levels as diffusion steps t instead of --sigma.")]
Images = Annotated[
    list[Path] | None,
    typer.Option("--image", help="Clean image (PNG/JPEG/.npy); repeat for several. Or --data."),
]
Data = Annotated[str | None, typer.Option(help="Data set whose test split gives the clean images (e.g. fashion-mnist).")]
Count = Annotated[int, typer.Option("--n", help="How many images of --data.")]
DataDir = Annotated[Path | None, typer.Option(help="Folder of on-disk data sets (fashion-mnist).")]
Resize = Annotated[bool, typer.Option(help="Resize --image files to the models' image size.")]


def _out(analysis: str):
    return Annotated[Path, typer.Option(help=f"Sweep store (default {analysis}.sweep.zarr in the current folder).")]


def _images(checkpoints: list[Path], paths: list[Path] | None, name: str | None, n: int, data_dir: Path | None,
            resize: bool):
    """The clean images at the first checkpoint's image shape: --image files or --data's test split."""
    import torch

    import biasprobe as bp
    from biasprobe import data
    from biasprobe.images import read_image

    if bool(paths) == bool(name):
        raise InputError("give the clean images with --image FILE (repeatable) or --data NAME, one of the two")
    if not checkpoints:
        raise InputError("no checkpoints to sweep")
    shape = bp.load(checkpoints[0], device="cpu").image_shape
    if paths:
        return torch.stack([read_image(path, shape, resize=resize) for path in paths])
    channels, size, _ = shape
    return data.load(name, "test", n, size=size, channels=channels, subset="all", data_dir=data_dir)


def _run(analysis: str, checkpoints: list[Path], out: Path, images, workers, scheduler, per_gpu, device, seed,
         **options) -> None:
    from biasprobe.sweeps import store as sweep_store
    from biasprobe.sweeps import sweep

    if workers is not None and workers < 0:
        raise InputError("--workers must be 0 (in this process) or more")
    report = Report()
    recorded = sweep_store.specification(out)
    if recorded is not None:
        done = int(sweep_store.completed(out).sum())
        report.say(f"resuming {out}: {done} of {len(recorded['checkpoints'])} checkpoints already written")
    sweep(analysis, checkpoints, out, images, seed=seed, device=device, workers=workers, scheduler=scheduler,
          per_gpu=per_gpu, progress=True, on_dashboard=lambda link: report.say(f"dask dashboard: {link}"), **options)
    report.wrote(out, f"{analysis} of {len(checkpoints)} checkpoints; one checkpoint's result: "
                      f"bp.sweeps.select(bp.open('{out}'), NAME)")


@app.command("jacobian")
def jacobian(
    checkpoints: Checkpoints,
    image: Images = None,
    data: Data = None,
    n: Count = 4,
    data_dir: DataDir = None,
    resize: Resize = False,
    sigma: Sigma = None,
    t: Steps = None,
    top_k: Annotated[int | None, typer.Option(help="Eigenpairs per (image, σ); default all for d ≤ 1024, else 64.")] = None,
    method: Annotated[str, typer.Option(help="auto | dense | randomized | lanczos.")] = "auto",
    differentiate: Annotated[str, typer.Option(help="The function differentiated: denoised (D) or raw (the "
                                               "network's own output).")] = "denoised",
    output: Annotated[str | None, typer.Option(hidden=True, help="Deprecated name of --differentiate.")] = None,
    precision: Annotated[str, typer.Option(help="float32, tf32 (CUDA) or bf16 network passes.")] = "float32",
    out: _out("jacobian") = Path("jacobian.sweep.zarr"),
    workers: Workers = None,
    scheduler: Scheduler = None,
    per_gpu: PerGpu = 1,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Jacobian eigendecompositions (GAHB) of every checkpoint at the same noisy images."""
    output = deprecated_flag("--output", "--differentiate", output, differentiate, "denoised")
    sigmas, steps = parse_numbers(sigma, "sigma"), parse_numbers(t, "t")
    images = _images(checkpoints, image, data, n, data_dir, resize)
    _run("jacobian", checkpoints, out, images, workers, scheduler, per_gpu, device, seed,
         sigmas=sigmas if sigmas or steps else [0.1], timesteps=steps, top_k=top_k, method=method, output=output,
         precision=precision)


@app.command("locality")
def locality(
    checkpoints: Checkpoints,
    image: Images = None,
    data: Data = None,
    n: Count = 16,
    data_dir: DataDir = None,
    resize: Resize = False,
    sigma: Sigma = None,
    t: Steps = None,
    layers: Annotated[str | None, typer.Option(help="Attention layers, 1-based, comma-separated (default all).")] = None,
    windows: Annotated[str, typer.Option(help="Odd k of the k×k neighbourhoods for the local mass.")] = "3,5,7",
    save_maps: Annotated[bool, typer.Option(help="Keep every measured layer's mean attention map.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 8,
    out: _out("locality") = Path("locality.sweep.zarr"),
    workers: Workers = None,
    scheduler: Scheduler = None,
    per_gpu: PerGpu = 1,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Attention locality of every checkpoint at the same noisy images (checkpoints with the same layers)."""
    sigmas, steps = parse_numbers(sigma, "sigma"), parse_numbers(t, "t")
    images = _images(checkpoints, image, data, n, data_dir, resize)
    _run("locality", checkpoints, out, images, workers, scheduler, per_gpu, device, seed,
         sigmas=sigmas if sigmas or steps else [0.05, 0.2], timesteps=steps, layers=parse_numbers(layers, "layers", int),
         windows=parse_windows(windows), save_maps=save_maps, batch_size=batch_size)


@app.command("gap")
def gap(
    checkpoints: Checkpoints,
    per_split: Annotated[int, typer.Option(help="Images per split K (the first K training images, K test images).")] = 300,
    sigma: Sigma = None,
    t: Steps = None,
    data_dir: DataDir = None,
    out: _out("gap") = Path("gap.sweep.zarr"),
    workers: Workers = None,
    scheduler: Scheduler = None,
    per_gpu: PerGpu = 1,
    device: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Generalization gap of every checkpoint on its own recorded training data (Fig. 2 over a zoo).

    Without --sigma/--t each model takes its default levels, which differ between scheduled and blind models: give --sigma to sweep both kinds into one store.
    """
    _run("gap", checkpoints, out, None, workers, scheduler, per_gpu, device, seed, k=per_split,
         sigmas=parse_numbers(sigma, "sigma"), timesteps=parse_numbers(t, "t"), data_dir=data_dir)


@app.command("train")
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML: [defaults] and one [[model]] per model (see docs/sweeps.md).")],
    output: Annotated[Path | None, typer.Option(help="Folder of the checkpoints (default: the recipe's `output`).")] = None,
    only: Annotated[str | None, typer.Option(help="Train only these models, comma-separated names, started in "
                                                  "this order.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop each model after this many minutes of this run; "
                                                      "running the recipe again resumes it.")] = None,
    compile_mode: Annotated[str | None, typer.Option(help="torch.compile mode for this run, replacing the recipe's "
                                                     "`compile` (none, default, reduce-overhead = CUDA graphs, "
                                                     "max-autotune, max-autotune-no-cudagraphs); recorded per model.")] = None,
    compile_scope: Annotated[str | None, typer.Option(help="What torch.compile covers for this run, replacing the "
                                                      "recipe's `compile_scope`: network, or step (the loss and "
                                                      "the EMA update too); recorded per model.")] = None,
    list_models: Annotated[bool, typer.Option("--list", help="List the recipe's models, their steps "
                                                     "done and whether each is on a plateau; train nothing.")] = False,
    manifest_only: Annotated[bool, typer.Option("--manifest", help="Rewrite OUTPUT/manifest.json from the models' "
                                                "records, completing older records (FLOPs per forward) and judging "
                                                "each loss curve (plateau); train nothing.")] = False,
    workers: Workers = None,
    scheduler: Scheduler = None,
    per_gpu: PerGpu = 1,
    device: Device = "auto",
) -> None:
    """Train every model of a recipe, one task each, and write OUTPUT/manifest.json (family, config, FLOPs
    per forward, data, N, subset, seed, steps done, warm restarts, time, card, final loss, loss change over
    the last 20 % and whether it is on a plateau, sha256).

    Each model resumes from its saved state; a model whose state is gone (only its weights landed)
    and whose steps are not all done continues by a warm restart from its weights (fresh optimizer,
    the step count and loss curve going on). Finished models are left alone; a checkpoint trained by
    another recipe entry (data, N, config, ...) is refused."""
    from biasprobe.sweeps.recipes import read_recipe, record_file, train_recipe, write_manifest
    from biasprobe.training.loop import COMPILE_SCOPES

    if compile_scope is not None and compile_scope not in COMPILE_SCOPES:
        raise InputError(f"--compile-scope takes {', '.join(COMPILE_SCOPES)}, not {compile_scope!r}")
    report = Report()
    parsed = read_recipe(recipe, output)
    if list_models:
        _list(report, parsed, record_file)
        return
    if manifest_only:
        report.wrote(write_manifest(parsed), "manifest of the recipe's checkpoints")
        return
    manifest = train_recipe(parsed, only=only.split(",") if only else None, device=device, max_minutes=max_minutes,
                            compile=compile_mode, compile_scope=compile_scope, workers=workers, scheduler=scheduler,
                            per_gpu=per_gpu, progress=True, on_dashboard=lambda link: report.say(f"dask dashboard: {link}"))
    report.wrote(manifest, "manifest of the recipe's checkpoints")


def _list(report: Report, recipe, record_file) -> None:
    import json

    from biasprobe.training.plateau import record_plateau

    models = []
    for model in recipe.models:
        path = record_file(recipe.output, model)
        record = json.loads(path.read_text()) if path.exists() else {}
        judged = record_plateau(record, path) if record.get("loss_curve") else None
        windows = ",".join(map(str, model.windows))
        models.append({"name": model.name, "model": " ".join(filter(None, (model.family, model.preset, windows))),
                       "data": f"{model.data} {model.subset}", "n": model.n, "seed": model.seed,
                       "steps": f"{record.get('steps_done', 0)}/{model.steps}",
                       "change": None if judged is None else judged.change,
                       "change_se": None if judged is None else judged.change_se,
                       "plateau": None if judged is None or judged.change is None else judged.plateau})
    columns = [Column("name", "name", left=True, no_wrap=True), Column("model", "model", left=True),
               Column("data", "data", left=True), Column("n", "N"), Column("seed", "seed"),
               Column("steps", "steps", no_wrap=True), Column("change", "Δ20%", number("+.1%"), no_wrap=True),
               Column("plateau", "flat", lambda flat: "-" if flat is None else ("yes" if flat else "no"),
                      no_wrap=True)]
    report.table("models", models, columns, title=f"{recipe.path} → {recipe.output.resolve()}",
                 caption="model: family, preset and DiT windows; data: data set and subset; steps: trained so "
                 "far / planned (from each model's record); Δ20%: change of the mean loss over the last 20 % of "
                 "the steps done against the 20 % before; flat: on a plateau, |Δ| + 2 s.e. ≤ 2 % "
                 "(docs/zoo.md)")
