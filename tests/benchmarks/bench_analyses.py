"""Benchmark (issue 28): the analyses at the speed of the device, each time against a floor measured in the same run.

Parts (``--parts``, default every one but ``fallback``):

- ``dense``: for each model of ``--models`` (default the zoo's N = 10 DiT, DDPM UNet and bias-free UNet: 32×32
  grey, d = 1024), one dense ∂D/∂y (:func:`biasprobe.autodiff.jacobian_matrix`) per precision (float32 on the
  CPU; float32, tf32 and bf16 on CUDA), the least of ``--repeats`` timings after a warm-up, as Jacobians per
  second and as a multiple of its **compute floor**: d rows × the FLOPs of one row (one vmapped backward, counted
  by ``torch.utils.flop_counter``) at the matrix-product throughput of that precision measured in this run (a
  square GEMM of ``--gemm`` sides). The reduced precisions report their deviation from float32 on the same y: the
  largest |Δλ|/λ₀ over the eigenvalues of (J + Jᵀ)/2 and the largest principal angle (degrees) between the
  top-8 eigenspaces.
- ``batched``: for each model, ``--images`` dense ∂D/∂y at one σ through :func:`biasprobe.autodiff.dense_jacobians`
  in the batches :func:`~biasprobe.autodiff.images_per_batch` allows (what ``jacobian`` and the GAHB survey do)
  against the same images one at a time, in the same run: Jacobians per second both ways, their ratio, the batch,
  and the batched rate as a multiple of the compute floor above.
- ``topk``: the top-32 and top-100 eigenpairs (randomized; ``--lanczos`` adds ARPACK) of ∂D/∂y of the Wiener filter
  of a 3×256×256 stationary Gaussian image model (d = 196 608; its spectrum decays slowly and is known exactly,
  :class:`biasprobe.analyses.reference.GaussianImageModel`): seconds, the worst residual ‖Se − λe‖/|λ| and the
  worst error against the exact eigenvalues, relative to λ₀.

- ``survey``: for each model, the GAHB survey (:func:`biasprobe.analyses.survey.gahb_survey`: dense ∂D/∂y, eigenpairs
  of S, span test against 30 000 training images) per Jacobian, against a bare dense ∂D/∂y of the same model in the
  same run: what a survey costs beyond its Jacobians (the float64 linear algebra and the span test).

- ``fallback``: issue 25's CPU fallback for the GAHB survey: for each model, the top :data:`FALLBACK_K` eigenpairs of
  (J + Jᵀ)/2 of ∂D/∂y at one noisy image (what a survey judges, ``biasprobe.analyses.survey.SURVEY_RANKS``) by the
  matrix-free methods (``--fallback-methods``, default lanczos; without singular triplets, as the survey asks)
  against the dense Jacobian and its eigh in the same run: seconds, J-products, the worst residual, the largest |Δλ|/λ₀ against dense and the largest principal angle
  between the top-8 eigenspaces, and the time as a multiple of dense's.

- ``xl``: a DiT-XL/2-sized facebookresearch checkpoint (28 layers, width 1152, 16 heads, patch 2, 32×32×4
  latents: 256 tokens; built here with the reference architecture, random weights moved off adaLN-Zero, saved as a
  ``train.py`` checkpoint and loaded through the ``dit-pt`` format; ``--xl-depth``/``--xl-width``/``--xl-heads``
  shrink it for a test): the forward time of one latent, ``locality`` over ``--xl-latents`` latents × 4 σ and the
  top-32 eigenpairs (randomized) of ∂D/∂y at ``--xl-jacobians`` latents, each per latent and against the forward;
  peak GPU memory; and ``biasprobe jacobian`` and ``biasprobe locality`` on the file from the command line (exit
  codes and wall time).

Not here yet (issue 28's GPU parts): the untrained 3×256×256 DDPM UNet's top-k (``bench_jacobian.py --size
256``) and the locality capture against a plain forward (``bench_locality.py`` measures a DiT-XS/1).

Needs torch and this repository (and safetensors for the zoo's checkpoints)::

    python tests/benchmarks/bench_analyses.py --device cpu --out DIR        # or BIASPROBE_BENCH_OUT=DIR
    python tests/benchmarks/bench_analyses.py --device cuda --out $OUT

Writes ``DIR/analyses-<device>.json`` after each part (so a run cut off by a time limit keeps the parts it
finished) and prints each part's Markdown rows as it ends. A part that fails is recorded under ``failed`` with its
error (traceback on stderr), the other parts still run, and the run exits non-zero.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPOSITORY, import_biasprobe

SIGMA = 0.1
ZOO = ("dit-n10", "unet-ddpm-n10", "unet-bf-n10-s1")


def clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def gemm_throughput(device: torch.device, precision: str, side: int, repeats: int = 5) -> float:
    """FLOP/s of a side² matrix product in ``precision`` (float32 with TF32 off, tf32 with it on, bf16)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        a, b = (torch.randn(side, side, device=device, dtype=dtype) for _ in range(2))
        a @ b
        start = clock(device)
        for _ in range(repeats):
            a @ b
        return 2 * side**3 * repeats / (clock(device) - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def row_flops(denoiser, y: torch.Tensor, precision: str) -> int:
    """FLOPs of one row uᵀJ of ∂D/∂y (one vmapped backward through the kept forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    from biasprobe.autodiff import JacobianOperator

    operator = JacobianOperator(denoiser, y, SIGMA, output="denoised", precision=precision)
    with FlopCounterMode(display=False) as counter:
        operator.rows(torch.zeros(1, operator.dimension, device=operator.device))
    return counter.get_total_flops()


def symmetric_eigen(jac: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    jac = jac.double().cpu()
    values, vectors = torch.linalg.eigh((jac + jac.T) / 2)
    return values.flip(0), vectors.flip(1)


def deviation(reference: torch.Tensor, other: torch.Tensor, top: int = 8) -> dict:
    """max |Δλ|/λ₀ over every eigenvalue of (J + Jᵀ)/2, and the largest principal angle between top-8 eigenspaces."""
    ref_values, ref_vectors = symmetric_eigen(reference)
    values, vectors = symmetric_eigen(other)
    cosines = torch.linalg.svdvals(ref_vectors[:, :top].T @ vectors[:, :top]).clamp(max=1.0)
    return {"eigenvalue_error_rel": float((values - ref_values).abs().max() / ref_values[0].abs()),
            "top8_subspace_angle_deg": float(torch.rad2deg(torch.arccos(cosines.min())))}


def noisy_images(denoiser, count: int, seed: int, device: torch.device) -> torch.Tensor:
    """``count`` uniform random images of the denoiser's shape with noise of σ = SIGMA, seeded, on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, *denoiser.image_shape, generator=generator)
    return (x + SIGMA * torch.randn(x.shape, generator=generator)).to(device)


def dense_part(models: list[str], device: torch.device, precisions: list[str], repeats: int, gemm: int) -> list[dict]:
    from biasprobe.autodiff import jacobian_matrix
    from biasprobe.formats import load

    throughput = {p: gemm_throughput(device, p, gemm) for p in precisions}
    rows = []
    for path in models:
        denoiser = load(path, device=device)
        y = noisy_images(denoiser, 1, 0, device)
        d = y[0].numel()
        reference = None
        for precision in precisions:
            flops = d * row_flops(denoiser, y, precision)
            jacobian_matrix(denoiser, y, SIGMA, precision=precision)  # warm-up
            times = []
            for _ in range(repeats):
                start = clock(device)
                jac = jacobian_matrix(denoiser, y, SIGMA, precision=precision)
                times.append(clock(device) - start)
            seconds = min(times)
            row = {"model": Path(path).stem, "d": d, "precision": precision, "seconds": seconds,
                   "jacobians_per_s": 1 / seconds, "flops": flops, "gemm_flops_per_s": throughput[precision],
                   "floor_s": flops / throughput[precision], "times_floor": seconds * throughput[precision] / flops}
            if precision == "float32":
                reference = jac
            elif reference is not None:
                row |= deviation(reference, jac)
            rows.append(row)
            print(f"dense {row['model']} {precision}: {seconds:.3g} s ({row['times_floor']:.1f}× its floor)",
                  flush=True)
    return rows


def _time_batches(denoiser, ys: torch.Tensor, precision: str, device: torch.device, size: int) -> float:
    """Seconds for the dense Jacobians of all ``ys``, ``size`` images at a time."""
    from biasprobe.autodiff import dense_jacobians

    start = clock(device)
    for first in range(0, len(ys), size):
        dense_jacobians(denoiser, ys[first:first + size], SIGMA, precision=precision)
    return clock(device) - start


def batched_part(models: list[str], device: torch.device, precisions: list[str], images: int, gemm: int) -> list[dict]:
    from biasprobe.autodiff import images_per_batch
    from biasprobe.formats import load

    throughput = {p: gemm_throughput(device, p, gemm) for p in precisions}
    rows = []
    for path in models:
        denoiser = load(path, device=device)
        ys = noisy_images(denoiser, images, 1, device)
        for precision in precisions:
            batch = min(images, images_per_batch(denoiser, ys[:1], SIGMA, precision=precision))
            flops = ys[0].numel() * row_flops(denoiser, ys[:1], precision)

            run = functools.partial(_time_batches, denoiser, ys, precision, device)
            run(batch), run(1)  # warm-up
            together, alone = run(batch), run(1)
            row = {"model": Path(path).stem, "precision": precision, "images": images, "batch": batch,
                   "batched_jacobians_per_s": images / together, "alone_jacobians_per_s": images / alone,
                   "speedup": alone / together, "times_floor": together / images * throughput[precision] / flops}
            rows.append(row)
            print(f"batched {row['model']} {precision}: batch {batch}, {row['speedup']:.2f}× one at a time "
                  f"({row['times_floor']:.1f}× its floor)", flush=True)
    return rows


def topk_part(device: torch.device, ks: list[int], lanczos: bool, tolerance: float) -> list[dict]:
    from biasprobe.analyses.reference import GaussianImageModel
    from biasprobe.autodiff import JacobianOperator
    from biasprobe.eigensolvers import decompose

    model = GaussianImageModel((3, 256, 256))
    denoiser = model.denoiser()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 256, 256, generator=generator)
    y = (x + SIGMA * torch.randn(x.shape, generator=generator)).to(device)
    exact = torch.as_tensor(model.eigenvalues(SIGMA).copy())
    rows = []
    for method in ("randomized", *(("lanczos",) if lanczos else ())):
        for k in ks:
            operator = JacobianOperator(denoiser, y, SIGMA, output="denoised")
            start = clock(device)
            found = decompose(operator, method, k, tolerance=tolerance, seed=0, singular=False)  # as the survey
            seconds = clock(device) - start
            values = torch.as_tensor(found.spectrum[:k])
            rows.append({"method": method, "k": k, "d": y[0].numel(), "seconds": seconds,
                         "products": int(found.products), "worst_residual": float(max(found.eigen_residual[:k])),
                         "eigenvalue_error_rel": float((values - exact[:k]).abs().max() / exact[0])})
            print(f"top-{k} {method}: {seconds:.3g} s, {rows[-1]['products']} products, worst residual "
                  f"{rows[-1]['worst_residual']:.2g}", flush=True)
    return rows


