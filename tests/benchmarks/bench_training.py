"""Training throughput: steps/s, model FLOPs utilisation and peak memory of each way to run a step.

For each model, in one process:

- FLOPs per step: one forward and backward counted by ``torch.utils.flop_counter`` (the model's
  FLOPs: a windowed layer counts as the dense attention it masks, so MFU compares like with like);
- the card's bf16 matrix throughput, measured in the same run (an 8192² GEMM);
- steps/s of each *path* after warm-up, each path on a fresh copy of the model (same seeds, so the
  losses of the first steps must agree across paths: they are reported beside the rates):

  ``previous``   the loop before the throughput work (head dims not a multiple of 8 left unpadded,
                 so SDPA falls back to its materialising math path; windows as dense boolean masks;
                 foreach AdamW; one EMA kernel per tensor; the device read back twice a step);
  ``new``        :func:`biasprobe.training.train`'s step (:class:`~biasprobe.training.loop.TrainingStep`),
                 eager (zero-padded fused SDPA, FlexAttention block-sparse windows on CUDA, fused AdamW,
                 foreach EMA, nothing read back);
  ``compiled``   the same through ``torch.compile`` (mode ``default``);
  ``compiled-MODE``  another compile mode (``reduce-overhead``: CUDA graphs; ``max-autotune``,
                 ``max-autotune-no-cudagraphs``), as ``biasprobe train --compile-mode MODE``;
  ``PATH+cl``    any of these with channels-last weights (``--channels-last``);
  ``PATH+pad``   a compiled path whose matrix products inductor pads to the tensor cores' alignment
                 (``force_shape_pad``: zero rows and columns added, then sliced off; same function);
  ``PATH+step``  a compiled path that compiles the step around the network too: the loss (noisy
                 input, network, target, mean) and the EMA, in the path's mode, so that under CUDA
                 graphs only the batch draw and the fused AdamW run eagerly (``TrainingConfig``'s
                 ``compile_scope="step"``, which the command line does not offer until this measures it);

  MFU = FLOPs per step × steps/s / GEMM throughput; peak memory by
  ``torch.cuda.max_memory_allocated``; ``cudagraph_skips``: how many times inductor declined CUDA
  graphs (then a CUDA-graph mode ran without them).

Models: the presets of the issue's table and the paper zoo's (``MODELS``), and ``dit-xs-w256``, DiT-XS at
width 256, a probe of what the paper's width 252 costs (not a model biasprobe trains).

``--procs PRESET:P1,P2,..`` runs P concurrent training processes of one model on one GPU (each the
``--procs-path`` step, started together after their warm-up and compilation) and reports their
aggregate steps/s; ``--mps`` also runs them (P > 1) under CUDA MPS (a private ``nvidia-cuda-mps-control``
daemon started for the measurement and stopped after; skipped, and said so, if the binary is
missing or does not start). Run it in a process that has not touched the GPU (it creates no CUDA
context itself).

``--attention`` times one attention layer alone (forward + backward, bf16, the zoo DiT's 1024 tokens,
2 heads of 32): FlexAttention with each window's block mask at each ``--block-sizes``, FlexAttention
without a mask, SDPA global and SDPA with the dense boolean window mask.

``--stacked K`` also times K small models trained one after another against the same K stacked
(:func:`biasprobe.training.train_stacked`'s step): aggregate steps/s and the speed-up.

``--profile MODEL:PATH,..`` profiles ``--profile-steps`` steps of each (``torch.profiler``): the kernels
that take the most device time and the share of the step's wall time the device is busy (what bounds
a step: kernels or launches); on the CPU the largest operators. A MODEL:PATH that ``--models``/``--paths``
also time is profiled right after its timing, on the same compiled step.

``--budget S`` stops starting new cases after S seconds (the JSON, written after every case, says
which were skipped). On the CPU only steps/s are reported. Run from the repository root::

    python tests/benchmarks/bench_training.py --device cuda --out /tmp/bench   # then into reports/benchmarks.json
    python tests/benchmarks/bench_training.py --device cpu --models dit-small,unet-bf-small --batch 8
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
from common import import_biasprobe

import_biasprobe()

from biasprobe.atomic import replace_file
from biasprobe.checkpoints import NATIVE_CONVENTIONS, network_denoiser
from biasprobe.models import attention, build_model, from_preset, set_attention_kernel
from biasprobe.training import (
    TrainingConfig,
    loop,
    stacked,
)

LOCAL_WINDOWS = [3, 5, 7, 9, 11, 13]


class Case(NamedTuple):
    """A benchmarked model: a preset at a batch size, with windows, a FlexAttention block size or
    config entries of its own."""

    family: str
    preset: str
    windows: list[int] | None
    batch: int
    block_size: int | None = None
    overrides: dict | None = None


MODELS = {
    "dit-xs": Case("dit", "xs", None, 64),
    "dit-xs-local": Case("dit", "xs", LOCAL_WINDOWS, 64),
    "dit-s": Case("dit", "s", None, 64),
    "unet-ddpm-default": Case("unet-ddpm", "default", None, 64),
    "unet-bf-default": Case("unet-bf", "default", None, 64),
    "dit-small": Case("dit", "small", None, 128),
    "unet-bf-small": Case("unet-bf", "small", None, 64),
    # the paper zoo's presets (docs/zoo.md), at its batch
    "dit-zoo": Case("dit", "zoo", None, 64),
    "dit-zoo-local": Case("dit", "zoo", LOCAL_WINDOWS, 64),
    "dit-zoo-local-b64": Case("dit", "zoo", LOCAL_WINDOWS, 64, block_size=64),
    "unet-ddpm-zoo": Case("unet-ddpm", "zoo", None, 64),
    # zoo v2's pilot widths (docs/zoo.md "Zoo v2 pilot")
    "dit-zoo128": Case("dit", "zoo128", None, 64),
    "dit-zoo256": Case("dit", "zoo256", None, 64),
    # DiT-XS at width 256 (4 heads of 64): a probe of what the paper's width 252 (rows of 504 bytes in
    # bf16, not a multiple of the tensor cores' 16-byte alignment) costs; not a model biasprobe trains
    "dit-xs-w256": Case("dit", "xs", None, 64, overrides={"width": 256}),
}
ZOO_GRID, ZOO_HEADS, ZOO_HEAD_DIM = (32, 32), 2, 32


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


def build(name: str, device: torch.device, seed: int = 0, channels_last: bool = False):
    case = MODELS[name]
    torch.manual_seed(seed)
    network, shape = from_preset(case.family, case.preset, image_size=32, channels=1, windows=case.windows)
    if case.overrides:
        torch.manual_seed(seed)
        network = build_model(case.family, **{**network.config, **case.overrides})
    if case.block_size is not None:
        set_attention_kernel(network, "auto", block_size=case.block_size)
    memory = torch.channels_last if channels_last else torch.preserve_format
    return network.to(device, memory_format=memory), shape


class StepPath(NamedTuple):
    """A way to run a step, parsed from its name: ``BASE[+cl][+pad][+step]``."""

    base: str
    mode: str | bool
    """torch.compile's mode, or False (eager)."""
    channels_last: bool
    pad: bool
    """Inductor pads every matrix product's dimensions to the tensor cores' alignment (zeros, sliced off)."""
    around_network: bool
    """The loss (noisy input, network, target, mean) and the EMA compiled too (``compile_scope="step"``)."""


