"""Regenerate the GAHB calibration table of docs/methods/jacobian.md.

Known cases (Wiener filter of a power-law Gaussian model, pixel-wise garrote) and untrained
networks of each family, on the shipped grey examples resized to 16×16, dense Jacobians::

    python tests/benchmarks/calibrate_harmonic.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))
SHAPE = (1, 16, 16)
SIGMAS = (0.05, 0.2)


def main() -> None:
    import biasprobe as bp
    from biasprobe.analyses.harmonic import gahb_summary
    from biasprobe.analyses.jacobian import jacobian
    from biasprobe.analyses.reference import GaussianImageModel, pixelwise_shrinkage
    from biasprobe.denoiser import NetworkDenoiser
    from biasprobe.images import read_image
    from biasprobe.models import build_model, preset_config
    from tests.conftest import tiny_checkpoint

    names = ("camera-32.png", "chelsea-grey-32.png", "astronaut-32.png")
    images = torch.stack([read_image(REPOSITORY / "data" / "images" / name, SHAPE, resize=True) for name in names])
    cases = {"Gaussian MMSE": GaussianImageModel(SHAPE).denoiser(), "pixel-wise garrote": pixelwise_shrinkage(SHAPE)}
    folder = Path(tempfile.mkdtemp())
    for family in ("unet-bf", "unet-ddpm", "dit"):
        cases[f"untrained {family}, tiny"] = bp.load(tiny_checkpoint(folder / f"{family}.pt", family, image_size=16))
    torch.manual_seed(0)
    default = build_model("unet-bf", **preset_config("unet-bf", "default")).eval()
    cases["untrained unet-bf, default"] = NetworkDenoiser(default, SHAPE, parameterization="residual")

    print("| denoiser | output | σ | harmonicity | PR | adaptivity | spread | verdict |\n|---|---|---|---|---|---|---|---|")
    for name, denoiser in cases.items():
        for output in ("denoised", "raw") if name.startswith("untrained") else ("denoised",):
            summary = gahb_summary(jacobian(denoiser, images, sigmas=list(SIGMAS), output=output))
            for s, sigma in enumerate(SIGMAS):
                at = summary.isel(sigma=s)
                print(f"| {name} | {output} | {sigma} | {float(at.mean_harmonicity):.2f} | "
                      f"{float(at.mean_participation):.3f} | {float(at.adaptivity):.2f} | "
                      f"{float(at.spectral_spread.min()):.1e} | {at.verdict.item()} |")


if __name__ == "__main__":
    main()