FALLBACK_K = 128
"""Eigenpairs of the fallback part: the survey's SURVEY_RANKS (up to 64 λ > 1 skipped, then K ≤ 64 judged)."""


def fallback_part(models: list[str], device: torch.device, methods: list[str], tolerance: float,
                  k: int = FALLBACK_K) -> list[dict]:
    from biasprobe.autodiff import JacobianOperator, jacobian_matrix
    from biasprobe.eigensolvers import decompose
    from biasprobe.formats import load

    rows = []
    for path in models:
        denoiser = load(path, device=device)
        y = noisy_images(denoiser, 1, 2, device)
        start = clock(device)
        values, vectors = symmetric_eigen(jacobian_matrix(denoiser, y, SIGMA))
        dense_s = clock(device) - start
        rows.append({"model": Path(path).stem, "method": "dense", "k": k, "seconds": dense_s,
                     "products": y[0].numel(), "times_dense": 1.0})
        print(f"fallback {rows[-1]['model']} dense: {dense_s:.3g} s", flush=True)
        for method in methods:
            operator = JacobianOperator(denoiser, y, SIGMA, output="denoised")
            start = clock(device)
            found = decompose(operator, method, k, tolerance=tolerance, seed=0, singular=False)  # as the survey
            seconds = clock(device) - start
            top = torch.as_tensor(found.spectrum[:k]).double()
            basis = torch.as_tensor(found.eigenvectors[:8]).double().T
            cosines = torch.linalg.svdvals(vectors[:, :8].T @ basis).clamp(max=1.0)
            rows.append({"model": Path(path).stem, "method": method, "k": k, "seconds": seconds,
                         "products": int(found.products), "times_dense": seconds / dense_s,
                         "worst_residual": float(max(found.eigen_residual[:k])),
                         "eigenvalue_error_rel": float((top - values[:k]).abs().max() / values[0].abs()),
                         "top8_subspace_angle_deg": float(torch.rad2deg(torch.arccos(cosines.min())))})
            print(f"fallback {rows[-1]['model']} {method} top-{k}: {seconds:.3g} s "
                  f"({rows[-1]['times_dense']:.2f}× dense), {rows[-1]['products']} products, worst residual "
                  f"{rows[-1]['worst_residual']:.1e}", flush=True)
    return rows