SUFFIXES = {"cl": "channels-last weights", "pad": "matrix products padded to alignment (compiled paths)",
            "step": "the loss and the EMA compiled too (compiled paths)"}


def parse_path(path: str) -> StepPath:
    """``path`` → its base, compile mode and options (see the module doc)."""
    base, *suffixes = path.split("+")
    unknown = sorted(set(suffixes) - set(SUFFIXES))
    if unknown or len(set(suffixes)) < len(suffixes):
        raise SystemExit(f"unknown or repeated suffix in {path!r}: "
                         + ", ".join(f"+{k} ({v})" for k, v in SUFFIXES.items()))
    if base in ("previous", "new"):
        mode = False
    elif base == "compiled":
        mode = "default"
    elif base.startswith("compiled-") and base[len("compiled-"):] in loop.COMPILE_MODES:
        mode = base[len("compiled-"):]
    else:
        raise SystemExit(f"unknown path {path!r}: previous, new, compiled, compiled-MODE "
                         f"({', '.join(loop.COMPILE_MODES)}), each optionally +cl, +pad, +step")
    if not mode and {"pad", "step"} & set(suffixes):
        raise SystemExit(f"{path!r}: +pad and +step apply to compiled paths only")
    return StepPath(base, mode, "cl" in suffixes, "pad" in suffixes, "step" in suffixes)


def warmup_steps(path: str, warmup: int) -> int:
    """Steps before timing: ``warmup``, three times that for compiled paths (compilation, CUDA-graph recording)."""
    return warmup * (3 if parse_path(path).mode else 1)


