"""diffusers model and pipeline folders: ``UNet2DModel`` and DiT transformers.

A *model folder* holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or ``.bin``,
or shards listed in ``diffusion_pytorch_model.safetensors.index.json``); a *pipeline folder*
holds ``model_index.json`` and one subfolder per component, of which biasprobe takes ``unet/``
or ``transformer/`` and the scheduler config. diffusers (an optional dependency) builds the
network from its config; biasprobe reads the weights itself, safetensors or weights-only.

Conventions: the scheduler's β schedule gives the t ↔ σ map and its ``prediction_type`` the
parameterization (``v_prediction`` is turned into ε). Pixel models see [-1, 1] images; latent
models (DiTs, and UNets of pipelines with an autoencoder) see latents as they are.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from biasprobe.denoiser import NetworkDenoiser
from biasprobe.errors import CheckpointError, InputError
from biasprobe.formats.base import FormatEntrypoint, Source
from biasprobe.schedules import Schedule
from biasprobe.weights import load_strictly, read_weights

WEIGHTS_NAME = "diffusion_pytorch_model"
DENOISER_COMPONENTS = ("unet", "transformer")
AUTOENCODER_COMPONENTS = ("vae", "vqvae")
MODEL_CLASSES = ("UNet2DModel", "DiTTransformer2DModel")
BETA_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}
PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "eps"}
DEFAULT_SCHEDULER = {
    "beta_schedule": "linear",
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
}
"""``DDPMScheduler``'s defaults, used for a model folder outside a pipeline."""


def read_config(path: Path) -> dict | None:
    """A diffusers config (JSON with ``_diffusers_version``), or None if ``path`` is not one."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return config if isinstance(config, dict) and "_diffusers_version" in config else None


def is_diffusers_folder(path: Path) -> bool:
    """Whether ``path`` is a diffusers model or pipeline folder."""
    return path.is_dir() and any(read_config(path / name) for name in ("config.json", "model_index.json"))


def is_diffusers_weights(path: Path) -> bool:
    """Whether ``path`` is the weights file of a diffusers model folder."""
    return path.name.startswith(WEIGHTS_NAME) and is_diffusers_folder(path.parent)


def _folders(path: Path) -> tuple[Path, Path | None]:
    """The model folder and, when it belongs to one, the pipeline folder."""
    index = read_config(path / "model_index.json")
    if index is not None:
        for component in DENOISER_COMPONENTS:
            if component in index:
                return path / component, path
        raise CheckpointError(f"pipeline {path} has no {' or '.join(DENOISER_COMPONENTS)} component")
    return path, path.parent if read_config(path.parent / "model_index.json") else None


def _shard_names(index: Path) -> list[str]:
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, json.JSONDecodeError, KeyError, AttributeError, TypeError):
        raise CheckpointError(f"{index} is not a readable shard index") from None
    if not all(isinstance(name, str) and Path(name).name == name for name in names):
        raise CheckpointError(f"{index} names shards outside its folder")
    return names


def read_model_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of a model folder: one safetensors or .bin file, or the shards of an index."""
    for suffix in (".safetensors", ".bin"):
        single = folder / f"{WEIGHTS_NAME}{suffix}"
        if single.is_file():
            return read_weights(single)
        index = folder / f"{WEIGHTS_NAME}{suffix}.index.json"
        if index.is_file():
            state: dict[str, torch.Tensor] = {}
            for name in _shard_names(index):
                state.update(read_weights(folder / name))
            return state
    raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}.safetensors or .bin weights (nor a shard index)")


