"""Training throughput: steps/s, model FLOPs utilisation and peak memory, previous path against the new one.

For each model, in one process:

- FLOPs per step: one forward and backward counted by ``torch.utils.flop_counter`` (the model's
  FLOPs: a windowed layer counts as the dense attention it masks, so MFU compares like with like);
- the card's bf16 matrix throughput, measured in the same run (an 8192² GEMM);
- steps/s of each path after warm-up: ``previous`` reproduces the loop before the throughput work
  (head dims not a multiple of 8 left unpadded, so SDPA falls back to its materialising math path;
  windows as dense boolean masks; foreach AdamW; one EMA kernel per tensor; the device read back
  twice a step: σ → t on the host and the loss), ``new`` is :func:`biasprobe.training.train`'s step
  (zero-padded fused SDPA, FlexAttention block-sparse windows on CUDA, fused AdamW, foreach EMA,
  nothing read back), ``compiled`` adds ``torch.compile``;
- MFU = FLOPs per step × steps/s / GEMM throughput; peak memory by ``torch.cuda.max_memory_allocated``.

``--stacked K`` also times K small models trained one after another against the same K stacked
(:func:`biasprobe.training.train_stacked`'s step): aggregate steps/s and the speed-up.

On the CPU only steps/s are reported. Run from the repository root::

    python tests/benchmarks/bench_training.py --device cuda --out reports/benchmarks
    python tests/benchmarks/bench_training.py --device cpu --models dit-small,unet-bf-small --batch 8
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch
from common import import_biasprobe

import_biasprobe()

from biasprobe.checkpoints import NATIVE_CONVENTIONS, network_denoiser
from biasprobe.models import attention, from_preset, set_attention_kernel
from biasprobe.training import (
    TrainingConfig,
    loop,
    stacked,
)

LOCAL_WINDOWS = [3, 5, 7, 9, 11, 13]
MODELS = {
    # name: (family, preset, windows, batch)
    "dit-xs": ("dit", "xs", None, 64),
    "dit-xs-local": ("dit", "xs", LOCAL_WINDOWS, 64),
    "dit-s": ("dit", "s", None, 64),
    "unet-ddpm-default": ("unet-ddpm", "default", None, 64),
    "unet-bf-default": ("unet-bf", "default", None, 64),
    "dit-small": ("dit", "small", None, 128),
    "unet-bf-small": ("unet-bf", "small", None, 64),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_tflops(device: torch.device, size: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matrix-multiply throughput (TFLOP/s) of a size² GEMM."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - began) / 1e12


def build(name: str, device: torch.device, seed: int = 0):
    family, preset, windows, _ = MODELS[name]
    torch.manual_seed(seed)
    network, shape = from_preset(family, preset, image_size=32, channels=1, windows=windows)
    return network.to(device), shape


class Step:
    """One training step of ``network`` on random images, the way a path does it."""

    def __init__(self, network, shape, batch: int, device: torch.device, path: str) -> None:
        self.path, self.device, self.network = path, device, network
        self.config = TrainingConfig(steps=1, batch_size=batch)
        self.data = torch.rand(1000, *shape, device=device)
        self.ema = copy.deepcopy(network).requires_grad_(False)
        trained = torch.compile(network) if path == "compiled" else network
        self.denoiser = network_denoiser(trained, shape, NATIVE_CONVENTIONS[network.family])
        if path == "previous":
            self.optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, foreach=device.type == "cuda")
            set_attention_kernel(network, "sdpa")
        else:
            self.optimizer = loop.make_optimizer(network.parameters(), self.config, device)
            set_attention_kernel(network, "auto")
        self.count = 0

    def __call__(self) -> None:
        torch.manual_seed(self.count)
        self.count += 1
        clean, noise, sigma, timesteps = loop._draw_batch(self.denoiser, self.data, self.config)
        previous = self.path == "previous"
        loss = loop.denoising_loss(self.denoiser, clean, noise, sigma, None if previous else timesteps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if previous:
            with torch.no_grad():
                for average, current in zip(self.ema.parameters(), self.network.parameters()):
                    average.lerp_(current, 1e-3)
            float(loss)
        else:
            loop._update_ema(self.ema, self.network, 0.999)


def unpadded(tensors, multiple=8):
    return tensors


def rate(step, device: torch.device, warmup: int, seconds: float) -> float:
    """Steps per second after ``warmup`` steps, timed over at least 3 steps and about ``seconds``."""
    for _ in range(warmup):
        step()
    sync(device)
    began, done = time.perf_counter(), 0
    while done < 3 or time.perf_counter() - began < seconds:
        step()
        done += 1
        if done % 5 == 0 or done < 5:
            sync(device)
    sync(device)
    return done / (time.perf_counter() - began)


def step_flops(name: str, device: torch.device) -> int:
    """FLOPs of one forward + backward at the model's batch (dense attention for windowed layers)."""
    from torch.utils.flop_counter import FlopCounterMode

    network, shape = build(name, device)
    step = Step(network, shape, MODELS[name][3], device, "new")
    set_attention_kernel(network, "sdpa")  # the counter cannot see inside compiled FlexAttention
    clean, noise, sigma, timesteps = loop._draw_batch(step.denoiser, step.data, step.config)
    with FlopCounterMode(display=False) as counter:
        loop.denoising_loss(step.denoiser, clean, noise, sigma, timesteps).backward()
    return counter.get_total_flops()


