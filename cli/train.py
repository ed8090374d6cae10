"""``biasprobe train``: train a denoiser on N images of a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from biasprobe_cli.checkpoints import FAMILY_NAMES
from biasprobe_cli.options import parse_windows, resolve_device
from biasprobe_cli.output import Report

from biasprobe.errors import InputError


def train(
    family: Annotated[str, typer.Argument(help=f"Model family: {FAMILY_NAMES}.")],
    data_name: Annotated[str, typer.Option("--data", help="Data set: fashion-mnist, natural-patches, c-alpha, "
                                           "discs, folder:PATH or npz:PATH.")],
    n_train: Annotated[int, typer.Option("--n-train", help="Number of training images N (a nested, seeded subset).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint to write (.pt or .safetensors).")],
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 10_000,
    preset: Annotated[str | None, typer.Option(help="Size preset (see `biasprobe new --help`).")] = None,
    windows: Annotated[str | None, typer.Option(help="DiT only: k×k windows of the first layers, e.g. 3,5,7.")] = None,
    subset: Annotated[str, typer.Option(help="s1 or s2: disjoint halves of the training split (two-model test).")] = "s1",
    image_size: Annotated[int, typer.Option(help="Image height and width.")] = 32,
    channels: Annotated[int | None, typer.Option(help="Image channels; default: the data set's own.")] = None,
    batch: Annotated[int, typer.Option(help="Global batch size (split over torchrun processes).")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-4,
    ema: Annotated[float, typer.Option(help="EMA decay of the saved weights.")] = 0.999,
    sigma_max: Annotated[float, typer.Option(help="Blind models: σ is drawn uniformly in [0, sigma_max].")] = 1.0,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (resumable state).")] = 1000,
    data_dir: Annotated[Path | None, typer.Option(help="Where fashion-mnist's files are, if not installed by apt.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop early after this many minutes (resumable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (bf16 autocast on CUDA).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data subset, batches and noise.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its saved state (OUTPUT.train-state.pt), "
                                         "to the --steps given now; --no-resume starts again from step 0 and "
                                         "replaces OUTPUT.")] = True,
) -> None:
    """Train a denoiser with the DDPM ε-objective (unet-ddpm, dit) or the blind residual objective (unet-bf).

    The checkpoint holds the EMA weights and records the data set, N, subset and all settings, so
    `biasprobe gap` finds the training data on its own. An interrupted run (Ctrl-C, --max-minutes)
    keeps its state beside OUTPUT and continues where it stopped, to the --steps given now; a
    finished run removes its state, and OUTPUT is then never replaced (choose another -o). Launch
    under `torchrun` for several GPUs. Speed: see README (2–6 images/s for the small DiT on a 2-core CPU).
    """
    import torch

    from biasprobe import data
    from biasprobe.models import from_preset
    from biasprobe.training import TrainingConfig, process_rank, state_path
    from biasprobe.training import train as run_training

    report = Report()
    saved = state_path(output)
    main = process_rank() == 0  # under torchrun only rank 0 reports
    if resume and saved.exists():
        if main:
            done = int(torch.load(saved, map_location="cpu", weights_only=True, mmap=True)["step"])
            report.say(f"continuing {output} from step {done} (its saved state {saved}) to {steps} steps")
    elif output.exists() and resume:
        raise InputError(f"{output} already exists ({_finished(output)}) and has no saved state to continue from: "
                         "choose another -o, or pass --no-resume to train from step 0 and replace it")
    elif output.exists() and main:
        report.say(f"--no-resume: training from step 0; {output} will be replaced")
    target = resolve_device(device)
    images = data.load(data_name, "train", n_train, size=image_size, channels=channels, subset=subset,
                       seed=seed, data_dir=data_dir)
    torch.manual_seed(seed)
    network, _ = from_preset(family, preset, image_size=image_size, channels=images.shape[1],
                             windows=parse_windows(windows))
    config = TrainingConfig(steps=steps, batch_size=batch, learning_rate=lr, ema_decay=ema, sigma_max=sigma_max,
                            checkpoint_every=checkpoint_every, seed=seed, max_minutes=max_minutes)
    metadata = {"data": data_name, "subset": subset, "preset": preset, "image_size": image_size}
    result = run_training(network, images, output, config, metadata=metadata, device=target, resume=resume)
    if result.rank != 0:  # under torchrun only rank 0 wrote the checkpoint and reports
        return
    report.wrote(output, f"{family} trained {result.steps_done}/{steps} steps on N = {len(images)} {data_name} "
                         f"({subset}); loss {result.losses[0]:.4g} → {result.losses[-1]:.4g}")
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