def _model_class(config: dict, folder: Path) -> type[nn.Module]:
    try:
        import diffusers
    except ImportError:
        raise CheckpointError(
            "reading diffusers folders needs the diffusers package: pip install 'biasprobe[diffusers]'"
        ) from None
    name = config.get("_class_name")
    if name == "Transformer2DModel" and config.get("norm_type") == "ada_norm_zero":
        name = "DiTTransformer2DModel"  # the legacy DiT config, as diffusers itself remaps it
    if name not in MODEL_CLASSES:
        raise CheckpointError(
            f"{folder} holds a diffusers {name}; biasprobe reads {', '.join(MODEL_CLASSES)} "
            "(and Transformer2DModel with ada_norm_zero)"
        )
    return getattr(diffusers, name)


def build_model(folder: Path) -> nn.Module:
    """The diffusers model of a model folder, its weights loaded strictly, in eval mode."""
    config = read_config(folder / "config.json")
    if config is None:
        raise CheckpointError(f"{folder} has no diffusers config.json")
    model_class = _model_class(config, folder)
    accepted = inspect.signature(model_class.__init__).parameters
    model = model_class.from_config({k: v for k, v in config.items() if k in accepted})
    return load_strictly(model, read_model_weights(folder), f"diffusers {model_class.__name__}")


def scheduler_conventions(pipeline: Path | None) -> tuple[Schedule, str]:
    """The β schedule and the diffusers prediction type of the pipeline's scheduler (defaults without)."""
    config = DEFAULT_SCHEDULER
    if pipeline is not None:
        config = {
            **DEFAULT_SCHEDULER,
            **(read_config(pipeline / "scheduler" / "scheduler_config.json") or {}),
        }
    kind = config["beta_schedule"]
    if config.get("trained_betas") is not None or kind not in BETA_SCHEDULES:
        raise CheckpointError(
            f"the scheduler's beta_schedule {kind!r} (or trained_betas) is not supported; "
            f"biasprobe maps {', '.join(BETA_SCHEDULES)}"
        )
    if config.get("rescale_betas_zero_snr"):
        raise CheckpointError("zero-terminal-SNR schedules reach σ = ∞ and are not supported")
    prediction = config["prediction_type"]
    if prediction not in PREDICTION_TYPES:
        raise CheckpointError(
            f"prediction type {prediction!r} is not supported; use one of {tuple(PREDICTION_TYPES)}"
        )
    schedule = Schedule(
        BETA_SCHEDULES[kind],
        int(config["num_train_timesteps"]),
        float(config["beta_start"]),
        float(config["beta_end"]),
    )
    return schedule, prediction


class DiffusersNetwork(nn.Module):
    """A diffusers model called as ``network(x_t, t)``: its sample output, ε̂ for a v-prediction model.

    ``class_label`` (None for unconditional models) is given to every image of a batch.
    """

    def __init__(
        self, model: nn.Module, class_label: int | None, v_prediction_schedule: Schedule | None
    ) -> None:
        super().__init__()
        self.model = model
        self.class_label = class_label
        self.v_prediction_schedule = v_prediction_schedule

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        labels = {}
        if self.class_label is not None:
            labels["class_labels"] = torch.full(
                (x.shape[0],), self.class_label, dtype=torch.long, device=x.device
            )
        out = self.model(x, t, **labels, return_dict=False)[0]
        if self.v_prediction_schedule is None:
            return out
        # v = √ᾱ ε − √(1 − ᾱ) x₀ and x_t = √ᾱ x₀ + √(1 − ᾱ) ε give ε = √(1 − ᾱ) x_t + √ᾱ v.
        sigma = torch.as_tensor(self.v_prediction_schedule.sigma(t.detach().cpu().double().numpy()))
        alpha_bar = (1 / (1 + sigma**2)).to(x.device, x.dtype).view(-1, 1, 1, 1)
        channels = x.shape[1]
        eps = (1 - alpha_bar).sqrt() * x + alpha_bar.sqrt() * out[:, :channels]
        return torch.cat([eps, out[:, channels:]], dim=1)


