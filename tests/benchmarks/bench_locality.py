"""Benchmark: attention capture with in-hook reduction against a plain forward of a DiT-XS/1.

Modes, each on the same images and in the same run:

- ``plain``: the network's own forward (fused scaled-dot-product attention);
- ``explicit``: observers that do nothing, i.e. the cost of materialising softmax(QKᵀ/√d);
- ``reduced``: :class:`~biasprobe.analyses.capture.LocalityObserver` on every layer (all metrics);
- ``reduced+maps``: the same, also keeping every other layer's head-averaged map (``--figure``'s default);
- ``reduced-fused``: ``reduced`` with ``capture_attention(..., fused_output=True)``: each layer's output by fused
  attention, the probabilities computed beside it for the observer alone.

Reports the median wall time of ``--repeats`` forwards, its ratio to ``plain``, and the peak
memory above the model and inputs: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the
growth of the peak resident set size, each mode in a fresh process. Also reports what keeping
the full maps of every layer would hold, for comparison.

Needs torch and this repository only (no xarray, zarr or typer)::

    python tests/benchmarks/bench_locality.py --device cuda --out DIR   # or BIASPROBE_BENCH_OUT=DIR

Writes ``DIR/locality.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import import_biasprobe

MODES = ("plain", "explicit", "reduced", "reduced+maps", "reduced-fused")
WINDOWS = (3, 5, 7)


def setup(device: str, images: int):
    """A DiT-XS/1 on 32×32 colour images, its attention modules, and a noisy batch."""
    from biasprobe.models import build_model, preset_config

    torch.manual_seed(0)
    network = build_model("dit", **preset_config("dit", "xs"), image_size=32, channels=3).to(device).eval()
    x = torch.randn(images, 3, 32, 32, device=device)
    t = torch.full((images,), 100.0, device=device)
    return network, x, t


def run_mode(mode: str, network, x, t) -> None:
    """One forward of ``network`` under ``mode``."""
    from biasprobe.analyses.capture import LocalityObserver, capture_attention
    from biasprobe.models import attention_modules

    modules = attention_modules(network)
    names = list(modules)
    if mode == "plain":
        network(x, t)
        return
    if mode == "explicit":
        with capture_attention(modules, lambda name, module, probs: None):
            network(x, t)
        return
    edges = [float(edge) for edge in range(47)]  # 1-pixel bins past the 32×32 diagonal (43.8)
    observer = LocalityObserver(WINDOWS, edges, map_layers=names[1::2] if mode == "reduced+maps" else ())
    with capture_attention(modules, observer, fused_output=mode == "reduced-fused"):
        network(x, t)
    observer.collect(names)
    observer.take_maps()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_mode(mode: str, network, x, t, device: str, repeats: int) -> float:
    """Median seconds of one forward under ``mode``, after one warm-up."""
    run_mode(mode, network, x, t)
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run_mode(mode, network, x, t)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def peak_memory(mode: str, device: str, images: int) -> int:
    """Bytes of peak memory a forward under ``mode`` adds above the model and inputs."""
    if device.startswith("cuda"):
        network, x, t = setup(device, images)
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_mode(mode, network, x, t)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - baseline
    # A fixed mmap threshold makes glibc map every large tensor and unmap it when freed, so the
    # resident set follows the live tensors instead of the allocator's retained heap.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    child = subprocess.run(
        [sys.executable, __file__, "--rss-of", mode, "--images", str(images)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return int(child.stdout.split()[-1])


def peak_rss() -> int:
    """Peak resident set of this process in bytes (Linux VmHWM, which unlike ru_maxrss survives no exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def rss_growth(mode: str, images: int) -> int:
    """In a fresh process: growth of the peak resident set (bytes) over one CPU forward under ``mode``."""
    network, x, t = setup("cpu", images)
    before = peak_rss()
    with torch.no_grad():
        run_mode(mode, network, x, t)
    return peak_rss() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("BIASPROBE_BENCH_OUT", "bench-results"))
    )
    parser.add_argument("--rss-of", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import_biasprobe()
    if args.rss_of:
        print(rss_growth(args.rss_of, args.images))
        return

    network, x, t = setup(args.device, args.images)
    with torch.no_grad():
        seconds = {mode: time_mode(mode, network, x, t, args.device, args.repeats) for mode in MODES}
        memory = {mode: peak_memory(mode, args.device, args.images) for mode in MODES}
    heads, tokens = network.blocks[0].attn.heads, network.grid[0] * network.grid[1]
    full_maps = len(network.blocks) * args.images * heads * tokens**2 * 4
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    )
    results = {
        "model": "DiT-XS/1 (depth 12, width 252, 4 heads), 32×32×3, 1024 tokens",
        "images": args.images,
        "repeats": args.repeats,
        "device": args.device,
        "device_name": device_name,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seconds": seconds,
        "ratio_to_plain": {mode: seconds[mode] / seconds["plain"] for mode in MODES},
        "peak_memory_bytes": memory,
        "memory_kind": "torch.cuda.max_memory_allocated above model+inputs"
        if args.device.startswith("cuda")
        else "growth of peak RSS over one forward, fresh process per mode",
        "full_maps_all_layers_bytes": full_maps,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "locality.json").write_text(json.dumps(results, indent=2))
    print(
        f"{results['model']}, {args.images} images, {args.device} ({device_name}, "
        f"{results['cpu_threads']} threads), torch {torch.__version__}, median of {args.repeats}\n"
    )
    print("| mode | time per forward (s) | × plain | peak memory (MiB) |\n| --- | --- | --- | --- |")
    for mode in MODES:
        print(
            f"| {mode} | {seconds[mode]:.3f} | {results['ratio_to_plain'][mode]:.2f} "
            f"| {memory[mode] / 2**20:.0f} |"
        )
    print(
        f"\nkeeping every layer's full maps instead: {full_maps / 2**20:.0f} MiB; "
        f"wrote {args.out / 'locality.json'}"
    )


if __name__ == "__main__":
    main()