class Step:
    """One training step of ``network`` on random images, the way a path does it: ``previous`` as the loop
    did before the throughput work, every other path as :class:`biasprobe.training.loop.TrainingStep`
    (the training loop's step), with the loop's inductor settings."""

    def __init__(self, network, shape, batch: int, device: torch.device, path: str) -> None:
        import torch._inductor.config as inductor

        self.network = network
        how = parse_path(path)
        self.previous = how.base == "previous"
        self.config = TrainingConfig(steps=1, batch_size=batch, compile=how.mode,
                                     compile_scope="step" if how.around_network else "network")
        self.data = torch.rand(1000, *shape, device=device)
        self.ema = copy.deepcopy(network).requires_grad_(False)
        set_attention_kernel(network, "sdpa" if self.previous else "auto")
        # read when the step first runs (compiles): the loop's dropout setting, and this path's padding
        inductor.fallback_random = bool(how.mode) and loop.has_dropout(network)
        inductor.force_shape_pad = how.pad
        if self.previous:
            self.optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, foreach=device.type == "cuda")
            self.denoiser = network_denoiser(network, shape, NATIVE_CONVENTIONS[network.family])
            self.training_step = None
        else:
            self.optimizer = loop.make_optimizer(network.parameters(), self.config, device)
            self.training_step = loop.TrainingStep(network, self.ema, self.optimizer, self.data, self.config)
        self.count = 0
        self.first_losses: list[torch.Tensor] = []

    def __call__(self) -> None:
        loss = self._previous() if self.training_step is None else self.training_step(self.count)[0]
        self.count += 1
        if len(self.first_losses) < 3:
            self.first_losses.append(loss.detach().clone())

    def _previous(self) -> torch.Tensor:
        """The step before the throughput work: host-side reads, foreach AdamW, one EMA kernel per tensor."""
        torch.manual_seed(loop._step_seed(self.config.seed, self.count))
        self.optimizer.zero_grad(set_to_none=True)
        clean, noise, sigma, _ = loop._draw_batch(self.denoiser, self.data, self.config)
        loss = loop.denoising_loss(self.denoiser, clean, noise, sigma, None)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for average, current in zip(self.ema.parameters(), self.network.parameters()):
                average.lerp_(current, 1e-3)
        float(loss)
        return loss


def unpadded(tensors, multiple=8):
    return tensors


def rate(step, device: torch.device, warmup: int, seconds: float, least: int = 3) -> float:
    """Steps per second after ``warmup`` steps, timed over at least ``least`` steps and about ``seconds``."""
    for _ in range(warmup):
        step()
    sync(device)
    began, done = time.perf_counter(), 0
    while done < least or time.perf_counter() - began < seconds:
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
    step = Step(network, shape, MODELS[name].batch, device, "new")
    set_attention_kernel(network, "sdpa")  # the counter cannot see inside compiled FlexAttention
    denoiser = step.training_step.denoiser
    clean, noise, sigma, timesteps = loop._draw_batch(denoiser, step.data, step.config)
    with FlopCounterMode(display=False) as counter:
        loop.denoising_loss(denoiser, clean, noise, sigma, timesteps).backward()
    return counter.get_total_flops()