class DiffusersAttention:
    """A diffusers ``Attention`` layer under the :class:`~biasprobe.models.attention.ObservableAttention`
    protocol (``observer``, ``explicit``, ``heads``, ``grid``, ``pixels_per_token``, ``window``).

    While :attr:`observer` is set or :attr:`explicit` is True, the layer runs diffusers' own
    explicit-softmax processor (``AttnProcessor``, the same function as its fused default), and
    with an observer every probability map it computes reaches ``observer(self, probs)`` as
    (B, heads, N, N); when both are unset again the layer's previous processor is restored.
    Attention is global (``window`` None).
    """

    window = None

    def __init__(self, attention: nn.Module, image_shape: tuple[int, int, int]) -> None:
        self.attention = attention
        self.heads = attention.heads
        self.image_shape = image_shape
        self.grid: tuple[int, int] | None = None
        self.pixels_per_token = 1
        self._observer = None
        self._explicit = False
        self._saved_processor = None

    def _switch(self, observer, explicit: bool) -> None:
        """Install the explicit processor when the layer becomes observed or explicit, restore on neither."""
        before, after = self._observer is not None or self._explicit, observer is not None or explicit
        if after and not before:
            self._saved_processor = self.attention.processor
            self.attention.set_processor(_ObservingProcessor(self))
        elif before and not after:
            self.attention.set_processor(self._saved_processor)
        self._observer, self._explicit = observer, explicit

    @property
    def observer(self):
        return self._observer

    @observer.setter
    def observer(self, observer) -> None:
        self._switch(observer, self._explicit)

    @property
    def explicit(self) -> bool:
        return self._explicit

    @explicit.setter
    def explicit(self, explicit: bool) -> None:
        self._switch(self._observer, bool(explicit))

    def record_grid(self, hidden_states: torch.Tensor) -> None:
        """Set :attr:`grid` and :attr:`pixels_per_token` from the layer's input: a feature map
        (B, C, h, w) or tokens (B, N, D) that tile the image evenly."""
        height, width = self.image_shape[1:]
        if hidden_states.ndim == 4:
            rows, cols = hidden_states.shape[-2:]
        else:
            side = round(math.sqrt(height * width / hidden_states.shape[1]))
            rows, cols = height // side, width // side
            if rows * cols != hidden_states.shape[1]:
                raise RuntimeError(f"{hidden_states.shape[1]} tokens do not tile a {height}×{width} image")
        self.grid = (int(rows), int(cols))
        self.pixels_per_token = height // int(rows)

    def report(self, probs: torch.Tensor) -> None:
        """Hand diffusers' (B·heads, N, N) probabilities to the observer (if any) as (B, heads, N, N)."""
        if self._observer is not None:
            self._observer(self, probs.view(-1, self.heads, *probs.shape[-2:]))


class _ObservingProcessor:
    """diffusers' ``AttnProcessor``, run on a stand-in layer whose attention scores are reported."""

    def __init__(self, probe: DiffusersAttention) -> None:
        from diffusers.models.attention_processor import AttnProcessor

        self.probe = probe
        self.explicit = AttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        self.probe.record_grid(hidden_states)
        return self.explicit(
            _Reporting(attn, self.probe), hidden_states, encoder_hidden_states, attention_mask, temb
        )


class _Reporting:
    """Stands in for a diffusers ``Attention``: every attribute is the layer's, except that
    ``get_attention_scores`` also reports the probabilities it returns."""

    def __init__(self, attention: nn.Module, probe: DiffusersAttention) -> None:
        self._attention = attention
        self._probe = probe

    def __getattr__(self, name: str):
        return getattr(self._attention, name)

    def get_attention_scores(self, query, key, attention_mask=None):
        probs = self._attention.get_attention_scores(query, key, attention_mask)
        self._probe.report(probs)
        return probs


UNET_FORWARD_ORDER = ("down_blocks", "mid_block", "up_blocks")
"""A UNet2DModel registers its up blocks before its middle block but runs them after it."""


