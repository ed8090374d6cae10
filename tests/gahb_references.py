"""The denoisers with known GAHB answers (issue 10), on 16×16 images (d = 256), shared by
tests/analyses/test_harmonic.py and tests/benchmarks/calibrate_harmonic.py. Two of them are judged without
their training images, so that only the σ-trend of tr J can tell that they memorize.

Training set: the first 10 images of the shipped Fashion-MNIST S1 evaluation set, 2×2-averaged;
held-out control: the 300 shipped test images, likewise. Each case is (name, denoiser builder
taking the probe images, probe images, σ, support, the expected category).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from biasprobe.analyses import reference
from biasprobe.analyses.support import support_mask
from biasprobe.images import read_image
from biasprobe.zoo import evaluation_images

SHAPE = (1, 16, 16)
SIGMAS = (0.05, 0.1, 0.2)
IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"


def training() -> torch.Tensor:
    return F.avg_pool2d(evaluation_images("train_s1")[:10], 2)


def held_out() -> torch.Tensor:
    return F.avg_pool2d(evaluation_images("test"), 2)


def natural() -> torch.Tensor:
    names = ("camera-32.png", "chelsea-grey-32.png", "astronaut-32.png")
    return torch.stack([read_image(IMAGES / name, SHAPE, resize=True) for name in names])


@dataclass(frozen=True)
class Case:
    name: str
    images: torch.Tensor
    sigmas: tuple[float, ...]
    support: str
    expected: str
    per_image: bool = False  # one denoiser per image (built from its support)
    training_known: bool = True  # the memorization diagnostics see the training images

    def denoiser(self, image: torch.Tensor | None = None):
        train = training()
        builders = {
            "Wiener filter of a stationary Gaussian": lambda: reference.GaussianImageModel(SHAPE).denoiser(),
            "pixel-wise shrinkage": lambda: reference.pixelwise_shrinkage(SHAPE),
            "Laplacian eigenfunctions of Ω": lambda: reference.support_harmonic_denoiser(support_mask(image.numpy())),
            "posterior mean at training images": lambda: reference.posterior_mean_denoiser(train),
            "posterior mean at test images": lambda: reference.posterior_mean_denoiser(train),
            "projection onto the training span + shrinkage": lambda: reference.span_shrinkage_denoiser(train),
            UNSEEN_SPAN: lambda: reference.span_shrinkage_denoiser(train),
            UNSEEN_SMALL_SPAN: lambda: reference.span_shrinkage_denoiser(train[:3]),
            "random orthonormal eigenvectors": lambda: reference.random_basis_denoiser(SHAPE),
        }
        return builders[self.name]()


UNSEEN_SPAN = "projection onto the training span + shrinkage, training set not given"
UNSEEN_SMALL_SPAN = "projection onto the span of 3 training images + shrinkage, training set not given"


def cases() -> list[Case]:
    test = held_out()[:3]
    return [
        Case("Wiener filter of a stationary Gaussian", test, SIGMAS, "object", "fixed harmonic"),
        Case("pixel-wise shrinkage", natural(), SIGMAS, "edges", "not harmonic"),
        Case("Laplacian eigenfunctions of Ω", test, SIGMAS, "object", "geometry-adaptive harmonic", per_image=True),
        Case("posterior mean at training images", training()[:3], SIGMAS, "object", "collapsed"),
        Case("posterior mean at test images", test, (1.0,), "object", "memorizing"),
        Case("projection onto the training span + shrinkage", test, SIGMAS, "object", "memorizing"),
        Case("random orthonormal eigenvectors", test, SIGMAS, "object", "not harmonic"),
        Case(UNSEEN_SPAN, test, SIGMAS, "object", "memorizing", training_known=False),
        Case(UNSEEN_SMALL_SPAN, test, SIGMAS, "object", "memorizing", training_known=False),
    ]


def run(case: Case):
    """The jacobian Dataset of a case, with its support and memorization diagnostics."""
    import xarray as xr

    from biasprobe.analyses.jacobian import jacobian

    options = {"sigmas": list(case.sigmas), "support": case.support}
    if case.training_known:
        options |= {"training_images": training(), "held_out_images": held_out()}
    if not case.per_image:
        return jacobian(case.denoiser(), case.images, **options)
    parts = [jacobian(case.denoiser(image), image[None], **options) for image in case.images]
    return xr.concat(parts, dim="image", data_vars="all", coords="minimal", compat="override",
                     combine_attrs="override").assign_coords(image=range(len(parts)))
