"""Shared fixtures: tiny checkpoints of each family, and a runner for the real command line."""

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import pytest
import torch
from biasprobe_cli.main import main

from biasprobe.checkpoints import Checkpoint, save_checkpoint
from biasprobe.models import build_model, preset_config


def import_benchmark(name: str):
    """The benchmark script ``tests/benchmarks/NAME.py`` as a module (the folder is not a package)."""
    import importlib
    from pathlib import Path

    folder = str(Path(__file__).resolve().parent / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


def randomise_zero_init(network: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Give zero-initialised weights (DiT's adaLN-Zero gates, final layers) small random values,
    so that a fresh network's output depends on every layer."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.parameters():
            if not param.any():
                param.copy_(std * torch.randn(param.shape, generator=generator))
    return network


def tiny_checkpoint(path, family: str, image_size: int = 8, channels: int = 1, seed: int = 0, **overrides):
    """Write a tiny, randomised checkpoint of ``family`` to ``path`` and return it."""
    torch.manual_seed(seed)
    config = preset_config(family, "tiny")
    if family != "unet-bf":
        config.update(image_size=image_size)
    if family == "unet-ddpm":
        config.update(attention_resolutions=[image_size // 2])
    config.update(channels=channels, **overrides)
    network = randomise_zero_init(build_model(family, **config), seed)
    save_checkpoint(Checkpoint.from_network(network, (channels, image_size, image_size), {"seed": seed}), path)
    return path


@pytest.fixture(params=["unet-bf", "unet-ddpm", "dit"])
def family(request):
    return request.param


def run_cli(*args) -> subprocess.CompletedProcess:
    """Run ``biasprobe ARGS`` through the real entry point (errors become one line and exit 1), in this
    process to spare the interpreter start-up; ``tests/cli/test_command_line.py`` also checks a fresh interpreter."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["biasprobe", *map(str, args)]
    code = 0
    with mock.patch.object(sys, "argv", argv), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def run_cli_process(*args) -> subprocess.CompletedProcess:
    """Run ``biasprobe ARGS`` in a fresh interpreter, exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "biasprobe_cli", *map(str, args)], capture_output=True, text=True, check=False
    )
