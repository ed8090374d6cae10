"""The dimension trend β of a checkpoint from Hutchinson estimates of tr J, where a dense Jacobian is
too costly (patch-1 DiTs and DDPM UNets on a shared CPU).

tr J ≈ (1/b) Σ_i z_iᵀ J z_i over b Rademacher probes z_i (b rows of J instead of d), with standard
error s/√b from the probes' sample standard deviation s; the noisy image at each σ is the one
``bp.jacobian`` draws (same seed), so the estimates match the dense ``effective_dimension`` in
expectation. β is the least-squares slope of log tr J against log σ
(:func:`biasprobe.analyses.harmonic.dimension_trend`), its standard error
√(Σ_j (c_j/Σc²)² (se_j/tr_j)²) with c_j = log σ_j − mean log σ::

    python tests/benchmarks/trace_trend.py CHECKPOINT IMAGE.npy [--probes 16] [--sigma 0.05,0.1,0.2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))


def main() -> None:
    import numpy as np
    import torch
    import xarray as xr

    import biasprobe as bp
    from biasprobe.analyses.base import noise_seed
    from biasprobe.analyses.harmonic import TREND_THRESHOLD, dimension_trend
    from biasprobe.autodiff import JacobianOperator
    from biasprobe.noise import noisy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("image", help=".npy clean image (C, H, W) in [0, 1]; image index 0 of the dense runs")
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--sigma", default="0.05,0.1,0.2")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    denoiser = bp.load(arguments.checkpoint, device="cpu")
    image = torch.as_tensor(np.load(arguments.image), dtype=torch.float32)[None]
    sigmas = [float(value) for value in arguments.sigma.split(",")]
    generator = torch.Generator().manual_seed(arguments.seed)
    traces, errors = [], []
    for j, sigma in enumerate(sigmas):
        y = noisy(image, sigma, noise_seed(arguments.seed, 0, j))
        operator = JacobianOperator(denoiser, y, sigma)
        probes = torch.randint(0, 2, (arguments.probes, operator.dimension), generator=generator).float() * 2 - 1
        quadratic = (operator.rows(probes) * probes).sum(1).double().numpy()
        traces.append(quadratic.mean())
        errors.append(quadratic.std(ddof=1) / np.sqrt(len(quadratic)))
        print(f"σ = {sigma:g}: tr J ≈ {traces[-1]:.1f} ± {errors[-1]:.1f} ({arguments.probes} probes)", flush=True)
    trace = xr.DataArray(np.array([traces]), dims=("image", "sigma"), coords={"image": [0], "sigma": sigmas})
    beta = float(dimension_trend(trace)[0])
    weights = np.log(sigmas) - np.log(sigmas).mean()
    spread = np.sqrt(np.sum((weights / np.sum(weights**2)) ** 2 * (np.array(errors) / np.array(traces)) ** 2))
    print(f"β = {beta:.3f} ± {spread:.3f} (from the traces' standard errors); flat (memorizing) at β ≥ "
          f"{TREND_THRESHOLD:g}")

if __name__ == "__main__":
    main()
