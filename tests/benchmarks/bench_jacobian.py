"""Benchmark: biasprobe's Jacobian paths against the per-pixel loop, on one bias-free UNet and input.

Loop and dense are timed alternately ``--repeats`` times (the minimum is kept), in one run, on the same network (Kadkhodaie et al.'s default size: 3 blocks,
widths 64 → 512; batch-norm gains set to 1 so that J is far from the identity) and noisy image:

- ``loop``: the reference (Kadkhodaie et al.'s ``calc_jacobian``): one forward, then one
  ``autograd.grad`` per output pixel with ``retain_graph``;
- ``floor``: d times the median cost of one such backward pass;
- ``dense``: :func:`biasprobe.analyses.jacobian.jacobian_matrix` in float32, and in the reduced
  precisions (default ``tf32`` and ``bf16`` on CUDA; none on the CPU, where bf16 ran 40× slower),
  with the error of their eigenvalues of (J + Jᵀ)/2 against float32's, relative to λ_0;
- ``top-k``: :func:`~biasprobe.analyses.jacobian.decompose` with ``randomized`` (and, with
  ``--lanczos``, ARPACK) for the top ``--top-k`` eigenpairs at tolerance 1e-3.

Needs torch and this repository only (no xarray, zarr or typer)::

    python tests/benchmarks/bench_jacobian.py --device cpu --size 32
    python tests/benchmarks/bench_jacobian.py --device cuda --size 80 --out DIR   # or BIASPROBE_BENCH_OUT=DIR

Writes ``DIR/jacobian-<device>-<size>.json`` and prints a Markdown table.
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
from common import import_biasprobe  # noqa: E402

SIGMA = 0.1


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def setup(device: torch.device, size: int):
    """The default bias-free UNet (unit gains) as a Denoiser, and a seeded noisy image."""
    from biasprobe.denoiser import NetworkDenoiser
    from biasprobe.models import build_model, preset_config

    torch.manual_seed(0)
    network = build_model("unet-bf", **preset_config("unet-bf", "default")).eval()
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith("gammas"):
                parameter.fill_(1.0)
    denoiser = NetworkDenoiser(network.to(device), (1, size, size), parameterization="residual")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, size, size, generator=generator)
    y = (x + SIGMA * torch.randn(x.shape, generator=generator)).to(device)
    return denoiser, y


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
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--loop-rows", type=int, default=None, help="time only this many loop rows and scale to d")
    parser.add_argument("--repeats", type=int, default=2, help="timings of loop and dense (the minimum is kept)")
    parser.add_argument("--precisions", default=None,
                        help="reduced precisions to time, e.g. tf32,bf16 (default: both on CUDA, none on the CPU)")
    parser.add_argument("--lanczos", action="store_true", help="also time ARPACK (slow: one vector per product)")
    parser.add_argument("--out", default=os.environ.get("BIASPROBE_BENCH_OUT"), help="folder for the JSON result")
    args = parser.parse_args()

    import_biasprobe()
    from biasprobe.analyses.jacobian import JacobianOperator, decompose, jacobian_matrix

    device = torch.device(args.device)
    # strict float32 everywhere unless a path asks for TF32 itself (cuDNN allows TF32 by default,
    # which would time the loop and the floor at a lower precision than "dense float32")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    denoiser, y = setup(device, args.size)
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
    floor = one_backward(denoiser, y) * d
    timings = {"loop" + ("" if rows == d else f" (×{d / rows:.0f} of {rows} rows)"): loop_seconds,
               "floor (d × one backward)": floor, "dense float32": min(dense_times)}
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
        def top_k(method: str = method):
            operator = JacobianOperator(denoiser, y, SIGMA)
            return decompose(operator, method, args.top_k, tolerance=1e-3)

        result, timings[f"top-{args.top_k} {method}"] = timed(device, top_k)
        topk[method] = {"products": result.products, "max_residual": float(result.eigen_residual.max()),
                        "max |Δλ| / λ0 vs dense": float(abs(result.spectrum - reference[: args.top_k].cpu().numpy()).max()
                                                        / float(reference[0]))}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    report = {"device": name, "torch": torch.__version__, "image": [1, args.size, args.size], "d": d,
              "seconds": timings, "errors": errors, "top_k": topk}
    print(f"## Jacobian, bias-free UNet (default size), 1×{args.size}×{args.size}, {name}\n")
    print("| path | seconds | loop / path | path / floor |\n|---|---:|---:|---:|")
    for label, seconds in timings.items():
        print(f"| {label} | {seconds:.2f} | {loop_seconds / seconds:.2f} | {seconds / floor:.2f} |")
    print()
    for label, value in errors.items():
        print(f"- {label}: {value:.2e}")
    for method, info in topk.items():
        print(f"- top-{args.top_k} {method}: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()))
    if args.out:
        path = Path(args.out) / f"jacobian-{device.type}-{args.size}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