class Budget:
    """Seconds left of ``--budget``: cases that would start after it are skipped (and listed)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.began, self.skipped = seconds, time.perf_counter(), []

    def allows(self, case: str) -> bool:
        if self.seconds is not None and time.perf_counter() - self.began > self.seconds:
            self.skipped.append(case)
            return False
        return True


def bench_model(name: str, device: torch.device, paths, warmup: int, seconds: float, peak: float | None,
                budget: Budget, profiled=(), profile_steps: int = 10, row: dict | None = None,
                after_case=lambda row: None) -> dict:
    """Steps/s (MFU and peak memory on CUDA) of each of ``paths`` for ``name``, in ``row`` (a new dict if
    None); the paths in ``profiled`` are then profiled on the same compiled step (:func:`profile_step`,
    ``PATH_profile``), sparing a second compile. ``after_case`` gets the row after each path."""
    from torch._dynamo.utils import counters

    row = {} if row is None else row
    row.update(model=name, **MODELS[name]._asdict())
    if device.type == "cuda":
        row["flops_per_step"] = step_flops(name, device)
    for path in paths:
        if not budget.allows(f"{name} {path}"):
            row[f"{path}_error"] = "skipped: over the time budget"
            after_case(row)
            continue
        how = parse_path(path)
        torch._dynamo.reset()  # a fresh compile per case (and no recompile limit across cases)
        counters.clear()
        network, shape = build(name, device, channels_last=how.channels_last)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        original = attention._pad_head_dim
        if path == "previous":
            attention._pad_head_dim = unpadded
        try:
            step = Step(network, shape, MODELS[name].batch, device, path)
            began = time.perf_counter()
            row[f"{path}_steps_per_s"] = rate(step, device, warmup_steps(path, warmup), seconds)
            row[f"{path}_seconds"] = time.perf_counter() - began
            row[f"{path}_first_losses"] = [float(x) for x in step.first_losses]
            row[f"{path}_cudagraph_skips"] = counters["inductor"].get("cudagraph_skips", 0)
        except Exception as err:  # noqa: BLE001 - a failing path is reported, not fatal
            row[f"{path}_error"] = f"{type(err).__name__}: {str(err)[:300]}"
            print(f"{name} {path}: {row[f'{path}_error']}", flush=True)
            after_case(row)
            continue
        finally:
            attention._pad_head_dim = original
        if device.type == "cuda":
            row[f"{path}_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            row[f"{path}_mfu"] = row["flops_per_step"] * row[f"{path}_steps_per_s"] / (peak * 1e12)
        print(json.dumps({k: v for k, v in row.items() if k.startswith(path + "_") or k == "model"}), flush=True)
        if path in profiled:
            try:
                row[f"{path}_profile"] = profile_step(step, device, profile_steps)
            except Exception as err:  # noqa: BLE001 - reported, not fatal
                row[f"{path}_profile"] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        after_case(row)
        del step, network
    return row


def bench_stacked(name: str, count: int, device: torch.device, warmup: int, seconds: float) -> dict:
    """Aggregate steps/s of ``count`` models one after another against the same models stacked."""
    network, shape = build(name, device)
    batch = MODELS[name].batch
    alone = Step(network, shape, batch, device, "new")
    one = rate(alone, device, warmup, seconds)
    networks = [build(name, device, seed=k)[0] for k in range(count)]
    data = [torch.rand(1000, *shape) for _ in range(count)]
    outputs = [Path(tempfile.gettempdir()) / f"bench-stacked-{os.getpid()}-{k}.pt" for k in range(count)]
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


# -- attention alone ------------------------------------------------------------------------------

def time_call(function, device: torch.device, seconds: float) -> float:
    """Milliseconds per call of ``function`` after 3 warm-up calls, timed over ≥ 5 calls and ``seconds``."""
    return 1e3 / rate(function, device, warmup=3, seconds=seconds, least=5)


def bench_attention(device: torch.device, windows, block_sizes, batch: int, seconds: float, budget: Budget,
                    mode: str = "default") -> list[dict]:
    """Forward + backward of one attention layer of the zoo DiT (1024 tokens, 2 heads of 32), bf16."""
    import torch.nn.functional as F
    from torch.nn.attention.flex_attention import flex_attention

    tokens = ZOO_GRID[0] * ZOO_GRID[1]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = (batch, ZOO_HEADS, tokens, ZOO_HEAD_DIM)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape, device=device, dtype=dtype)
    flex = torch.compile(flex_attention, dynamic=False, mode=None if mode == "default" else mode)
    rows = []

    def measure(label: str, window, block, function) -> None:
        row = {"kernel": label, "window": window, "block_size": block, "batch": batch, "tokens": tokens,
               "heads": ZOO_HEADS, "head_dim": ZOO_HEAD_DIM, "compile_mode": mode}
        if not budget.allows(f"attention {label} {window} {block}"):
            row["error"] = "skipped: over the time budget"
        else:
            def step():
                q.grad = k.grad = v.grad = None
                function().backward(grad)

            try:
                row["ms_forward_backward"] = time_call(step, device, seconds)
            except Exception as err:  # noqa: BLE001 - a kernel that does not run is reported
                row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        rows.append(row)
        print(json.dumps(row), flush=True)

    measure("sdpa-global", None, None, lambda: F.scaled_dot_product_attention(q, k, v))
    if device.type == "cuda":
        measure("flex-global", None, None, lambda: flex(q, k, v))
    for window in windows:
        dense = attention.window_mask(ZOO_GRID, window, device)
        measure("sdpa-dense-mask", window, None, lambda dense=dense: F.scaled_dot_product_attention(q, k, v, dense))
        if device.type != "cuda":
            continue  # FlexAttention has no backward on the CPU
        for block in block_sizes:
            try:
                mask = attention.window_block_mask(ZOO_GRID, window, device, block_size=block)
            except Exception as err:  # noqa: BLE001
                rows.append({"kernel": "flex-window", "window": window, "block_size": block,
                             "error": f"{type(err).__name__}: {str(err)[:300]}"})
                continue
            options = attention.flex_kernel_options(block)
            measure("flex-window", window, block,
                    lambda mask=mask, options=options: flex(q, k, v, block_mask=mask, kernel_options=options))
            kept = mask.kv_num_blocks.sum() + (0 if mask.full_kv_num_blocks is None else mask.full_kv_num_blocks.sum())
            blocks = -(-tokens // block)
            rows[-1]["key_blocks_kept"] = float(kept) / (blocks * blocks)
            rows[-1]["pairs_kept"] = float(attention.window_mask(ZOO_GRID, window).float().mean())
    return rows


# -- several training processes on one GPU -------------------------------------------------------

def worker(args) -> None:
    """One of ``--procs``' processes: warm up, say so, wait for the start, train ``--seconds``, report."""
    device = torch.device(args.device)
    name, path = args.worker_model, args.procs_path
    folder = Path(args.worker_dir)
    network, shape = build(name, device, seed=args.worker_index)
    step = Step(network, shape, MODELS[name].batch, device, path)
    for _ in range(warmup_steps(path, args.warmup)):
        step()
    sync(device)
    (folder / f"ready-{args.worker_index}").touch()
    while not (folder / "go").exists():  # the parent says go, or gives up (then this process ends too)
        if time.time() > args.worker_deadline:
            return
        time.sleep(0.01)
    began, done = time.perf_counter(), 0
    while time.perf_counter() - began < args.seconds:
        step()
        done += 1
        if done % 5 == 0:
            sync(device)
    sync(device)
    elapsed = time.perf_counter() - began
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    (folder / f"result-{args.worker_index}.json").write_text(json.dumps({"steps": done, "seconds": elapsed,
                                                                         "card": card}))