SURVEY_TRAINING = 30000
"""Training images of the survey part (the zoo's largest N): its span test searches them for each D(y)."""


def survey_part(models: list[str], device: torch.device, images: int = 2, sigmas: tuple[float, ...] = (0.1, 0.5)
                ) -> list[dict]:
    """The GAHB survey's cost per Jacobian against a bare dense ∂D/∂y of the same model (its floor here): ``images``
    test and as many training images × ``sigmas``, one draw, with the span test over :data:`SURVEY_TRAINING`
    uniform random training images and 300 held-out ones (the timing does not depend on what they show)."""
    from biasprobe.analyses.survey import gahb_survey
    from biasprobe.autodiff import jacobian_matrix
    from biasprobe.formats import load

    rows = []
    for path in models:
        denoiser = load(path, device=device)
        generator = torch.Generator().manual_seed(5)
        training = torch.rand(SURVEY_TRAINING, *denoiser.image_shape, generator=generator)
        held_out = torch.rand(300, *denoiser.image_shape, generator=generator)
        y = noisy_images(denoiser, 1, 2, device)
        jacobian_matrix(denoiser, y, SIGMA)  # warm-up
        start = clock(device)
        jacobian_matrix(denoiser, y, SIGMA)
        bare = clock(device) - start
        survey = functools.partial(gahb_survey, denoiser, held_out[:images], list(sigmas), draws=1,
                                   training_images=training, training_analysed=images, held_out_images=held_out)
        survey()  # warm-up
        start = clock(device)
        survey()
        count = 2 * images * len(sigmas)
        per_jacobian = (clock(device) - start) / count
        rows.append({"model": Path(path).stem, "jacobians": count, "seconds_per_jacobian": per_jacobian,
                     "bare_jacobian_s": bare, "times_bare": per_jacobian / bare})
        print(f"survey {rows[-1]['model']}: {per_jacobian:.3g} s a Jacobian, {rows[-1]['times_bare']:.2f}× a bare "
              f"dense ∂D/∂y ({bare:.3g} s)", flush=True)
    return rows


