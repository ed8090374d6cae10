"""The training settings: :class:`TrainingConfig`, whose fields are their one schema (:data:`TRAINING_SETTINGS`).

A recipe's keys (:class:`biasprobe.sweeps.recipes.ModelRecipe`) and the flags of ``biasprobe train``
derive from the fields: each carries its users' name (``batch``, ``lr``, ``ema`` where the field's name
is longer), its flag and its help. Torch-free, so that the command line builds its flags for ``--help``
without loading torch.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields

from biasprobe.errors import ParameterError

WEIGHT_PRECISIONS = ("float32", "bfloat16")
"""Precisions of the saved EMA weights (``weights``)."""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""Modes of :func:`torch.compile` a training run may choose; those with CUDA graphs are
:data:`CUDA_GRAPH_MODES`."""

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
"""Compile modes that record each step's kernels once as CUDA graphs and replay them (on CUDA only;
elsewhere they compile as ``"default"``/``"max-autotune-no-cudagraphs"`` do)."""


COMPILE_SCOPES = ("network", "step")
"""What ``compile`` compiles: the network alone, or the step around it (the loss and the EMA too; see
:class:`TrainingStep`)."""


def compile_mode(value) -> str | bool:
    """The ``compile`` setting in its normal form: False (eager) or one of :data:`COMPILE_MODES`.

    True is ``"default"`` (as recorded by checkpoints and recipes from before the modes); None and
    ``"none"`` are False.
    """
    if value is None or value is False or value == "none":
        return False
    if value is True:
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise ParameterError("compile", f"must be true, false or one of {', '.join(COMPILE_MODES)}, not {value!r}")


def checked_compile_scope(value) -> str:
    """``value`` if it is one of :data:`COMPILE_SCOPES`; else a :class:`ParameterError` naming them."""
    if value not in COMPILE_SCOPES:
        raise ParameterError("compile_scope", f"must be one of {', '.join(COMPILE_SCOPES)}, not {value!r}")
    return value


def _setting(help: str, default=MISSING, *, name: str | None = None, flag: str | None = None, cli: bool = True,
             user_default=MISSING, changeable: bool = False):
    """A :class:`TrainingConfig` field with what users see of it (:class:`TrainingSetting`)."""
    metadata = {"help": help, "name": name, "flag": flag, "cli": cli, "user_default": user_default,
                "changeable": changeable}
    return field(default=default, metadata={"setting": metadata})


