"""The record of how the shipped checkpoint zoo (``data/checkpoints/``) was made.

To train the zoo again use its recipe, ``reports/zoo/zoo.toml``, with ``biasprobe sweep train``
(docs/sweeps.md); this script stays as the record of the shipped files (its warm restarts) and
for ``prepare``, which writes ``data/fashion-mnist-eval.npz``.

The zoo is small enough to ship and big enough to show the papers' effects at 32×32 on
Fashion-MNIST: bias-free UNets and DiTs at N = 10 (memorization) to N = 10⁴ (generalization),
bias-free UNets on the disjoint halves S1 and S2 (the two-model test), and a DiT with local
attention windows 3, 5, 7, 9, 11, 13 in layers 1-6 (the paper's Fig. 6 setting).

Two steps, because the GPU machine has no Fashion-MNIST package:

    python reports/zoo/train_zoo.py prepare .zoo             # here: the training subsets as uint8 .npz
    python reports/zoo/train_zoo.py train .zoo out/ --minutes 8   # on the GPU: all models at once
    python reports/zoo/train_zoo.py manifest data/checkpoints     # here: the manifest of what came back

The DiTs then got two warm restarts (session 2, 2026-11-26: their first 7.5k steps showed no
attention locality), each starting from the shipped weights with a fresh optimizer, on an H200:

    python reports/zoo/train_zoo.py train .zoo out/ --minutes 8.3 --only dit-n10,dit-n1000,dit-n10000 --init data/checkpoints
    python reports/zoo/train_zoo.py train .zoo out/ --minutes 8.3 --only dit-local-n1000 --steps 10860 --init data/checkpoints
    python reports/zoo/train_zoo.py train .zoo out/ --minutes 9 --only dit-n10,dit-n1000,dit-n10000,dit-local-n1000 --steps 10000 --init data/checkpoints

(+10.8–10.9k steps, ``--steps`` giving the local DiT, trained alone, the count of the global
ones; then +8.9k steps each, stopped by the time limit: 27.1–27.2k in all. The checkpoints
record ``warm_start_steps``, the manifest the total; logs: ``train-logs/train-dit-warm.log`` in ``reports/zoo/rounds.tar.xz``.)

``prepare`` stores exactly the tensors ``biasprobe.data.load`` returns (Fashion-MNIST is 8-bit, so
the uint8 round trip is exact); ``train`` feeds them to :func:`biasprobe.training.train` with the
metadata ``biasprobe train`` would write, so ``biasprobe gap`` finds the data on its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

DATA = "fashion-mnist"
SEED = 0
LARGEST_N = 10_000
EVALUATION_K = 300
EVALUATION_FILE = Path(__file__).resolve().parents[2] / "data" / "fashion-mnist-eval.npz"
"""Shipped: the first 300 images of S1, of S2 and of the test split, for gap and two-model demos."""

ZOO = [
    # name,                 family,   N,      subset, windows
    ("unet-bf-n10", "unet-bf", 10, "s1", None),
    ("unet-bf-n10000-s1", "unet-bf", 10_000, "s1", None),
    ("unet-bf-n10000-s2", "unet-bf", 10_000, "s2", None),
    ("dit-n10", "dit", 10, "s1", None),
    ("dit-n1000", "dit", 1_000, "s1", None),
    ("dit-n10000", "dit", 10_000, "s1", None),
    ("dit-local-n1000", "dit", 1_000, "s1", [3, 5, 7, 9, 11, 13]),
]
SETTINGS = {"steps": 40_000, "batch_size": 128, "learning_rate": 2e-4, "checkpoint_every": 2_000}


def prepare(folder: Path) -> None:
    from biasprobe import data

    folder.mkdir(parents=True, exist_ok=True)
    subsets = {s: data.load(DATA, "train", LARGEST_N, subset=s, seed=SEED) for s in ("s1", "s2")}
    arrays = {s: (x.numpy()[:, 0] * 255).round().astype(np.uint8) for s, x in subsets.items()}
    for s, x in subsets.items():  # the uint8 copy is exact
        assert torch.equal(torch.from_numpy(arrays[s][:, None].astype(np.float32) / 255), x)
    np.savez_compressed(folder / "fashion-mnist-train.npz", **arrays)
    test = data.load(DATA, "test", EVALUATION_K, subset="all", seed=SEED)
    evaluation = {"train_s1": arrays["s1"][:EVALUATION_K], "train_s2": arrays["s2"][:EVALUATION_K],
                  "test": (test.numpy()[:, 0] * 255).round().astype(np.uint8)}
    np.savez_compressed(EVALUATION_FILE, **evaluation)


def manifest(output: Path) -> None:
    """Write data/checkpoints/manifest.json describing every zoo checkpoint in ``output``."""
    from biasprobe.checkpoints import read_checkpoint
    from biasprobe.denoiser import file_sha256

    entries = []
    for name, family, n, subset, windows in ZOO:
        path = output / f"{name}.safetensors"
        training = read_checkpoint(path).training
        entries.append({"name": name, "file": path.name, "family": family, "preset": "small", "data": DATA,
                        "n_train": n, "subset": subset, "windows": windows,
                        "steps_done": training["steps_done"] + training.get("warm_start_steps", 0),
                        "sha256": file_sha256(path)})
    (output / "manifest.json").write_text(json.dumps({"checkpoints": entries}, indent=1) + "\n")


def train_one(folder: Path, output: Path, name: str, minutes: float, device: str = "cuda",
              init: Path | None = None, steps: int | None = None) -> None:
    """Train one zoo model; with ``init``, start from the weights of ``init/NAME.safetensors``
    (a warm restart: fresh optimizer, step count and seeds, the earlier steps recorded)."""
    from biasprobe.checkpoints import read_checkpoint
    from biasprobe.models import from_preset
    from biasprobe.training import TrainingConfig, train

    _, family, n, subset, windows = next(entry for entry in ZOO if entry[0] == name)
    images = torch.from_numpy(np.load(folder / "fashion-mnist-train.npz")[subset][:n, None].astype(np.float32) / 255)
    torch.manual_seed(SEED)
    network, _ = from_preset(family, "small", image_size=32, channels=1, windows=windows)
    config = TrainingConfig(**{**SETTINGS, "steps": steps or SETTINGS["steps"]}, seed=SEED, max_minutes=minutes)
    metadata = {"data": DATA, "subset": subset, "preset": "small", "image_size": 32, "zoo": name}
    if init is not None:
        earlier = read_checkpoint(init / f"{name}.safetensors")
        network.load_state_dict(earlier.state_dict)
        metadata["warm_start_steps"] = earlier.training.get("steps_done", 0) + earlier.training.get("warm_start_steps", 0)
    result = train(network, images, output / f"{name}.safetensors", config, metadata=metadata,
                   device=device, progress=False)
    print(json.dumps({"name": name, "steps_done": result.steps_done,
                      "loss_first": result.losses[0], "loss_last_100": float(np.mean(result.losses[-100:]))}))


def train_all(folder: Path, output: Path, minutes: float, device: str, only: list[str] | None = None,
              init: Path | None = None, steps: int | None = None) -> None:
    output.mkdir(parents=True, exist_ok=True)
    names = [name for name, *_ in ZOO if not only or name in only]
    warm = (["--init", str(init)] if init else []) + (["--steps", str(steps)] if steps else [])
    jobs = [subprocess.Popen([sys.executable, __file__, "one", str(folder), str(output), name, str(minutes),
                              "--device", device, *warm])
            for name in names]
    failed = [name for name, job in zip(names, jobs) if job.wait() != 0]
    if failed:
        raise SystemExit(f"training failed for {failed}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["prepare", "train", "one", "manifest"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("output", type=Path, nargs="?")
    parser.add_argument("name", nargs="?")
    parser.add_argument("minutes", type=float, nargs="?", default=8.0)
    parser.add_argument("--minutes", dest="budget", type=float, default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", default=None, help="comma-separated zoo names to train (default: all)")
    parser.add_argument("--init", type=Path, default=None,
                        help="folder of earlier zoo checkpoints to continue from (warm restart)")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (default: SETTINGS)")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.folder)
    elif args.step == "manifest":
        manifest(args.folder)
    elif args.step == "train":
        only = args.only.split(",") if args.only else None
        train_all(args.folder, args.output, args.budget or args.minutes, args.device, only, args.init, args.steps)
    else:
        train_one(args.folder, args.output, args.name, args.minutes, args.device, args.init, args.steps)