class Mps:
    """A private CUDA MPS control daemon for the GPUs this process sees (pipe and log in a temporary folder)."""

    def __init__(self) -> None:
        self.binary = shutil.which("nvidia-cuda-mps-control")
        self.folder = Path(tempfile.mkdtemp(prefix="bench-mps-"))
        self.env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(self.folder / "pipe"),
                    "CUDA_MPS_LOG_DIRECTORY": str(self.folder / "log")}
        self.error = None if self.binary else "nvidia-cuda-mps-control not found: MPS cases skipped"

    def start(self) -> bool:
        if self.error:
            return False
        for sub in ("pipe", "log"):
            (self.folder / sub).mkdir(exist_ok=True)
        done = subprocess.run([self.binary, "-d"], check=False, env=self.env, capture_output=True, text=True,
                              timeout=30)
        if done.returncode:
            self.error = f"nvidia-cuda-mps-control -d failed ({done.returncode}): {(done.stderr or done.stdout)[:300]}"
            return False
        return True

    def client_env(self) -> dict:
        """The environment of a client: the daemon's pipe, and its GPUs numbered from 0.

        The daemon serves the GPUs of this process's ``CUDA_VISIBLE_DEVICES`` (all when unset) and its
        clients see those alone, numbered from 0; a client left without the variable still counts every
        GPU of the host (PyTorch asks NVML) and fails at its first CUDA call."""
        env = dict(self.env)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            count = len([device for device in visible.split(",") if device.strip()])
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(k) for k in range(count))
        return env

    def stop(self) -> str:
        done = subprocess.run([self.binary], check=False, input="quit\n", env=self.env, capture_output=True,
                              text=True, timeout=60)
        logs = [self.folder / "log" / name for name in ("control.log", "server.log")]
        return (done.stderr or "") + "".join(f"{log.name}: {log.read_text()[-500:]}" for log in logs if log.exists())


def _failure_line(log: str) -> str:
    """The last line of a worker's log that names an error (its exception), else the log's last 300 characters
    (a warning's stack trace printed before the error must not hide it)."""
    named = [line for line in log.splitlines() if "Error" in line or "error:" in line or "Exception" in line]
    return named[-1][:400] if named else log[-300:]


