"""The Denoiser contract: D(y, σ) ≈ E[x | y] for y = x + σ z on images in [0, 1].

Every analysis in biasprobe talks to a :class:`Denoiser`. Networks trained under other
conventions are adapted to this one by :class:`NetworkDenoiser`:

1. *native range*: ``"unit"`` networks see [0, 1] images; ``"signed"`` networks see
   [-1, 1] images, y_n = 2y − 1 and σ_n = 2σ.
2. *conditioning*: ``"none"`` (blind) networks see y_n; ``"timestep"`` networks follow a
   variance-preserving schedule and see x_t = √ᾱ_t y_n with t = t(σ_n), where
   ᾱ_t = 1/(1 + σ_n²) (see :mod:`biasprobe.schedules`).
3. *parameterization* of the raw output r: ``"residual"`` r ≈ y_n − x_n (the noise itself,
   as in Kadkhodaie et al.), ``"eps"`` r ≈ ε = (y_n − x_n)/σ_n, ``"x0"`` r ≈ x_n.
   The clean estimate in native units is then y_n − r, y_n − σ_n r or r, mapped back to [0, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from biasprobe.errors import InputError
from biasprobe.models.attention import ObservableAttention, attention_modules
from biasprobe.schedules import Schedule

PARAMETERIZATIONS = ("residual", "eps", "x0")
NATIVE_RANGES = {"unit": (1.0, 0.0), "signed": (2.0, -1.0)}  # y_n = scale·y + shift
CONDITIONINGS = ("none", "timestep")
SPACES = ("pixel", "latent")


@dataclasses.dataclass(frozen=True)
class NativeScale:
    """How a network sees [0, 1] images: y_n = scale·y + shift, σ_n = scale·σ."""

    name: str
    scale: float
    shift: float

    @classmethod
    def named(cls, name: str) -> NativeScale:
        """``"unit"`` ([0, 1]: scale 1, shift 0) or ``"signed"`` ([-1, 1]: scale 2, shift −1)."""
        if name not in NATIVE_RANGES:
            raise InputError(f"unknown native range {name!r}; use one of {tuple(NATIVE_RANGES)}")
        return cls(name, *NATIVE_RANGES[name])


@dataclasses.dataclass(frozen=True)
class CheckpointSource:
    """Where a denoiser came from: the checkpoint path, its format, and the training metadata it
    records (data set, N, subset, seed, ...; empty when none). All None for a wrapped callable."""

    path: str | None = None
    format: str | None = None
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def sha256(self) -> str | None:
        """SHA-256 of the checkpoint file (or folder), computed on first use; None without a path."""
        return None if self.path is None else file_sha256(self.path)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder's files in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class Denoiser:
    """Base contract. Subclasses implement :meth:`denoise`; the rest has defaults.

    Attributes
    ----------
    image_shape: (C, H, W) of the images the denoiser accepts.
    schedule: the variance-preserving schedule that maps σ to diffusion steps t, or None (blind).
    native_scale: how the network sees [0, 1] images (:class:`NativeScale`; unit for callables).
    space: ``"pixel"``, or ``"latent"`` for models of autoencoder latents (σ in latent units).
    source: the checkpoint it came from (:class:`CheckpointSource`).
    """

    image_shape: tuple[int, int, int]
    schedule: Schedule | None = None
    native_scale: NativeScale = NativeScale.named("unit")
    space: str = "pixel"
    source: CheckpointSource = CheckpointSource()

    def denoise(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Estimate of the clean image, shape (B, C, H, W), in [0, 1] units."""
        raise NotImplementedError

    def __call__(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        return self.denoise(y, sigma)

    def raw_output(self, y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """The network's own output at the noisy image (for a wrapped callable: D itself)."""
        return self.denoise(y, sigma)

    def attention_modules(self) -> dict[str, ObservableAttention]:
        """The attention layers analyses can observe, by name (empty if none)."""
        return {}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> Denoiser:
        return self

    def sigma_to_t(self, sigma: float) -> float | None:
        """Diffusion step of the noise level σ ([0, 1] units), None without a schedule."""
        return None

    def t_to_sigma(self, t: float) -> float:
        raise InputError("this denoiser has no noise schedule: give noise levels as {sigmas}, not {timesteps}",
                         parameters=["sigmas", "timesteps"])

    def describe(self) -> dict:
        """Plain-data summary for provenance and ``biasprobe info``."""
        return {"image_shape": list(self.image_shape)}

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Validate a (B, C, H, W) or (C, H, W) batch against :attr:`image_shape`."""
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.image_shape):
            raise InputError(
                f"images of shape {tuple(images.shape[-3:])} do not fit this denoiser, which takes "
                f"(C, H, W) = {tuple(self.image_shape)}; resize or convert them first"
            )
        if not torch.isfinite(images).all():
            raise InputError("images contain NaN or infinite values")
        return images

    @staticmethod
    def wrap(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], image_shape) -> Denoiser:
        """A Denoiser around any callable ``fn(y, sigma) -> x_hat`` on [0, 1] images.

        ``sigma`` reaches ``fn`` as a (B,) tensor. If ``fn`` is an ``nn.Module``, its
        :class:`GridAttention` layers are exposed for locality analyses.
        """
        return CallableDenoiser(fn, image_shape)


def _sigma_batch(sigma: float | torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """σ as a (B,) tensor on y's device and dtype."""
    sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(y.shape[0])
    if sigma.shape != (y.shape[0],):
        raise InputError(f"sigma must be a scalar or have one value per image, got shape {tuple(sigma.shape)}")
    return sigma


class CallableDenoiser(Denoiser):
    """A user function f(y, σ) → x̂ seen through the Denoiser contract."""

    def __init__(self, fn: Callable, image_shape) -> None:
        self.fn = fn
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3:
            raise InputError(f"image_shape must be (C, H, W), got {image_shape}")

    def denoise(self, y, sigma):
        return self.fn(y, _sigma_batch(sigma, y))

    def attention_modules(self):
        return attention_modules(self.fn) if isinstance(self.fn, nn.Module) else {}

    @property
    def device(self):
        if isinstance(self.fn, nn.Module):
            for p in self.fn.parameters():
                return p.device
        return torch.device("cpu")

    def to(self, device):
        if isinstance(self.fn, nn.Module):
            self.fn.to(device)
        return self

    def describe(self):
        return {"family": "callable", "callable": getattr(self.fn, "__qualname__", type(self.fn).__name__),
                "image_shape": list(self.image_shape)}


class NetworkDenoiser(Denoiser):
    """A torch network under one of the native conventions listed in the module docstring.

    Parameters
    ----------
    network: ``network(x)`` if ``conditioning == "none"``, else ``network(x, t)`` with t of shape (B,).
    image_shape: (C, H, W).
    parameterization: ``"residual"``, ``"eps"`` or ``"x0"``.
    native_range: ``"unit"`` ([0, 1]) or ``"signed"`` ([-1, 1]).
    conditioning: ``"none"`` (blind) or ``"timestep"`` (needs ``schedule``).
    schedule: the variance-preserving schedule that maps σ to t.
    output_channels: how many leading output channels hold the prediction (the rest, such as a
        learned variance, are dropped); defaults to C.
    space: ``"pixel"`` or ``"latent"``.
    source: the checkpoint it came from (set by :func:`biasprobe.load`).
    info: plain-data description (family, config, ...) reported by :meth:`describe`.
    """

    def __init__(
        self,
        network: nn.Module,
        image_shape,
        *,
        parameterization: str,
        native_range: str = "unit",
        conditioning: str = "none",
        schedule: Schedule | None = None,
        output_channels: int | None = None,
        space: str = "pixel",
        source: CheckpointSource | None = None,
        info: dict | None = None,
    ) -> None:
        if parameterization not in PARAMETERIZATIONS:
            raise InputError(f"unknown parameterization {parameterization!r}; use one of {PARAMETERIZATIONS}")
        self.native_scale = NativeScale.named(native_range)
        if space not in SPACES:
            raise InputError(f"unknown space {space!r}; use one of {SPACES}")
        if conditioning not in CONDITIONINGS:
            raise InputError(f"unknown conditioning {conditioning!r}; use one of {CONDITIONINGS}")
        if conditioning == "timestep" and schedule is None:
            raise InputError("a timestep-conditioned network needs a noise schedule")
        self.network = network
        self.image_shape = tuple(int(s) for s in image_shape)
        self.parameterization = parameterization
        self.native_range = native_range
        self.conditioning = conditioning
        self.schedule = schedule
        self.output_channels = output_channels or self.image_shape[0]
        self.space = space
        self.source = source or CheckpointSource()
        self.info = dict(info or {})

    @property
    def _scale_shift(self) -> tuple[float, float]:
        return self.native_scale.scale, self.native_scale.shift

    def timesteps(self, sigma, dtype: torch.dtype = torch.float32) -> torch.Tensor | float:
        """The schedule's real timestep t(σ) on the host, for σ on the [0, 1] scale (scalar or tensor).

        A tensor σ on the CPU maps without waiting for the accelerator; one on a device is copied back.
        """
        scale = self._scale_shift[0]
        if isinstance(sigma, (int, float)):
            return self.schedule.timestep(sigma * scale)
        native = (torch.as_tensor(sigma, dtype=dtype) * scale).detach().cpu().double().numpy()
        return torch.as_tensor(self.schedule.timestep(native), dtype=dtype)

    def _native(self, y: torch.Tensor, sigma, timesteps=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(raw output r, native noisy image y_n, native σ_n as (B, 1, 1, 1))."""
        scale, shift = self._scale_shift
        sigma_n = _sigma_batch(sigma, y) * scale
        y_n = y * scale + shift
        if self.conditioning == "none":
            raw = self.network(y_n)
        else:
            # σ maps to t on the host, so that torch.func transforms never see the numpy call
            t = self.timesteps(sigma, y.dtype) if timesteps is None else timesteps
            t = torch.as_tensor(t, dtype=y.dtype, device=y.device).expand(y.shape[0])
            alpha_bar = 1.0 / (1.0 + sigma_n**2)
            raw = self.network(y_n * alpha_bar.sqrt().view(-1, 1, 1, 1), t)
        return raw[:, : self.output_channels], y_n, sigma_n.view(-1, 1, 1, 1)

    def raw_output(self, y, sigma, timesteps=None):
        """The network output r in its own parameterization (ε̂, residual or x̂₀, native units).

        ``timesteps``, for time-conditioned networks, is t(σ) from :meth:`timesteps` computed ahead
        (training does so on the host, so that no step waits for the accelerator).
        """
        return self._native(y, sigma, timesteps)[0]

    def raw_target(self, clean: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
        """The ideal raw output at y = clean + σ·noise: the regression target of training.

        residual: y_n − x_n = s·σ·z;  eps: z;  x0: x_n = s·x + shift (s, shift from the native range).
        """
        scale, shift = self._scale_shift
        if self.parameterization == "residual":
            return scale * _sigma_batch(sigma, clean).view(-1, 1, 1, 1) * noise
        if self.parameterization == "eps":
            return noise
        return clean * scale + shift

    def denoise(self, y, sigma):
        raw, y_n, sigma_n = self._native(y, sigma)
        if self.parameterization == "residual":
            x_n = y_n - raw
        elif self.parameterization == "eps":
            x_n = y_n - sigma_n * raw
        else:
            x_n = raw
        scale, shift = self._scale_shift
        return (x_n - shift) / scale

    def attention_modules(self):
        return attention_modules(self.network)

    @property
    def device(self):
        for p in self.network.parameters():
            return p.device
        return torch.device("cpu")

    def to(self, device):
        self.network.to(device)
        return self

    def sigma_to_t(self, sigma):
        if self.schedule is None:
            return None
        return float(self.schedule.timestep(sigma * self._scale_shift[0]))

    def t_to_sigma(self, t):
        if self.schedule is None:
            return super().t_to_sigma(t)
        return float(self.schedule.sigma(t)) / self._scale_shift[0]

    def describe(self):
        windows = [m.window for m in self.attention_modules().values()]
        source = {"file_format": self.source.format, "path": self.source.path} if self.source.path else {}
        return {
            **source,
            **self.info,
            "space": self.space,
            "training": dict(self.source.training),
            "image_shape": list(self.image_shape),
            "parameters": sum(p.numel() for p in self.network.parameters()),
            "parameterization": self.parameterization,
            "native_range": self.native_range,
            "conditioning": self.conditioning,
            "schedule": self.schedule.to_dict() if self.schedule else None,
            "attention_windows": windows,
        }