def _forward_position(name: str) -> int:
    """Rank of a layer's top-level block in the forward pass (a stable sort keeps the rest in order)."""
    top = name.split(".")[0]
    return UNET_FORWARD_ORDER.index(top) if top in UNET_FORWARD_ORDER else 0


class DiffusersDenoiser(NetworkDenoiser):
    """A :class:`DiffusersNetwork` as a Denoiser whose diffusers ``Attention`` layers are observable."""

    def __init__(self, network: DiffusersNetwork, image_shape, **conventions) -> None:
        from diffusers.models.attention_processor import Attention

        super().__init__(network, image_shape, **conventions)
        layers = [(name, m) for name, m in network.model.named_modules() if isinstance(m, Attention)]
        layers.sort(key=lambda layer: _forward_position(layer[0]))
        self._attention = {name: DiffusersAttention(module, self.image_shape) for name, module in layers}

    def attention_modules(self) -> dict[str, DiffusersAttention]:
        return dict(self._attention)


def _class_label(model: nn.Module, class_label: int | None) -> int | None:
    """The label to condition on: as given, the DiT's null class by default, None if unconditional."""
    config = model.config
    classes = (
        config.get("num_embeds_ada_norm")
        if "num_embeds_ada_norm" in config
        else config.get("num_class_embeds")
    )
    if classes is None:
        if class_label is not None:
            raise InputError("this diffusers model is not class-conditional: leave out the class label")
        return None
    is_dit = "num_embeds_ada_norm" in config  # DiT's label table has a null-class row at index `classes`
    highest = classes if is_dit else classes - 1
    if class_label is None:
        if not is_dit:
            raise InputError(f"this diffusers UNet is class-conditional: give a class label in 0 … {highest}")
        return classes
    if not 0 <= int(class_label) <= highest:
        raise InputError(f"class label {class_label} is outside 0 … {highest}")
    return int(class_label)


def load_diffusers(path: Path, *, class_label: int | None = None) -> DiffusersDenoiser:
    """A Denoiser from a diffusers model or pipeline folder (or the weights file inside a model folder)."""
    folder, pipeline = _folders(path.parent if path.is_file() else path)
    model = build_model(folder)
    schedule, prediction = scheduler_conventions(pipeline)
    config = model.config
    is_dit = type(model).__name__ == "DiTTransformer2DModel"
    index = read_config(pipeline / "model_index.json") if pipeline else {}
    latent = is_dit or any(component in index for component in AUTOENCODER_COMPONENTS)
    size = config["sample_size"]
    height, width = (size, size) if isinstance(size, int) else size
    image_shape = (config["in_channels"], height, width)
    label = _class_label(model, class_label)
    network = DiffusersNetwork(model, label, schedule if prediction == "v_prediction" else None).eval()
    info = {
        "family": f"diffusers {type(model).__name__}",
        "config": {k: v for k, v in config.items() if not k.startswith("_")},
        "prediction_type": prediction,
        "class_label": label,
    }
    return DiffusersDenoiser(
        network,
        image_shape,
        parameterization=PREDICTION_TYPES[prediction],
        native_range="unit" if latent else "signed",
        conditioning="timestep",
        schedule=schedule,
        output_channels=image_shape[0],
        space="latent" if latent else "pixel",
        info=info,
    )


class Diffusers(FormatEntrypoint):
    """diffusers model folders (``config.json``), pipeline folders (``model_index.json``), or the
    weights file inside a model folder."""

    name = "diffusers"
    description = "diffusers UNet2DModel or DiT model folder (config.json) or pipeline folder (model_index.json)"
    options = ("class_label",)
    priority = 0

    def guess_can_open(self, source: Source) -> bool:
        return is_diffusers_folder(source.path) or is_diffusers_weights(source.path)

    def open_denoiser(self, source: Source, *, arch: Mapping[str, Any], class_label=None):
        self.check_arch(arch)
        return load_diffusers(source.path, class_label=class_label)
