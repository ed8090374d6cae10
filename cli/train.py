"""``biasprobe train``: train a denoiser on N images of a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.checkpoints import FAMILY_NAMES
from biasprobe_cli.options import (
    OldOutput,
    training_flags,
    checkpoint_option,
    checkpoint_to_write,
    parse_numbers,
    parse_windows,
    resolve_device,
)
from biasprobe_cli.output import Report

from biasprobe.errors import InputError
from biasprobe.training.settings import USER_SETTINGS

SETTINGS = {setting.parameter: setting for setting in USER_SETTINGS}
"""The training settings by parameter name."""


def train(
    family: Annotated[str, typer.Argument(help=f"Model family: {FAMILY_NAMES}.")],
    data_name: Annotated[str, typer.Option("--data", help="Data set: fashion-mnist, natural-patches, c-alpha, "
                                           "discs, folder:PATH or npz:PATH.")],
    n_train: Annotated[str, typer.Option("--n-train", help="Number of training images N (a nested, seeded subset); "
                                         "several, comma-separated, train several models.")],
    checkpoint: checkpoint_option("Checkpoint to write (.pt or .safetensors); for several models a pattern with "
                                  "{n} and/or {seed}, e.g. dit-n{n}-s{seed}.safetensors.") = None,
    preset: Annotated[str | None, typer.Option(help="Size preset (see `biasprobe new --help`).")] = None,
    windows: Annotated[str | None, typer.Option(help="DiT only: k×k windows of the first layers, e.g. 3,5,7.")] = None,
    subset: Annotated[str, typer.Option(help="s1 or s2: disjoint halves of the training split (two-model test).")] = "s1",
    image_size: Annotated[int, typer.Option(help="Image height and width.")] = 32,
    channels: Annotated[int | None, typer.Option(help="Image channels; default: the data set's own.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where fashion-mnist's files are, if not installed by apt.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (bf16 autocast on CUDA).")] = "auto",
    seed: Annotated[str, typer.Option(help="Seed of initialisation, data subset, batches and noise; several, "
                                      "comma-separated, train several models.")] = "0",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its saved state (CHECKPOINT.train-state.pt), "
                                         "to the --steps given now; --no-resume starts again from step 0 and "
                                         "replaces CHECKPOINT.")] = True,
    init: Annotated[Path | None, typer.Option(help="Warm restart when no saved state remains: continue the run of "
                                              "this checkpoint (same family, config, data and settings; {n}/{seed} "
                                              "as in --checkpoint; may be --checkpoint itself) from its weights and step "
                                              "count, with a fresh optimizer, to --steps in all.")] = None,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the network: same function, faster "
                                          "GPU steps after a warm-up of tens of seconds.")] = False,
    compile_mode: Annotated[str | None, typer.Option(help=SETTINGS["compile"].help)] = None,
    compile_scope: Annotated[str | None, typer.Option(help=SETTINGS["compile_scope"].help)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint at --checkpoint that no "
                                            "resumable state belongs to.")] = False,
    output: OldOutput = None,
    **settings,
) -> None:
    """Train a denoiser with the DDPM ε-objective (unet-ddpm, dit) or the blind residual objective (unet-bf).

    The checkpoint holds the EMA weights and records the data set, N, subset and all settings, so
    `biasprobe gap` finds the training data on its own. An interrupted run (Ctrl-C, --max-minutes)
    keeps its state beside CHECKPOINT and continues where it stopped, to the --steps given now; a
    finished run removes its state, and CHECKPOINT is then never replaced (choose another -o, or
    --overwrite / --no-resume to train from step 0 and replace it). Launch under `torchrun` for
    several GPUs. Speed: see README (2–6 images/s for the small DiT on a 2-core CPU).

    Several N and/or seeds train several models of the same architecture at once: stacked into one
    vmapped step (each model's result equals training it alone), or one after another for networks
    with dropout. --compile, --compile-mode, --compile-scope and --channels-last apply to a single model.
    """
    # --steps, --batch, --lr, --ema, --sigma-max, --checkpoint-every, --max-minutes, --weights and
    # --channels-last come from the training settings' schema (training_flags, below) into ``settings``
    steps = settings["steps"]
    import torch

    from biasprobe import data
    from biasprobe.checkpoints import SUFFIXES
    from biasprobe.models import from_preset
    from biasprobe.training import TrainingConfig, process_rank, stackable, state_path, train_stacked
    from biasprobe.training import train as run_training
    from biasprobe.validation import count, output_file

    output = checkpoint_to_write(checkpoint, output)
    report = Report()
    main = process_rank() == 0  # under torchrun only rank 0 reports
    count(settings["batch_size"], "batch")  # the flag is --batch; FLAGS names batch_size --batch-size (analyses)
    count(image_size, "image_size")
    if channels is not None:
        count(channels, "channels")
    runs = [(count(n, "n_train"), count(s, "seed", minimum=0))
            for n in parse_numbers(n_train, "n-train", int) for s in parse_numbers(seed, "seed", int)]
    outputs = [Path(str(output).format(n=n, seed=s)) for n, s in runs]
    inits = None if init is None else [Path(str(init).format(n=n, seed=s)) for n, s in runs]
    if len(set(outputs)) < len(runs):
        raise InputError("several models need an output pattern with {n} and/or {seed}, e.g. -o dit-n{n}-s{seed}.pt")
    for k, path in enumerate(outputs):  # every output is checked before any work starts
        saved = state_path(path)
        continued = inits is not None and (not path.is_file() or path.resolve() == inits[k].resolve())
        if resume and saved.exists():
            if main:
                done = int(torch.load(saved, map_location="cpu", weights_only=True, mmap=True)["step"])
                report.say(f"continuing {path} from step {done} (its saved state {saved}) to {steps} steps")
        elif continued:
            if main:
                report.say(f"warm restart: {path} continues the run of {inits[k]} from its weights and steps")
        elif path.is_file() and resume and not overwrite:
            raise InputError(f"{path} already exists ({_finished(path)}) and has no saved state to continue from: "
                             "choose another -o, or pass --overwrite (or --no-resume) to train from step 0 and "
                             "replace it")
        elif path.is_file() and main:
            report.say(f"training from step 0; {path} will be replaced")
        output_file(path, "checkpoint", suffixes=SUFFIXES, overwrite=True)
        output_file(saved, "checkpoint")
    from biasprobe.training.loop import COMPILE_MODES, COMPILE_SCOPES

    # refused also where several runs ignore them
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise InputError(f"--compile-mode takes {', '.join(COMPILE_MODES)}, not {compile_mode!r}")
    if compile_scope is not None and compile_scope not in COMPILE_SCOPES:
        raise InputError(f"--compile-scope takes {', '.join(COMPILE_SCOPES)}, not {compile_scope!r}")
    single = len(runs) == 1
    config = TrainingConfig(**{**settings, "seed": runs[0][1],
                               "compile": (compile_mode or compile or compile_scope is not None) if single else False,
                               "compile_scope": (compile_scope or "network") if single else "network",
                               "channels_last": settings["channels_last"] and single})
    target = resolve_device(device)
    networks, image_sets = [], []
    for n, s in runs:
        image_sets.append(data.load(data_name, "train", n, size=image_size, channels=channels, subset=subset,
                                    seed=s, data_dir=data_dir))
        torch.manual_seed(s)
        networks.append(from_preset(family, preset, image_size=image_size, channels=image_sets[-1].shape[1],
                                    windows=parse_windows(windows))[0])
    metadata = {"data": data_name, "subset": subset, "preset": preset, "image_size": image_size}
    if len(runs) == 1:
        results = [run_training(networks[0], image_sets[0], outputs[0], config, metadata=metadata, device=target,
                                resume=resume, init=inits and inits[0])]
    elif stackable(networks[0]):
        report.say(f"training {len(runs)} models stacked (one vmapped step for all)")
        results = train_stacked(networks, image_sets, outputs, config, seeds=[s for _, s in runs],
                                metadata=[metadata] * len(runs), device=target, resume=resume, init=inits)
    else:
        report.say(f"{family} has dropout, which cannot be stacked exactly: training {len(runs)} models one at a time")
        results = [run_training(network, images, path, TrainingConfig(**{**vars(config), "seed": s}),
                                metadata=metadata, device=target, resume=resume, init=inits and inits[k])
                   for k, (network, images, path, (_, s)) in enumerate(zip(networks, image_sets, outputs, runs))]
    if results[0].rank != 0:  # under torchrun only rank 0 wrote the checkpoints and reports
        return
    for result, images, (_, s) in zip(results, image_sets, runs):
        report.wrote(result.output, f"{family} trained {result.steps_done}/{steps} steps on N = {len(images)} "
                                    f"{data_name} ({subset}, seed {s}); loss {result.losses[0]:.4g} → {result.losses[-1]:.4g}")
        if result.steps_done < steps:
            report.say(f"stopped early; run the same command again to continue from step {result.steps_done}")


def _finished(output: Path) -> str:
    """What the checkpoint at ``output`` holds, in words ("a finished 50-step run")."""
    import biasprobe as bp

    try:
        training = bp.load(output).source.training
    except Exception:  # noqa: BLE001 - any file there is kept; only the words change
        return "not a checkpoint biasprobe reads"
    steps = training.get("steps_done", training.get("steps"))
    return f"a finished {steps}-step run" if steps else "an untrained checkpoint"


training_flags(train, declared=("seed", "compile", "compile_scope"))  # several seeds; --compile and --compile-mode