@dataclass
class TrainingConfig:
    """Optimisation settings (all recorded in the checkpoint).

    ``compile`` runs the network through :func:`torch.compile` (same function, faster steps on a
    GPU after a warm-up of tens of seconds): False (eager), True (= ``"default"``) or one of
    torch.compile's modes (:data:`COMPILE_MODES`); ``"reduce-overhead"`` and ``"max-autotune"``
    replay each step as CUDA graphs (see :func:`compile_network`). ``compile_scope`` is what it
    compiles (:data:`COMPILE_SCOPES`): ``"network"``, or ``"step"``, the loss around it and the EMA
    too (:class:`TrainingStep`; fewer kernel launches, measured faster under CUDA graphs: see
    docs/benchmarks.md). ``channels_last`` stores the
    network's 4-D weights (the convolutions of the UNets) in NHWC order, the layout of cuDNN's
    tensor-core convolutions (whether it is faster is measured by tests/benchmarks/bench_training.py);
    the function and the saved weights are unchanged. All three may change between a run and its
    resumption or warm restart.
    ``weights`` is the precision of the saved EMA weights: ``"float32"`` or ``"bfloat16"`` (half the
    size; the resumable state always keeps float32).
    ``grad_clip`` rescales the gradient g to ``grad_clip``·g/‖g‖ when its global norm ‖g‖ exceeds it (None:
    never); it may be set when a run is resumed or warm-restarted (e.g. after :class:`TrainingDiverged`), and
    every run records ‖g‖ of each step whether it clips or not.

    The fields are the one schema of the training settings (:data:`TRAINING_SETTINGS`): a recipe's keys
    (:class:`biasprobe.sweeps.recipes.ModelRecipe`) and the flags of ``biasprobe train`` derive from them.
    """

    steps: int = _setting("Optimisation steps.", user_default=10_000, changeable=True)
    batch_size: int = _setting("Global batch size (split over torchrun processes).", 64, name="batch")
    learning_rate: float = _setting("AdamW learning rate.", 1e-4, name="lr")
    weight_decay: float = _setting("AdamW weight decay.", 0.0, cli=False)
    ema_decay: float = _setting("EMA decay of the saved weights.", 0.999, name="ema")
    sigma_max: float = _setting("Blind models: σ is drawn uniformly in [0, sigma_max].", 1.0)
    checkpoint_every: int = _setting("Steps between checkpoints (resumable state).", 1000, changeable=True)
    seed: int = _setting("Seed of initialisation, data subset, batches and noise.", 0)
    max_minutes: float | None = _setting("Stop early after this many minutes (resumable).", None, changeable=True)
    compile: bool | str = _setting("torch.compile mode (implies --compile): default, reduce-overhead (CUDA graphs), "
                                   "max-autotune (CUDA graphs, tuned kernels) or max-autotune-no-cudagraphs.", False,
                                   flag="--compile-mode", changeable=True)
    weights: str = _setting("Precision of the saved weights: float32 or bfloat16 (half the size; files over 16 MiB "
                            "are sharded either way).", "float32", changeable=True)
    channels_last: bool = _setting("Keep convolution weights in NHWC order (UNets; same function and saved "
                                   "weights).", False, changeable=True)
    compile_scope: str = _setting("What torch.compile covers (implies --compile): network, or step = the loss and "
                                  "the EMA update too (one process only; fewer launches: see docs/benchmarks.md).",
                                  "network", changeable=True)
    grad_clip: float | None = _setting("Clip the gradient's global norm at this value before each AdamW step (none: no "
                                       "clipping; the norm is recorded either way).", None, changeable=True)

    def __post_init__(self) -> None:
        from biasprobe.validation import count, number  # here: validation loads torch, the schema does not

        for name in ("steps", "batch_size", "checkpoint_every"):
            setattr(self, name, count(getattr(self, name), name))
        for name in ("learning_rate", "sigma_max"):
            setattr(self, name, number(getattr(self, name), name, positive=True))
        self.weight_decay = number(self.weight_decay, "weight_decay", minimum=0)
        self.ema_decay = number(self.ema_decay, "ema_decay", minimum=0, maximum=1)
        if self.ema_decay == 1:
            raise ParameterError("ema_decay", "must be below 1 (at 1 the average never moves)")
        self.seed = count(self.seed, "seed", minimum=0)
        if self.max_minutes is not None:
            self.max_minutes = number(self.max_minutes, "max_minutes", positive=True)
        if self.grad_clip is not None:
            self.grad_clip = number(self.grad_clip, "grad_clip", positive=True)
        self.compile = compile_mode(self.compile)
        self.compile_scope = checked_compile_scope(self.compile_scope)
        if not isinstance(self.channels_last, bool):
            raise ParameterError("channels_last", f"must be true or false, not {self.channels_last!r}")
        if self.weights not in WEIGHT_PRECISIONS:
            raise ParameterError("weights", f"must be one of {', '.join(WEIGHT_PRECISIONS)}, not {self.weights!r}")


@dataclass(frozen=True)
class TrainingSetting:
    """One :class:`TrainingConfig` setting as users see it: a recipe's key and a flag of ``biasprobe train``.

    ``parameter`` is the field's name (the library's); ``name`` the recipe key (``batch``, ``lr``, ``ema``
    where the field's name is longer); ``flag`` the flag (``--NAME``, dashes for underscores, unless the
    field says otherwise); ``default`` what a recipe or ``biasprobe train`` takes when not told (the
    field's default, or, for ``steps``, which the library needs given, 10 000); ``changeable`` whether a
    resumed or warm-restarted run may change it. Settings with ``cli`` False are the library's alone.
    """

    parameter: str
    name: str
    flag: str
    default: object
    annotation: object
    help: str
    cli: bool
    changeable: bool


def _training_settings() -> tuple[TrainingSetting, ...]:
    hints = typing.get_type_hints(TrainingConfig)
    settings = []
    for f in fields(TrainingConfig):
        meta = f.metadata["setting"]
        name = meta["name"] or f.name
        default = f.default if meta["user_default"] is MISSING else meta["user_default"]
        settings.append(TrainingSetting(f.name, name, meta["flag"] or "--" + name.replace("_", "-"), default,
                                        hints[f.name], meta["help"], meta["cli"], meta["changeable"]))
    return tuple(settings)


TRAINING_SETTINGS = _training_settings()
"""The training settings users set, from :class:`TrainingConfig`'s fields: recipe keys and CLI flags derive from these."""

USER_SETTINGS = tuple(s for s in TRAINING_SETTINGS if s.cli)
"""The settings a recipe and ``biasprobe train`` take (all but the library's own, e.g. ``weight_decay``)."""
