"""The generalization gap of each checkpoint `biasprobe train` writes, as training goes on (zoo pilots, rounds).

Polls the given checkpoints; each time one holds a new step count, measures the gap and appends one
JSON line to OUT. Stops once every PID has exited and the last checkpoints are measured.

The gap is the paper's (An et al., Eq. 4 as the reviewers read it; docs/methods/generalization.md):
``biasprobe.analyses.generalization.checkpoint_gap`` with its defaults — the first min(K, N) of the
model's own training images and the first K test images, K = 300, each noised once (seed 0) at every
DDPM step t = 0, 20, …, 980, and the gap averaged uniformly over those 50 steps:

    gap(t)  = mean_train PSNR(t) − mean_test PSNR(t)
    average = (1/50) Σ_t gap(t),   s.e. = √(s²_train/K_train + s²_test/K_test)

where s² is the variance over images of each image's PSNR averaged over t (one noise draw per image
and step; the gap store's ``average_gap_sem``). Rows before zoo v2 (rounds 1-3, the width-128 pilot) used K = 100 and 8 σ from 0.02 to
0.5; each row names its definition.

    python reports/zoo/pilot/pilot_gap.py OUT.jsonl --device cuda --pids 123,456 a.safetensors b.safetensors
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

import biasprobe as bp
from biasprobe.analyses.generalization import checkpoint_gap
from biasprobe.checkpoints import read_checkpoint

K = 300
DEFINITION = "paper: t = 0, 20, ..., 980 uniform; min(K, N) train vs K test images, K = 300; one draw, seed 0"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def measure(path: Path, device: str) -> dict:
    denoiser = bp.load(path, device=device)
    training = denoiser.source.training  # the steps of the weights loaded, even if the file was replaced since
    began = time.perf_counter()
    result = checkpoint_gap(denoiser, k=K)
    counts = result.images_per_split.values.tolist()
    return {"checkpoint": path.name, "n_train": training["n_train"], "steps": training["steps_done"],
            "definition": DEFINITION, "k": counts,
            "t": result.t.values.tolist(), "sigma": result.sigma.values.tolist(),
            "train_psnr": result.mean_psnr.sel(split="train").values.tolist(),
            "test_psnr": result.mean_psnr.sel(split="test").values.tolist(), "gap": result.gap.values.tolist(),
            "gap_sem": result.gap_sem.values.tolist(), "average_gap": float(result.average_gap),
            "average_gap_sem": float(result.average_gap_sem),
            "tf32": torch.backends.cuda.matmul.allow_tf32, "seconds": time.perf_counter() - began,
            "measured": time.time()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pids", default="")
    parser.add_argument("--tf32", action="store_true", help="TF32 matrix products on the GPU (recorded per row)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    pids = [int(p) for p in args.pids.split(",") if p]
    seen: dict[Path, int] = {}
    while True:
        running = any(alive(p) for p in pids)
        for path in args.checkpoints:
            if not path.exists():
                continue
            try:
                steps = read_checkpoint(path).training["steps_done"]
                if seen.get(path) == steps:
                    continue
                row = measure(path, args.device)
            except Exception as err:  # noqa: BLE001 - a checkpoint being replaced is read next round
                print(f"{path}: {err}", flush=True)
                continue
            seen[path] = steps
            with open(args.out, "a") as stream:
                stream.write(json.dumps(row) + "\n")
            print(f"{path.name} step {row['steps']}: gap {row['average_gap']:.2f} ± {row['average_gap_sem']:.2f} dB "
                  f"({row['seconds']:.1f} s)", flush=True)
        if not running:
            break
        time.sleep(5)


if __name__ == "__main__":
    main()
