"""Benchmark: biasprobe's Jacobian paths against the per-pixel loop, on one bias-free UNet and input.

Loop and dense are timed alternately ``--repeats`` times (the minimum is kept), in one run, on the
same network and noisy image. The network is Kadkhodaie et al.'s default size (3 blocks, widths
64 → 512) with random weights and batch-norm gains set to 1 (the cost does not depend on the
weights), or a trained ``--checkpoint`` (the top-k convergence does).

- ``loop``: the reference (Kadkhodaie et al.'s ``calc_jacobian``): one forward, then one
  ``autograd.grad`` per output pixel with ``retain_graph``;
- ``floor``: d times the median cost of one such backward pass;
- ``compute floor``: the arithmetic of the dense Jacobian (d rows, each counted with
  ``torch.utils.flop_counter``) at the float32 matrix-multiply throughput measured on the same
  device (a 4096² GEMM): no exact float32 method doing this arithmetic can run faster;
- ``dense``: :func:`biasprobe.autodiff.jacobian_matrix` in float32, and in the reduced
  precisions (default ``tf32`` and ``bf16`` on CUDA; none on the CPU, where bf16 ran 40× slower),
  with the error of their eigenvalues of (J + Jᵀ)/2 against float32's, relative to λ_0;
- ``top-k``: :func:`~biasprobe.eigensolvers.decompose` with ``randomized`` (and, with
  ``--lanczos``, ARPACK) for the top ``--top-k`` eigenpairs at each of ``--tolerances``.

Needs torch and this repository only (no xarray, zarr or typer; ``--checkpoint`` also needs
safetensors for .safetensors files)::

    python tests/benchmarks/bench_jacobian.py --device cpu --size 32
    python tests/benchmarks/bench_jacobian.py --device cpu --checkpoint data/checkpoints/unet-bf-n10000-s1.safetensors
    python tests/benchmarks/bench_jacobian.py --device cuda --size 80 --out DIR   # or BIASPROBE_BENCH_OUT=DIR

Writes ``DIR/jacobian-<device>-<size>[-<checkpoint>].json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import import_biasprobe

SIGMA = 0.1


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def setup(device: torch.device, size: int, checkpoint: str | None):
    """The default bias-free UNet (unit gains) or a trained checkpoint as a Denoiser, and a seeded noisy image."""
    from biasprobe.denoiser import NetworkDenoiser
    from biasprobe.models import build_model, preset_config

    torch.manual_seed(0)
    if checkpoint:
        from biasprobe.formats import load

        denoiser = load(checkpoint, device)
        shape = denoiser.image_shape
    else:
        network = build_model("unet-bf", **preset_config("unet-bf", "default")).eval()
        with torch.no_grad():
            for name, parameter in network.named_parameters():
                if name.endswith("gammas"):
                    parameter.fill_(1.0)
        shape = (1, size, size)
        denoiser = NetworkDenoiser(network.to(device), shape, parameterization="residual")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, *shape, generator=generator)
    y = (x + SIGMA * torch.randn(x.shape, generator=generator)).to(device)
    return denoiser, y


def row_flops(operator) -> int:
    """Floating-point operations of one row uᵀJ (one vmapped backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        operator.rows(torch.zeros(1, operator.dimension, device=operator.device))
    return counter.get_total_flops()


def gemm_throughput(device: torch.device, side: int = 4096, repeats: int = 5) -> float:
    """Measured float32 matrix-multiply throughput (FLOP/s, TF32 off) of the device."""
    a = torch.randn(side, side, device=device)
    b = torch.randn(side, side, device=device)
    a @ b
    start = clock(device)
    for _ in range(repeats):
        a @ b
    return 2 * side**3 * repeats / (clock(device) - start)


def reference_loop(denoiser, y: torch.Tensor, rows: int) -> tuple[torch.Tensor, float]:
    """The first ``rows`` rows of J by one ``autograd.grad`` per output pixel (Kadkhodaie et al.)."""
    start = clock(y.device)
    inp = y.clone().requires_grad_(True)
    out = denoiser.denoise(inp, SIGMA)
    jac = [torch.autograd.grad(out.flatten()[i], inp, retain_graph=True)[0].flatten() for i in range(rows)]
    return torch.stack(jac), clock(y.device) - start


def one_backward(denoiser, y: torch.Tensor, repeats: int = 20) -> float:
    """Median time of one backward pass of one output pixel through a retained graph."""
    inp = y.clone().requires_grad_(True)
    out = denoiser.denoise(inp, SIGMA)
    times = []
    for i in range(repeats + 2):
        start = clock(y.device)
        torch.autograd.grad(out.flatten()[i], inp, retain_graph=True)
        times.append(clock(y.device) - start)
    return statistics.median(times[2:])


def timed(device: torch.device, fn):
    start = clock(device)
    result = fn()
    return result, clock(device) - start


def symmetric_eigenvalues(jac: torch.Tensor) -> torch.Tensor:
    jac = jac.double()
    return torch.linalg.eigvalsh((jac + jac.T) / 2).flip(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=32, help="image side (grey images, d = size²)")
    parser.add_argument("--checkpoint", default=None, help="a trained denoiser instead of the random default UNet")
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--tolerances", default="1e-2,1e-3", help="residual tolerances of the top-k paths")
    parser.add_argument("--loop-rows", type=int, default=None, help="time only this many loop rows and scale to d")
    parser.add_argument("--repeats", type=int, default=2, help="timings of loop and dense (the minimum is kept)")
    parser.add_argument("--precisions", default=None,
                        help="reduced precisions to time, e.g. tf32,bf16 (default: both on CUDA, none on the CPU)")
    parser.add_argument("--lanczos", action="store_true", help="also time ARPACK (slow: one vector per product)")
    parser.add_argument("--out", default=os.environ.get("BIASPROBE_BENCH_OUT"), help="folder for the JSON result")
    args = parser.parse_args()

    import_biasprobe()
    from biasprobe.autodiff import JacobianOperator, jacobian_matrix
    from biasprobe.eigensolvers import decompose

    device = torch.device(args.device)
    # strict float32 everywhere unless a path asks for TF32 itself (cuDNN allows TF32 by default,
    # which would time the loop and the floor at a lower precision than "dense float32")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    denoiser, y = setup(device, args.size, args.checkpoint)
    d = y.numel()
    jacobian_matrix(denoiser, y, SIGMA)  # warm-up (allocators, kernels)
    rows = args.loop_rows or d
    loop_times, dense_times = [], []
    for _ in range(args.repeats):  # alternate loop and dense so that a busy machine slows both alike
        loop_rows, seconds = reference_loop(denoiser, y, rows)
        loop_times.append(seconds * d / rows)
        dense, seconds = timed(device, lambda: jacobian_matrix(denoiser, y, SIGMA))
        dense_times.append(seconds)
    loop_seconds = min(loop_times)
    flops = row_flops(JacobianOperator(denoiser, y, SIGMA)) * d
    throughput = gemm_throughput(device)
    timings = {"loop" + ("" if rows == d else f" (×{d / rows:.0f} of {rows} rows)"): loop_seconds,
               "floor (d × one backward)": one_backward(denoiser, y) * d,
               "compute floor (dense FLOP at float32 GEMM speed)": flops / throughput,
               "dense float32": min(dense_times)}
    floor = timings["floor (d × one backward)"]
    arithmetic = {"dense FLOP": flops, "float32 GEMM FLOP/s (measured)": throughput,
                  "dense float32 FLOP/s": flops / timings["dense float32"]}
    errors = {"dense float32: max |J − J_loop| over the loop's rows": float((dense[:rows] - loop_rows).abs().max())}
    reference = symmetric_eigenvalues(dense)
    precisions = args.precisions.split(",") if args.precisions else (["tf32", "bf16"] if device.type == "cuda" else [])
    for precision in precisions:
        reduced, timings[f"dense {precision}"] = timed(
            device, lambda precision=precision: jacobian_matrix(denoiser, y, SIGMA, precision=precision)
        )
        error = (symmetric_eigenvalues(reduced) - reference).abs().max() / reference[0].abs()
        errors[f"dense {precision}: max |Δλ| / λ0"] = float(error)

    methods = ["randomized", "lanczos"] if args.lanczos else ["randomized"]
    topk = {}
    for method in methods:
        for tolerance in map(float, args.tolerances.split(",")):
            def top_k(method: str = method, tolerance: float = tolerance):
                operator = JacobianOperator(denoiser, y, SIGMA)
                return decompose(operator, method, args.top_k, tolerance=tolerance)

            label = f"top-{args.top_k} {method}, tolerance {tolerance:g}"
            result, timings[label] = timed(device, top_k)
            topk[label] = {
                "products": result.products, "max_residual": float(result.eigen_residual.max()),
                "max |Δλ| / λ0 vs dense": float(abs(result.spectrum - reference[: args.top_k].cpu().numpy()).max()
                                                / float(reference[0])),
            }

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    network = Path(args.checkpoint).stem if args.checkpoint else "bias-free UNet (default size, random)"
    report = {"device": name, "torch": torch.__version__, "network": network, "image": list(y.shape[1:]), "d": d,
              "seconds": timings, "arithmetic": arithmetic, "errors": errors, "top_k": topk,
              "asymmetry ‖J − Jᵀ‖/‖J‖": float(torch.linalg.matrix_norm(dense - dense.T) / torch.linalg.matrix_norm(dense))}
    print(f"## Jacobian, {network}, {'×'.join(map(str, y.shape[1:]))}, {name}\n")
    print("| path | seconds | loop / path | path / floor |\n|---|---:|---:|---:|")
    for label, seconds in timings.items():
        print(f"| {label} | {seconds:.3g} | {loop_seconds / seconds:.3g} | {seconds / floor:.3g} |")
    print()
    for label, value in {**arithmetic, **errors}.items():
        print(f"- {label}: {value:.3g}")
    for label, info in topk.items():
        print(f"- {label}: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()))
    print(f"- asymmetry ‖J − Jᵀ‖/‖J‖: {report['asymmetry ‖J − Jᵀ‖/‖J‖']:.3g}")
    if args.out:
        suffix = f"-{Path(args.checkpoint).stem}" if args.checkpoint else ""
        path = Path(args.out) / f"jacobian-{device.type}-{y.shape[-1]}{suffix}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