XL_SIGMAS = (0.25, 0.5, 1.0, 2.0)
"""σ of the DiT-XL/2 part, in latent units (the latents here are standard normal)."""


def xl_part(device: torch.device, depth: int, width: int, heads: int, latents: int, jacobians: int,
            folder: Path) -> dict:
    import argparse as arguments
    import subprocess

    import numpy as np

    from biasprobe.analyses.jacobian import jacobian
    from biasprobe.analyses.locality import locality
    from biasprobe.formats import load
    from biasprobe.models.dit_reference import ClassConditionalDiT

    torch.manual_seed(0)
    network = ClassConditionalDiT(input_size=32, in_channels=4, patch_size=2, depth=depth, width=width, heads=heads)
    with torch.no_grad():  # off adaLN-Zero: the gates and the final layer get small random weights
        for name, parameter in network.named_parameters():
            if "adaLN_modulation" in name or name.startswith("final_layer"):
                parameter.normal_(0, 0.02)
    path = folder / "DiT-XL-2-bench.pt"
    name = "DiT-XL/2" if (depth, width, heads) == (28, 1152, 16) else "DiT-S/2"
    torch.save({"ema": network.state_dict(), "args": arguments.Namespace(model=name, image_size=256,
                                                                          num_classes=1000)}, path)
    del network
    denoiser = load(path, device=device)
    x = torch.randn(latents, 4, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        denoiser.denoise(x[:1], XL_SIGMAS[0])
        start = clock(device)
        for _ in range(3):
            denoiser.denoise(x[:1], XL_SIGMAS[0])
        forward = (clock(device) - start) / 3
    start = clock(device)
    store = locality(denoiser, x, sigmas=list(XL_SIGMAS))
    capture = (clock(device) - start) / (latents * len(XL_SIGMAS))
    start = clock(device)
    residuals = []
    for i in range(jacobians):
        found = jacobian(denoiser, x[i:i + 1], sigmas=[XL_SIGMAS[1]], top_k=32, method="randomized")
        residuals.append(float(found.eigen_residual.max()))
    per_jacobian = (clock(device) - start) / max(1, jacobians)
    row = {"parameters": sum(p.numel() for p in denoiser.network.parameters()), "depth": depth, "width": width,
           "heads": heads, "tokens": 256, "forward_s": forward, "locality_s_per_latent_sigma": capture,
           "locality_x_forward": capture / forward, "layers": int(store.sizes["layer"]),
           "top32_s_per_latent": per_jacobian, "top32_x_forward": per_jacobian / forward,
           "top32_worst_residual": max(residuals, default=None),
           "peak_gpu_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}
    np.save(folder / "latent.npy", x[0].cpu().numpy())
    command = [sys.executable, "-m", "biasprobe_cli"]
    for args in (["jacobian", str(path), "--image", str(folder / "latent.npy"), "--sigma", "0.5", "--top-k", "32",
                  "--method", "randomized", "--out", str(folder / "xl.jacobian.zarr"), "--device", device.type],
                 ["locality", str(path), "--image", str(folder / "latent.npy"), "--sigma", "0.5", "--out",
                  str(folder / "xl.locality.zarr"), "--device", device.type]):
        start = time.perf_counter()
        done = subprocess.run(command + args, capture_output=True, text=True, check=False)
        row[f"cli_{args[0]}"] = {"returncode": done.returncode, "seconds": time.perf_counter() - start,
                                 "stderr_tail": done.stderr[-300:]}
    print(f"xl (depth {depth}, width {width}): forward {forward:.3g} s, locality {row['locality_x_forward']:.2f}× "
          f"a forward per latent and σ, top-32 {row['top32_x_forward']:.1f}× a forward; CLI jacobian "
          f"{row['cli_jacobian']['returncode']}, locality {row['cli_locality']['returncode']}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default="dense,batched,survey,topk,xl",
                        help="add fallback for issue 25's CPU fallback")
    parser.add_argument("--fallback-methods", default="lanczos", help="matrix-free methods of the fallback part")
    parser.add_argument("--images", type=int, default=8, help="images of the batched part")
    parser.add_argument("--xl-depth", type=int, default=28)
    parser.add_argument("--xl-width", type=int, default=1152)
    parser.add_argument("--xl-heads", type=int, default=16)
    parser.add_argument("--xl-latents", type=int, default=64)
    parser.add_argument("--xl-jacobians", type=int, default=4)
    parser.add_argument("--xl-folder", default=None, help="where the xl part writes its checkpoint (default: a "
                        "temporary folder)")
    parser.add_argument("--models", default=",".join(str(REPOSITORY / "data" / "zoo" / f"{n}.safetensors") for n in ZOO))
    parser.add_argument("--precisions", default=None, help="default: float32 on the CPU; float32,tf32,bf16 on CUDA")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gemm", type=int, default=None, help="GEMM side of the floor (default 4096 CUDA, 2048 CPU)")
    parser.add_argument("--ks", default="32,100")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--lanczos", action="store_true")
    parser.add_argument("--out", default=os.environ.get("BIASPROBE_BENCH_OUT"))
    args = parser.parse_args()
    import_biasprobe()
    device = torch.device(args.device)
    precisions = (args.precisions or ("float32,tf32,bf16" if device.type == "cuda" else "float32")).split(",")
    parts = args.parts.split(",")
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or
              platform.machine(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sigma": SIGMA}
    gemm = args.gemm or (4096 if device.type == "cuda" else 2048)
    models = args.models.split(",")

    def xl() -> dict:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            return xl_part(device, args.xl_depth, args.xl_width, args.xl_heads, args.xl_latents, args.xl_jacobians,
                           Path(args.xl_folder or scratch))

    run = {"dense": lambda: dense_part(models, device, precisions, args.repeats, gemm),
           "batched": lambda: batched_part(models, device, precisions, args.images, gemm),
           "survey": lambda: survey_part(models, device),
           "xl": xl,
           "fallback": lambda: fallback_part(models, device, args.fallback_methods.split(","), args.tolerance),
           "topk": lambda: topk_part(device, [int(k) for k in args.ks.split(",")], args.lanczos, args.tolerance)}
    unknown = [part for part in parts if part not in run]
    if unknown:
        raise SystemExit(f"no part {unknown[0]!r}; --parts takes " + ", ".join(run))
    path = Path(args.out) / f"analyses-{device.type}.json" if args.out else None
    failed = {}
    print("| part | case | seconds | rate | × floor / error |\n| --- | --- | ---: | ---: | --- |", flush=True)
    for part in [part for part in run if part in parts]:  # this order: a run cut off by a time limit keeps the first
        started = time.perf_counter()
        try:
            result[part] = run[part]()
            print_rows(part, result[part])
        except Exception as error:  # noqa: BLE001 - recorded with its traceback; the other parts still run, and the run
            traceback.print_exc()  # exits non-zero at its end
            failed[part] = result.setdefault("failed", {})[part] = f"{type(error).__name__}: {error}"
            print(f"| {part} | failed after {time.perf_counter() - started:.0f} s: {failed[part]} | | | |", flush=True)
        if path is not None:  # after every part, so that a run cut off by a time limit keeps what it measured
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(result, indent=1) + "\n")
            path.with_suffix(".tmp").replace(path)
    if path is not None:
        print(f"wrote {path}")
    if failed:
        raise SystemExit("failed parts: " + "; ".join(f"{part}: {why}" for part, why in failed.items()))
    if not math.isfinite(sum(r["seconds"] for r in result.get("dense", []) + result.get("topk", []))):
        raise SystemExit("a timing is not finite")


def print_rows(part: str, rows) -> None:
    """The Markdown rows of one part's result, printed as soon as the part ends."""
    if part == "dense":
        for row in rows:
            extra = "" if "eigenvalue_error_rel" not in row else (
                f"; Δλ/λ₀ {row['eigenvalue_error_rel']:.1e}, angle {row['top8_subspace_angle_deg']:.2g}°")
            print(f"| dense | {row['model']} {row['precision']} | {row['seconds']:.3g} | {row['jacobians_per_s']:.3g} "
                  f"J/s | {row['times_floor']:.1f}×{extra} |")
    elif part == "batched":
        for row in rows:
            print(f"| batched | {row['model']} {row['precision']}, {row['images']} images in batches of {row['batch']} "
                  f"| — | {row['batched_jacobians_per_s']:.3g} J/s ({row['speedup']:.2f}× one at a time) | "
                  f"{row['times_floor']:.1f}× |")
    elif part == "xl":
        print(f"| xl | DiT depth {rows['depth']}, width {rows['width']} ({rows['parameters'] / 1e6:.0f} M), forward | "
              f"{rows['forward_s']:.3g} | — | — |")
        print(f"| xl | locality, per latent and σ | {rows['locality_s_per_latent_sigma']:.3g} | — | "
              f"{rows['locality_x_forward']:.2f}× a forward |")
        print(f"| xl | top-32 randomized, per latent | {rows['top32_s_per_latent']:.3g} | — | "
              f"{rows['top32_x_forward']:.0f}× a forward; residual ≤ {rows['top32_worst_residual']:.1e} |")
    elif part == "topk":
        for row in rows:
            print(f"| top-k | {row['method']} top-{row['k']} (d = {row['d']}) | {row['seconds']:.3g} | "
                  f"{row['products']} products | residual ≤ {row['worst_residual']:.1e}; Δλ/λ₀ ≤ "
                  f"{row['eigenvalue_error_rel']:.1e} |")
    elif part == "survey":
        for row in rows:
            print(f"| survey | {row['model']}, {row['jacobians']} Jacobians | {row['seconds_per_jacobian']:.3g} a "
                  f"Jacobian | — | {row['times_bare']:.2f}× a bare dense ∂D/∂y |")
    elif part == "fallback":
        for row in rows:
            extra = "" if row["method"] == "dense" else (
                f"residual ≤ {row['worst_residual']:.1e}; Δλ/λ₀ ≤ {row['eigenvalue_error_rel']:.1e}, "
                f"angle {row['top8_subspace_angle_deg']:.2g}°")
            print(f"| fallback | {row['model']} {row['method']} top-{row['k']} | {row['seconds']:.3g} | "
                  f"{row['products']} products ({row['times_dense']:.2f}× dense) | {extra} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