def bench_model(name: str, device: torch.device, paths, warmup: int, seconds: float, peak: float | None) -> dict:
    row: dict = {"model": name, "family": MODELS[name][0], "preset": MODELS[name][1],
                 "windows": MODELS[name][2], "batch": MODELS[name][3]}
    if device.type == "cuda":
        row["flops_per_step"] = step_flops(name, device)
    for path in paths:
        network, shape = build(name, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        original = attention._pad_head_dim
        if path == "previous":
            attention._pad_head_dim = unpadded
        try:
            step = Step(network, shape, MODELS[name][3], device, path)
            began = time.perf_counter()
            row[f"{path}_steps_per_s"] = rate(step, device, warmup * (3 if path == "compiled" else 1), seconds)
            row[f"{path}_seconds"] = time.perf_counter() - began
        except Exception as err:  # noqa: BLE001 - a failing path is reported, not fatal
            row[f"{path}_error"] = f"{type(err).__name__}: {str(err)[:300]}"
            print(f"{name} {path}: {row[f'{path}_error']}", flush=True)
            continue
        finally:
            attention._pad_head_dim = original
        if device.type == "cuda":
            row[f"{path}_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            row[f"{path}_mfu"] = row["flops_per_step"] * row[f"{path}_steps_per_s"] / (peak * 1e12)
        print(json.dumps(row), flush=True)
        del step, network
    return row


def bench_stacked(name: str, count: int, device: torch.device, warmup: int, seconds: float) -> dict:
    """Aggregate steps/s of ``count`` models one after another against the same models stacked."""
    network, shape = build(name, device)
    batch = MODELS[name][3]
    alone = Step(network, shape, batch, device, "new")
    one = rate(alone, device, warmup, seconds)
    networks = [build(name, device, seed=k)[0] for k in range(count)]
    config = TrainingConfig(steps=10**9, batch_size=batch, checkpoint_every=10**9)
    data = [torch.rand(1000, *shape) for _ in range(count)]
    outputs = [Path(f"/tmp/bench-stacked-{k}.pt") for k in range(count)]
    # time train_stacked itself: a run of n steps, twice, and take the difference (start-up cancels)
    timings = {}
    for steps in (warmup, warmup + max(10, int(seconds * 2))):
        config = TrainingConfig(steps=steps, batch_size=batch, checkpoint_every=10**9)
        sync(device)
        began = time.perf_counter()
        stacked.train_stacked([copy.deepcopy(n) for n in networks], data, outputs, config, device=device,
                              resume=False, progress=False)
        sync(device)
        timings[steps] = time.perf_counter() - began
    (short, t_short), (long, t_long) = sorted(timings.items())
    together = (long - short) / (t_long - t_short)
    for o in outputs:
        o.unlink(missing_ok=True)
    return {"model": name, "models": count, "batch": batch, "one_model_steps_per_s": one,
            "sequential_aggregate_steps_per_s": one, "stacked_steps_per_s": together,
            "stacked_aggregate_steps_per_s": together * count, "speedup": together * count / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--paths", default="previous,new,compiled")
    parser.add_argument("--batch", type=int, default=None, help="override every model's batch (CPU runs)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0, help="timing per path")
    parser.add_argument("--compile-models", default=None, help="models that also run the compiled path (default all)")
    parser.add_argument("--stacked", default="", help="e.g. dit-small:16,unet-bf-small:16")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.batch:
        for name, spec in MODELS.items():
            MODELS[name] = (*spec[:3], args.batch)
    torch.backends.cuda.matmul.allow_tf32 = True
    peak = gemm_tflops(device) if device.type == "cuda" else None
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report = {"device": card, "torch": torch.__version__, "bf16_gemm_tflops": peak,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": [], "stacked": []}
    print(json.dumps({k: v for k, v in report.items() if k not in ("models", "stacked")}), flush=True)
    paths = args.paths.split(",")

    def write() -> None:  # after every model, so that a run cut short keeps what it measured
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"training-{device.type}.json").write_text(json.dumps(report, indent=1) + "\n")

    for name in filter(None, args.models.split(",")):
        chosen = paths if args.compile_models is None or name in args.compile_models.split(",") else [
            p for p in paths if p != "compiled"]
        report["models"].append(bench_model(name, device, chosen, args.warmup, args.seconds, peak))
        write()
    for entry in filter(None, args.stacked.split(",")):
        name, count = entry.split(":")
        report["stacked"].append(bench_stacked(name, int(count), device, args.warmup, args.seconds))
        print(json.dumps(report["stacked"][-1]), flush=True)
        write()


if __name__ == "__main__":
    main()
