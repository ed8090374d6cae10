"""Pilot of issue 16: the gap of each checkpoint `biasprobe train` writes, as training goes on.

Polls the given checkpoints; each time one holds a new step count, measures the generalization gap
with the library's `gap` (min(K, N) training images, K = 100: the first the model saw, all of them
when N < K; against K test images; 8 σ from 0.02 to 0.5) and appends one JSON line to OUT. Stops once every PID has exited and the last
checkpoints are measured.

    python reports/zoo/pilot/pilot_gap.py OUT.jsonl --device cuda:1 --pids 123,456 a.safetensors b.safetensors
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import biasprobe as bp
from biasprobe import data
from biasprobe.checkpoints import read_checkpoint

SIGMAS = np.geomspace(0.02, 0.5, 8).tolist()
K = 100


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def measure(path: Path, device: str) -> dict:
    training = read_checkpoint(path).training
    denoiser = bp.load(path, device=device)
    channels, size, _ = denoiser.image_shape
    # only the images the model saw: for N < K, the first K of the nested subsets hold K − N it never saw
    train = data.load(training["data"], "train", min(K, int(training["n_train"])), size=size, channels=channels,
                      subset=training["subset"], seed=int(training["seed"]))
    test = data.load(training["data"], "test", K, size=size, channels=channels, subset="all")
    result = bp.gap(denoiser, train, test, SIGMAS)
    return {"checkpoint": path.name, "n_train": training["n_train"], "steps": training["steps_done"],
            "sigma": SIGMAS, "train_psnr": result.mean_psnr.sel(split="train").values.tolist(),
            "test_psnr": result.mean_psnr.sel(split="test").values.tolist(), "gap": result.gap.values.tolist(),
            "average_gap": float(result.average_gap), "measured": time.time()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pids", default="")
    args = parser.parse_args()
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
            print(f"{path.name} step {steps}: gap {row['average_gap']:.2f} dB", flush=True)
        if not running:
            break
        time.sleep(5)


if __name__ == "__main__":
    main()