def bench_procs(name: str, counts, args, mps: Mps | None, budget: Budget, rows: list,
                after_count=lambda: None) -> None:
    """Aggregate steps/s of P concurrent training processes of ``name`` on one GPU, for each P: a row each,
    appended to ``rows``; ``after_count`` is called after each P (to write them out)."""
    for count in counts:
        row = {"model": name, "path": args.procs_path, "processes": count, "mps": mps is not None,
               "batch": MODELS[name].batch}
        rows.append(row)
        if not budget.allows(f"procs {name} {count} mps={mps is not None}"):
            row["error"] = "skipped: over the time budget"
            after_count()
            continue
        folder = Path(tempfile.mkdtemp(prefix="bench-procs-"))
        env = mps.client_env() if mps else dict(os.environ)
        command = [sys.executable, __file__, "--device", args.device, "--procs-path", args.procs_path,
                   "--warmup", str(args.warmup), "--seconds", str(args.seconds), "--worker-model", name,
                   "--worker-dir", str(folder), "--worker-deadline", str(time.time() + args.procs_timeout)]
        began = time.perf_counter()
        logs = [(folder / f"log-{k}.txt").open("w") for k in range(count)]
        children = [subprocess.Popen([*command, "--worker-index", str(k)], env=env, stdout=logs[k],
                                     stderr=subprocess.STDOUT) for k in range(count)]
        try:
            deadline = began + args.procs_timeout
            while (len(list(folder.glob("ready-*"))) < count and time.perf_counter() < deadline
                   and all(child.poll() is None for child in children)):
                time.sleep(0.05)
            row["start_up_s"] = time.perf_counter() - began
            if len(list(folder.glob("ready-*"))) == count:
                (folder / "go").touch()
            for child in children:
                child.wait(timeout=max(1.0, deadline - time.perf_counter()) + 2 * args.seconds + 30)
        finally:  # also when this process is stopped: no child is left on the GPU
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            for log in logs:
                log.close()
        results = [json.loads(p.read_text()) for p in sorted(folder.glob("result-*.json"))]
        if len(results) < count:
            failed = [_failure_line((folder / f"log-{k}.txt").read_text())
                      for k, child in enumerate(children) if child.returncode]
            row["error"] = f"{count - len(results)} of {count} processes gave no result: {failed[:1]}"
        else:
            rates = [r["steps"] / r["seconds"] for r in results]
            row.update(card=results[0]["card"], steps_per_s_each=rates, aggregate_steps_per_s=sum(rates))
        shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(row), flush=True)
        after_count()


# -- the table -------------------------------------------------------------------------------------

def bench_profile(name: str, path: str, device: torch.device, warmup: int, steps: int, budget: Budget) -> dict:
    """Where one step's time goes: :func:`profile_step` on a fresh ``path`` step of ``name`` after warm-up."""
    row: dict = {"model": name, "path": path, "steps": steps, "batch": MODELS[name].batch}
    if not budget.allows(f"profile {name} {path}"):
        row["error"] = "skipped: over the time budget"
        return row
    how = parse_path(path)
    torch._dynamo.reset()
    network, shape = build(name, device, channels_last=how.channels_last)
    try:
        step = Step(network, shape, MODELS[name].batch, device, path)
        for _ in range(warmup_steps(path, warmup)):
            step()
        row.update(profile_step(step, device, steps))
    except Exception as err:  # noqa: BLE001 - reported, not fatal
        row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
    print(json.dumps({k: v for k, v in row.items() if k != "top"}), flush=True)
    return row


