"""A small-scale proxy of zoo v2's diverged local DiTs, on the CPU: does attention collapse in the 3×3 window layer
at a raised learning rate, and does query-key normalisation (``qk_norm``) keep it from collapsing?

Round 3 (docs/zoo.md) saw every local DiT of zoo v2 diverge under ``grad_clip = 1.0`` after the lowest-head attention
entropy of its first layer (window 3×3, at most ln 9 = 2.20 nats) fell from about 1.9 to 0.02-0.65; the other layers
held. Small models at raised learning rates reproduce the attention-logit growth of large ones (Wortsman et al.
2023, "Small-scale proxies for large-scale Transformer training instabilities"), which is what this proxy asks.

The proxy (fixed before it ran; 2026-12-08): Fashion-MNIST N = 100 (S1), 16×16 grey; DiT patch 1, depth 6, width 64,
one head of 64 channels (zoo v2's head width), windows 3, 5, 7 in layers 1-3, the rest global; batch 32, AdamW at
lr 1e-3 (ten times zoo v2's), no weight decay, ``grad_clip = 1.0``, EMA 0.999 as zoo v2; STEPS steps, a checkpoint
every EVERY steps, each measured for its per-layer attention entropy (lowest over heads, mean over 8 training images
at σ = 0.5: the zoo's gap rows' measurement, ``biasprobe.sweeps.recipes.checkpoint_gap_row``). Two runs, the same
seed: ``qk_norm`` off and on. A run that diverges stops there (``biasprobe.TrainingDiverged``).

Reading (fixed with it): the proxy reproduces the failure if, without ``qk_norm``, layer 1's entropy falls below
0.25 nats or the run diverges; it then supports the remedy if, with ``qk_norm``, layer 1's entropy stays above
0.25 nats and the run does not diverge over the same steps. If the run without it neither collapses nor diverges,
the proxy does not reproduce the failure and says nothing about the remedy.

    python reports/zoo/pilot/entropy_proxy.py OUT.json [--steps 4000] [--every 250] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

STEPS, EVERY = 4000, 250


def run(qk_norm: bool, steps: int, every: int, lr: float, folder: Path) -> dict:
    import biasprobe as bp
    from biasprobe import data
    from biasprobe.analyses.locality import locality
    from biasprobe.models import DiT
    from biasprobe.training import TrainingConfig, train

    images = data.load("fashion-mnist", "train", 100, size=16, channels=1, subset="s1", seed=0)
    torch.manual_seed(0)
    network = DiT(image_size=16, channels=1, patch_size=1, depth=6, width=64, heads=1,
                  windows=[3, 5, 7, None, None, None], qk_norm=qk_norm)
    config = TrainingConfig(steps=steps, batch_size=32, learning_rate=lr, checkpoint_every=every, grad_clip=1.0)
    output = folder / f"proxy-qk{int(qk_norm)}.safetensors"
    rows, began = [], time.perf_counter()

    def measure(steps_done: int) -> None:
        denoiser = bp.load(output)
        entropy = locality(denoiser, images[:8], sigmas=[0.5]).entropy.mean(("image", "sigma")).min("head")
        rows.append({"steps": steps_done, "seconds": round(time.perf_counter() - began, 1),
                     "attention_entropy": [round(float(v), 4) for v in entropy.values]})
        print(f"qk_norm={qk_norm} step {steps_done}: entropy per layer {rows[-1]['attention_entropy']}", flush=True)

    result = {"qk_norm": qk_norm, "steps": steps, "lr": lr, "rows": rows}
    try:
        trained = train(network, images, output, config, progress=False, on_checkpoint=measure)
        result["losses_per_50"] = [round(sum(trained.losses[i:i + 50]) / len(trained.losses[i:i + 50]), 5)
                                   for i in range(0, len(trained.losses), 50)]
        result["grad_norm_max"] = round(max(trained.grad_norms), 4)
    except bp.TrainingDiverged as diverged:
        result["diverged_at"], result["message"] = diverged.step, str(diverged)
        print(f"qk_norm={qk_norm} diverged: {diverged}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--every", type=int, default=EVERY)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--qk-norm", choices=("off", "on", "both"), default="both")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("PROXY_THREADS", "1")))
    variants = {"off": [False], "on": [True], "both": [False, True]}[args.qk_norm]
    with tempfile.TemporaryDirectory() as folder:
        results = [run(v, args.steps, args.every, args.lr, Path(folder)) for v in variants]
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "torch": torch.__version__,
                                         "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