def profile_step(step: Step, device: torch.device, steps: int) -> dict:
    """``steps`` steps of a warmed-up ``step`` under ``torch.profiler``.

    On CUDA: the device time of every kernel, summed per kernel name (``top``: the 15 largest, ms per
    step and share of all kernel time), and ``busy`` = Σ kernel time ÷ wall time of the profiled steps
    (near 1: the kernels bound the step; far below 1: launches and the host do). On the CPU: the
    self time of the 15 largest operators instead."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities) as profiler:
        began = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        wall = time.perf_counter() - began
    if on_gpu:  # kernels only: neither a CPU operator's device time nor a ``record_function`` range
        # (inductor's, torch.compile's) on the device timeline, both of which would count their kernels twice
        events = [e for e in profiler.key_averages()
                  if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
        spent = [getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0) for e in events]
    else:
        events = list(profiler.key_averages())
        spent = [e.self_cpu_time_total for e in events]
    total = sum(spent) or 1.0  # µs over all profiled steps
    ranked = sorted(zip(spent, events), key=lambda pair: -pair[0])[:15]
    return {"steps": steps, "wall_ms_per_step": 1e3 * wall / steps, "timed_ms_per_step": total / 1e3 / steps,
            "busy": total / 1e6 / wall if on_gpu else None,
            "top": [{"name": e.key[:160], "calls_per_step": e.count / steps, "ms_per_step": t / 1e3 / steps,
                     "share": t / total} for t, e in ranked]}


def table(report: dict) -> str:
    """The measurements as plain-text tables; each model's paths in the order measured, with their speed
    as a multiple of the first one's (the baseline of that run, e.g. ``previous``)."""
    lines = []
    for row in report["models"]:
        paths = [k[: -len("_steps_per_s")] for k in row if k.endswith("_steps_per_s")]
        for key in paths:
            mfu = f"{100 * row[key + '_mfu']:5.1f} %" if key + "_mfu" in row else "   —   "
            peak = f"{row[key + '_peak_gib']:5.1f}" if key + "_peak_gib" in row else "  —  "
            ratio = row[key + "_steps_per_s"] / row[paths[0] + "_steps_per_s"]
            lines.append(f"{row['model']:<20} {key:<42} {row[key + '_steps_per_s']:8.2f} steps/s "
                         f"{ratio:5.2f}× {paths[0]:<10} MFU {mfu}  {peak} GiB  ({row[key + '_seconds']:.0f} s)")
        for key in (k for k in row if k.endswith("_error")):
            lines.append(f"{row['model']:<20} {key[:-6]:<42} {row[key]}")
    for row in report.get("attention", []):
        value = f"{row['ms_forward_backward']:8.3f} ms" if "ms_forward_backward" in row else row.get("error", "")
        kept = f"  key blocks kept {100 * row['key_blocks_kept']:.0f} %" if "key_blocks_kept" in row else ""
        lines.append(f"attention {row['kernel']:<16} window {row['window']!s:<5} block {row['block_size']!s:<5} "
                     f"{value}{kept}")
    for row in report.get("procs", []):
        value = (f"{row['aggregate_steps_per_s']:8.2f} steps/s in all" if "aggregate_steps_per_s" in row
                 else row.get("error", ""))
        lines.append(f"procs {row['model']:<16} P={row['processes']:<2} MPS {row['mps']!s:<5} {value}")
    if report.get("mps_error"):
        lines.append(f"MPS: {report['mps_error']}")
    for row in report.get("profile", []):
        if "error" in row:
            lines.append(f"profile {row['model']} {row['path']}: {row['error']}")
            continue
        busy = f", device busy {100 * row['busy']:.0f} %" if row["busy"] is not None else ""
        lines.append(f"profile {row['model']} {row['path']}: {row['wall_ms_per_step']:.2f} ms per step, "
                     f"{row['timed_ms_per_step']:.2f} ms {'in kernels' if busy else 'in operators'}{busy}")
        lines += [f"    {100 * e['share']:5.1f} %  {e['ms_per_step']:7.3f} ms  ×{e['calls_per_step']:<5.0f} {e['name'][:90]}"
                  for e in row["top"][:8]]
    if report.get("skipped"):
        lines.append(f"skipped (budget): {', '.join(report['skipped'])}")
    return "\n".join(lines)


def measure(args, device: torch.device, peak: float | None, budget: Budget, report: dict, write) -> None:
    """The cases the arguments name, in order, each written to the report as it ends."""
    paths = args.paths.split(",")
    if args.attention:
        report["attention"] = bench_attention(
            device, [int(w) for w in args.attention_windows.split(",")], [int(b) for b in args.block_sizes.split(",")],
            args.batch or 64, args.attention_seconds, budget, args.attention_mode)
        write()
    profiles = [tuple(entry.split(":")) for entry in filter(None, args.profile.split(","))]
    models = list(filter(None, args.models.split(",")))
    for name in models:
        chosen = [p for p in paths if (args.compile_models is None or name in args.compile_models.split(",")
                                       or not parse_path(p).mode)
                  and (args.cl_models is None or name in args.cl_models.split(",") or not parse_path(p).channels_last)]
        profiled = [path for model, path in profiles if model == name and path in chosen]

        def keep(row: dict, name=name) -> None:  # the model's row so far, its profiles apart, written out
            for key in [k for k in row if k.endswith("_profile")]:
                report["profile"].append({"model": name, "path": key[: -len("_profile")],
                                          "batch": MODELS[name].batch, **row.pop(key)})
            write()

        report["models"].append({"model": name})  # in the report from the start: a stopped run keeps its cases
        bench_model(name, device, chosen, args.warmup, args.seconds, peak, budget, profiled, args.profile_steps,
                    row=report["models"][-1], after_case=keep)
    for entry in filter(None, args.stacked.split(",")):
        name, count = entry.split(":")
        report["stacked"].append(bench_stacked(name, int(count), device, args.warmup, args.seconds))
        print(json.dumps(report["stacked"][-1]), flush=True)
        write()
    for name, path in profiles:
        if any(row["model"] == name and row["path"] == path for row in report["profile"]):
            continue  # profiled with its timing
        if any(row["model"] == name and f"{path}_error" in row for row in report["models"]):
            report["profile"].append({"model": name, "path": path, "error": "not profiled: its timing failed or "
                                      "was skipped"})
            continue
        report["profile"].append(bench_profile(name, path, device, args.warmup, args.profile_steps, budget))
        write()
    if args.procs:
        name, counts = args.procs.split(":")
        counts = [int(c) for c in counts.split(",")]
        bench_procs(name, counts, args, None, budget, report["procs"], write)
        if peak is None:  # no CUDA context here: the card is the one its workers saw
            report["device"] = next((row["card"] for row in report["procs"] if "card" in row), report["device"])
        write()
        if args.mps and device.type == "cuda":
            mps = Mps()
            if mps.start():
                try:
                    bench_procs(name, [c for c in counts if c > 1], args, mps, budget, report["procs"], write)
                finally:
                    report["mps_log"] = mps.stop()
            report["mps_error"] = mps.error
            write()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=None, help=f"comma-separated, of {', '.join(MODELS)} (default: the first "
                        "seven, unless --attention or --procs is given)")
    parser.add_argument("--paths", default="previous,new,compiled", help="see the module doc")
    parser.add_argument("--batch", type=int, default=None, help="override every model's batch (CPU runs)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up steps (3× for compiled paths)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing per case")
    parser.add_argument("--compile-models", default=None, help="models that also run compiled paths (default all)")
    parser.add_argument("--cl-models", default=None, help="models that also run +cl paths (default all)")
    parser.add_argument("--stacked", default="", help="e.g. dit-small:16,unet-bf-small:16")
    parser.add_argument("--attention", action="store_true", help="time one zoo DiT attention layer alone")
    parser.add_argument("--attention-windows", default="3,7,13")
    parser.add_argument("--block-sizes", default="128,64")
    parser.add_argument("--attention-mode", default="default", help="compile mode of FlexAttention there")
    parser.add_argument("--attention-seconds", type=float, default=1.0, help="timing per attention case")
    parser.add_argument("--procs", default="", help="MODEL:P1,P2,.. concurrent training processes on one GPU")
    parser.add_argument("--procs-path", default="compiled")
    parser.add_argument("--procs-timeout", type=float, default=180.0, help="seconds for the processes to get ready")
    parser.add_argument("--mps", action="store_true", help="also run --procs under CUDA MPS")
    parser.add_argument("--profile", default="", help="MODEL:PATH,.. where a step's time goes (torch.profiler)")
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--budget", type=float, default=None, help="start no case after this many seconds")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name (parallel runs)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker-model", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    parser.add_argument("--worker-deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    if args.worker_model:
        return worker(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout`: clean up (children, MPS) on the way out
    # one compiled FlexAttention serves every window and block size of --attention (a recompile each)
    torch._dynamo.config.cache_size_limit = 64
    device = torch.device(args.device)
    if args.batch:
        for name, spec in MODELS.items():
            MODELS[name] = spec._replace(batch=args.batch)
    budget = Budget(args.budget)
    if args.models is None:
        args.models = "" if args.attention or args.procs or args.profile else ",".join(list(MODELS)[:7])
    touches_gpu = device.type == "cuda" and bool(args.models or args.stacked or args.attention or args.profile)
    peak = gemm_tflops(device) if touches_gpu else None
    card = torch.cuda.get_device_name(device) if touches_gpu else platform.processor() or device.type
    report = {"device": card, "torch": torch.__version__, "bf16_gemm_tflops": peak, "command": sys.argv,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": [], "stacked": [],
              "attention": [], "procs": [], "profile": []}
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list) or k == "command"}), flush=True)

    def write() -> None:  # after every case, so that a run cut short keeps what it measured
        report["skipped"] = budget.skipped
        report["seconds"] = time.perf_counter() - budget.began
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"training-{device.type}{'-' + args.tag if args.tag else ''}.json"
            # whole or not at all, also when the run is stopped mid-write
            replace_file(lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"), path)

    try:  # whatever stops the run (`timeout`'s SIGTERM, an error), the report keeps what was measured
        measure(args, device, peak, budget, report, write)
    finally:
        write()
    print(table(report), flush=True)


if __name__ == "__main__":
    main()
