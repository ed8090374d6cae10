"""Training denoisers on N images: one loop for every family, resumable, seeded, DDP-ready.

The objective is the regression of the network's raw output onto its ideal value
(:meth:`NetworkDenoiser.raw_target`) at y = x + σ z:

    L = E_{x, σ, z} ‖ r(y, σ) − r*(x, z, σ) ‖²

which is the DDPM ε-objective for time-conditioned networks (t uniform over the schedule's
steps, σ = σ(t)) and the blind residual objective of Kadkhodaie et al. for bias-free UNets
(σ uniform in [0, σ_max] on the [0, 1] scale).

Every step draws its batch and noise from a generator seeded by (seed, step), and the full
training state is checkpointed, so a resumed run continues exactly as an uninterrupted one. When
only the saved weights remain (the state is gone), a *warm restart* continues the run from them:
network and EMA start from the saved (EMA) weights, the optimizer starts fresh, and the step count
goes on from the checkpoint's ``steps_done``; the checkpoint lists its warm restarts. Under
``torchrun`` each of the W processes draws the same global batch and trains on its 1/W slice;
DistributedDataParallel averages the gradients, which equals the single-process gradient.

(Over 400 lines on purpose: the loop, its step, its saved state and its warm restart are one
contract — a resumed run must equal an uninterrupted one — and are read and tested together.)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from biasprobe.atomic import replace_file
from biasprobe.checkpoints import NATIVE_CONVENTIONS, Checkpoint, network_denoiser, save_checkpoint
from biasprobe.errors import InputError, ParameterError, TrainingDiverged
from biasprobe.training.settings import (  # noqa: F401 - the settings' schema, also known by these names here
    COMPILE_MODES,
    COMPILE_SCOPES,
    CUDA_GRAPH_MODES,
    TRAINING_SETTINGS,
    USER_SETTINGS,
    WEIGHT_PRECISIONS,
    TrainingConfig,
    TrainingSetting,
    checked_compile_scope,
    compile_mode,
)


def has_dropout(network: nn.Module) -> bool:
    """Whether ``network`` draws random dropout masks in training (any dropout layer with p > 0)."""
    return any(isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0 for module in network.modules())


def _same_random_draws():
    """While active, compiled graphs draw their random numbers (dropout masks) from torch's generator as
    eager code does, instead of Inductor's own: a compiled run then trains on the same masks as an eager
    one with the same seeds (:func:`torch._inductor.config.patch` of ``fallback_random``)."""
    import torch._inductor.config

    return torch._inductor.config.patch(fallback_random=True)


def compile_network(network: nn.Module, mode: str | bool) -> nn.Module:
    """``network`` compiled by :func:`torch.compile` in ``mode`` (:func:`compile_mode`'s forms), or
    itself when ``mode`` is False. Same function (to float rounding), same parameters; the training loop
    makes dropout draw the same masks compiled as eager (:func:`_same_random_draws`).

    In a CUDA-graph mode (:data:`CUDA_GRAPH_MODES`) the step's forward and backward kernels are
    recorded once per input shape and replayed; the training loop keeps what that needs: every step
    has the same shapes (a fixed batch), all of the network's inputs are on the device, the attention
    masks are built before compiling (:func:`build_attention_masks`), the step is marked
    (:func:`torch.compiler.cudagraph_mark_step_begin`) and the previous step's gradients released
    before the next forward, and only the loss computed from the output (not the output, whose
    memory the next replay reuses) is kept across steps.
    """
    mode = compile_mode(mode)
    return network if mode is False else torch.compile(network, mode=mode)


@torch.no_grad()
def build_attention_masks(network: nn.Module, image_shape, images: torch.Tensor) -> None:
    """Make the attention layers of ``network`` build their window masks now, before
    :func:`compile_network`: one eager forward of ``images`` in eval mode.

    A layer builds and caches its masks at its first forward; traced by torch.compile, they would be
    outputs of a compiled graph, whose memory a CUDA-graph replay reuses. The forward (explicit
    attention, so no fused kernel is compiled for it) draws no random number and updates no
    statistic (eval mode, no gradient), so training goes on as without it.
    """
    from biasprobe.models.attention import attention_modules, explicit_math

    layers = list(attention_modules(network).values())
    if not layers:
        return
    was_training = network.training
    network.eval()
    try:
        denoiser = network_denoiser(network, image_shape, NATIVE_CONVENTIONS[network.family])
        with explicit_math(layers):  # builds the boolean masks (and runs no fused kernel)
            denoiser.raw_output(images, torch.full((len(images),), 0.5, device=images.device))
        for layer in layers:
            if layer.grid is not None:  # a layer the forward did not reach has nothing to build
                layer.block_mask(layer.grid, images.device)
    finally:
        network.train(was_training)


@dataclass
class TrainingResult:
    output: Path
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
    steps_done: int = 0
    losses_from: int = 0
    """The step of ``losses[0]``: 0, or the step of the run's last warm restart (earlier losses are
    in the records of the runs before it)."""
    warm_restarts: list[int] = field(default_factory=list)
    """The steps at which the run was warm-restarted from its saved weights."""
    rank: int = 0
    """This process's rank under torchrun: only rank 0 writes files and should report."""
    grad_norms: list[float] = field(default_factory=list)
    """The gradient's global norm ‖g‖ (before clipping) of each step of ``losses`` (NaN for steps of a state
    saved by a version that did not record it)."""


def state_path(output: str | os.PathLike) -> Path:
    """Where the resumable training state of ``output`` lives."""
    output = Path(output)
    return output.with_name(output.name + ".train-state.pt")


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def process_rank() -> int:
    """This process's rank under torchrun (0 when run alone): only rank 0 writes and reports."""
    return int(os.environ.get("RANK", "0"))


class _Distributed:
    """This process's rank and world size (1 process unless launched by torchrun)."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = process_rank()
        if self.world > 1 and device.type == "cuda":  # one GPU per rank: torchrun's LOCAL_RANK
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.device = device
        """The device this rank trains on."""
        self.owned = self.world > 1 and not dist.is_initialized()
        if self.owned:
            if device.type == "cuda":  # NCCL bound to this rank's GPU, so its barrier need not guess it
                dist.init_process_group("nccl", device_id=device)
            else:
                dist.init_process_group("gloo")

    def finish(self) -> None:
        """Wait for every rank (rank 0 has written the checkpoint), then close the process group this run
        opened: a rank exiting with the group's threads still running can abort ("terminate called
        without an active exception")."""
        if self.owned:
            dist.barrier()
            dist.destroy_process_group()

    @property
    def main(self) -> bool:
        return self.rank == 0


def train(
    network: nn.Module,
    images: torch.Tensor,
    output: str | os.PathLike,
    config: TrainingConfig,
    *,
    metadata: dict | None = None,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    init: str | os.PathLike | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> TrainingResult:
    """Train ``network`` on ``images`` (N, C, H, W in [0, 1]) and write its EMA weights to ``output``.

    The resumable state (raw weights, EMA, optimizer, losses) is kept beside ``output`` while
    training and removed when all steps are done. ``resume`` continues from that state if present.
    With ``config.max_minutes`` the run stops early, saving the checkpoint and the state.

    ``init`` (used when there is no state to resume) warm-restarts the run of that checkpoint (see
    :func:`warm_start`): same family, config, data and settings (``steps``, ``max_minutes``,
    ``compile``, ``compile_scope``, ``channels_last``, ``weights`` and ``checkpoint_every`` may
    differ); steps go on from its ``steps_done`` to ``config.steps``. ``init`` may be ``output`` itself.

    ``on_checkpoint(steps_done)`` is called (by the main process) after each checkpoint is written, e.g.
    to measure it while training goes on (``biasprobe sweep train``'s gap of every checkpoint).
    """
    device = torch.device(device)
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4 or not torch.isfinite(images).all():
        raise InputError("training images must be a finite (N, C, H, W) tensor")
    ranks = _Distributed(device)
    device = ranks.device
    if config.batch_size % ranks.world:
        raise InputError(f"batch size {config.batch_size} is not divisible by {ranks.world} processes")
    image_shape = tuple(images.shape[1:])
    header = {**(metadata or {}), **asdict(config), "n_train": len(images)}
    model = model_identity(network, image_shape)

    network = network.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    ema = copy.deepcopy(network).eval().requires_grad_(False)
    optimizer = make_optimizer(network.parameters(), config, device)
    losses: list[float] = []
    grad_norms: list[float] = []
    start = losses_from = 0
    warm_restarts: list[int] = []
    saved_state = state_path(output)
    if resume and saved_state.exists():
        start, losses, saved, grad_norms = _restore(saved_state, network, ema, optimizer, {**header, **model})
        losses_from, warm_restarts = saved.get("losses_from", 0), saved.get("warm_restarts", [])
        if start > config.steps:
            raise ParameterError("steps", f"is {config.steps}, below the {start} steps already done in {saved_state}; "
                                 f"give at least {start}")
    elif init is not None:
        start, warm_restarts = warm_start(network, init, {**header, **model})
        ema.load_state_dict(network.state_dict())
        losses_from = start
        if start >= config.steps:
            raise ParameterError("steps", f"is {config.steps}, but {init} has done {start} steps already; "
                                 f"give more than {start} to continue it")
    header.update(losses_from=losses_from, warm_restarts=warm_restarts)
    _refuse_to_diverge_again(output, config)
    saved_at = start
    take_step = TrainingStep(network, ema, optimizer, images.to(device), config, world=ranks.world, rank=ranks.rank)
    began = timed_from = time.perf_counter()
    timed_steps = 0

    from biasprobe.progress import task

    description = f"training {network.family} on N = {len(images)}" + (f", from step {start}" if start else "")
    try:
        same_draws = _same_random_draws() if config.compile and has_dropout(network) else contextlib.nullcontext()
        with same_draws, task(description, config.steps, unit="steps", completed=start,
                              enabled=progress and ranks.main) as advance:
            network.train()
            pending: list[torch.Tensor] = []  # (loss, ‖g‖) on the device: read back every LOSS_READ_EVERY steps
            guard = DivergenceGuard(losses)
            for step in range(start, config.steps):
                pending.append(take_step(step))
                out_of_time = config.max_minutes is not None and time.perf_counter() - began > 60 * config.max_minutes
                last = step + 1 == config.steps or _agree(out_of_time, ranks, device)
                checkpoint = (step + 1) % config.checkpoint_every == 0 or last
                if checkpoint or (step + 1) % LOSS_READ_EVERY == 0:
                    timed_steps += len(pending)
                    read, norms = zip(*_global_means(pending, ranks))
                    pending = []
                    losses += read  # before the check, so that a diverged run's mark holds the read that diverged
                    grad_norms += norms
                    guard.check(read, losses_from + len(losses) - len(read), output, saved_at)
                    rate = timed_steps * config.batch_size / (time.perf_counter() - timed_from)
                    advance(len(read), f"loss {losses[-1]:.4g}, {rate:.1f} images/s")
                if ranks.main and checkpoint:
                    _save(output, ema, image_shape, {**header, "steps_done": step + 1})
                    saved_at = step + 1
                    if step + 1 < config.steps:
                        _save_state(saved_state, network, ema, optimizer, {**header, **model}, step + 1, losses,
                                    grad_norms)
                    if on_checkpoint is not None:
                        on_checkpoint(step + 1)
                if last:
                    break
        if ranks.main and losses_from + len(losses) == config.steps:
            saved_state.unlink(missing_ok=True)
    except TrainingDiverged as diverged:  # every process reads the same averaged losses: all stop here together
        if ranks.main:
            _mark_diverged(output, config, diverged, losses_from, losses, grad_norms)
        del take_step
        ranks.finish()
        raise
    del take_step  # DistributedDataParallel's reducer (in its network) must go before the process group it uses
    ranks.finish()
    return TrainingResult(Path(output), losses, start, losses_from + len(losses), losses_from, warm_restarts,
                          ranks.rank, grad_norms)


class TrainingStep:
    """One optimisation step of :func:`train`, called with the step's number; returns its loss and the
    gradient's global norm ‖g‖ before clipping (a 2-vector on the device).

    The step draws its global batch from a generator seeded by (``config.seed``, step), takes this
    process's slice of it (rank ``rank`` of ``world``: DistributedDataParallel, which ``world`` > 1 wraps
    the network in, averages the gradients), computes :func:`denoising_loss`, its gradient, AdamW's
    update (after clipping g to ``config.grad_clip``·g/‖g‖ where ‖g‖ exceeds it) and the EMA
    θ_ema ← d·θ_ema + (1 − d)·θ with d = min(``config.ema_decay``, (1 + step) / (10 + step)).

    ``config.compile`` compiles the network (:func:`compile_network`); with ``config.compile_scope``
    ``"step"`` it compiles the loss around it too (noisy input, network, target, mean: one graph forward,
    one backward) and the EMA (with 1 − d passed as a tensor, so that its change does not recompile), so
    that under CUDA graphs the batch draw and AdamW (the fused implementation on CUDA, a few kernels,
    which torch.compile does not trace) are all that run eagerly. Same function either way (to float
    rounding); one process only.
    """

    def __init__(self, network: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, data: torch.Tensor,
                 config: TrainingConfig, *, world: int = 1, rank: int = 0) -> None:
        self.network, self.ema, self.optimizer, self.data, self.config = network, ema, optimizer, data, config
        image_shape = tuple(data.shape[1:])
        mode = config.compile
        whole = bool(mode) and config.compile_scope == "step"
        if whole and world > 1:
            raise ParameterError("compile_scope", "'step' trains in one process; under torchrun use 'network'")
        if mode:
            build_attention_masks(network, image_shape, data[:1])
        trained = network if whole else compile_network(network, mode)
        trained = nn.parallel.DistributedDataParallel(trained) if world > 1 else trained
        self.denoiser = network_denoiser(trained, image_shape, NATIVE_CONVENTIONS[network.family])
        self.loss = functools.partial(denoising_loss, self.denoiser)
        self.compiled_ema = None
        if whole:
            self.loss = torch.compile(self.loss, mode=mode)
            self.compiled_ema = torch.compile(_update_ema, mode=mode)
            self.weight = torch.zeros((), device=data.device)
        self.graphs = mode in CUDA_GRAPH_MODES and data.device.type == "cuda"
        self.part = slice(rank * config.batch_size // world, (rank + 1) * config.batch_size // world)

    def __call__(self, step: int) -> torch.Tensor:
        torch.manual_seed(_step_seed(self.config.seed, step))
        self.optimizer.zero_grad(set_to_none=True)  # before the forward: a CUDA-graph replay may reuse their memory
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        batch = _draw_batch(self.denoiser, self.data, self.config)
        loss = self.loss(*(None if value is None else value[self.part] for value in batch))
        loss.backward()
        norm = clip_gradient(self.network.parameters(), self.config.grad_clip)
        self.optimizer.step()
        weight = 1 - min(self.config.ema_decay, (1 + step) / (10 + step))
        if self.compiled_ema is None:
            _update_ema(self.ema, self.network, weight)
        else:
            self.compiled_ema(self.ema, self.network, self.weight.fill_(weight))
        # a new tensor: a compiled loss lives in memory that the next CUDA-graph replay reuses
        return torch.stack((loss.detach().float(), norm.float()))


def clip_gradient(parameters, limit: float | None) -> torch.Tensor:
    """The global norm ‖g‖ = (Σ_p ‖∂L/∂p‖²)^½ of the parameters' gradients (a 0-d tensor on their device, read
    without waiting for it); with ``limit``, g ← limit·g/‖g‖ where ‖g‖ > limit."""
    parameters = list(parameters)
    device = parameters[0].device if parameters else None
    parameters = [p for p in parameters if p.grad is not None]
    if not parameters:
        return torch.zeros((), device=device)
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    if limit is not None:
        torch.nn.utils.clip_grads_with_norm_(parameters, limit, norm)
    return norm


CHANGEABLE = (*(s.parameter for s in TRAINING_SETTINGS if s.changeable),
              "losses_from", "warm_restarts", "steps_done", "recipe_name")
"""Settings a resumed or warm-restarted run may change (or that describe the run's history)."""


def changed_settings(saved: dict, now: dict, changeable=CHANGEABLE) -> str:
    """The settings (other than ``changeable``) in which ``now`` differs from ``saved``, in words;
    empty if none."""
    changed = sorted(k for k in {*now, *saved} - set(changeable) if saved.get(k) != now.get(k))
    return "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in changed)[:400]


def warm_start(network: nn.Module, checkpoint: str | os.PathLike, settings: dict | None = None) -> tuple[int, list[int]]:
    """Load ``checkpoint``'s weights into ``network`` (same family and config) for a warm restart.

    With ``settings`` (this run's training settings and :func:`model_identity`), the checkpoint must
    have been trained with the same ones (but :data:`CHANGEABLE`): the restart continues that run.
    Returns the step it continues from (the checkpoint's ``steps_done``, 0 if it has none) and its
    warm restarts so far, this one included.
    """
    from biasprobe.checkpoints import read_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"no checkpoint at {checkpoint} to warm-start from")
    saved = read_checkpoint(checkpoint)
    if saved.family != network.family or saved.config != network.config:
        raise InputError(f"{checkpoint} holds a {saved.family} with another config; a warm restart needs the same "
                         "family, preset and options")
    if settings is not None:
        was = {**saved.training, **model_identity(network, saved.image_shape)}
        changed = changed_settings(was, settings)
        if changed:
            raise InputError(f"{checkpoint} was trained with other settings ({changed}); a warm restart continues "
                             "its run: give the same settings, or train into another output")
    network.load_state_dict(saved.state_dict)
    start = int(saved.training.get("steps_done", 0))
    return start, [*saved.training.get("warm_restarts", []), start] if start else []


def model_identity(network: nn.Module, image_shape) -> dict:
    """What a resumable state must share with the run that resumes it, beside the training settings."""
    return {"family": network.family, "model_config": network.config, "image_shape": list(image_shape)}


DIVERGENCE_FACTOR = 2.5
"""A run has diverged when the mean loss of one read-back (:data:`LOSS_READ_EVERY` steps) exceeds this
multiple of the lowest full read-back's mean before it in the run (since its start, resumption or warm restart).
Calibrated on the committed zoo's training records, each curve judged as the guard judges it, afresh after each
warm restart (tests/training/test_divergence_calibration.py): no healthy run's loss (means over 17-100 steps,
noisier than the guard's 50) rises above 1.78× its lowest point before (the N = 10 DDPM UNet, whose memorizing
loss of 0.004 is dominated by a few timesteps; all others ≤ 1.66×); the factor is the smallest round one at
least 1.4× that. Zoo v2's diverged local DiT rose from 0.029 to 0.13 (4.5×) within 200 steps, hovered at
2.1-3.1× and settled at 1.0 (the network's output gone to zero). Earlier versions (2026-12-07, neither judged
a run): 2× (calibrated without the reset at warm restarts, where one healthy run rose 2.05×), then 4× (the
same miscalibration; a spike just under 4× followed by the 2-3× plateau would have been saved)."""


class DivergenceGuard:
    """Stops :func:`train` when its loss diverges, before the next checkpoint could overwrite the last good one.

    A read of losses (at least 10 steps; shorter reads, e.g. the last of a run stopped by its time limit, are
    too noisy to judge) diverged if any loss is not finite or its mean exceeds :data:`DIVERGENCE_FACTOR` × the
    lowest mean of a full earlier read (:data:`LOSS_READ_EVERY` steps; ``history``: the losses of the run so far
    since its start, resumption or warm restart). Raises :class:`~biasprobe.errors.TrainingDiverged`.
    """

    def __init__(self, history: list[float]) -> None:
        means = [np.mean(history[i:i + LOSS_READ_EVERY]) for i in range(0, len(history) - LOSS_READ_EVERY + 1,
                                                                          LOSS_READ_EVERY)]
        self.lowest = min((m for m in means if math.isfinite(m)), default=math.inf)

    def check(self, read, steps_before: int, output, saved_at: int) -> None:
        kept = f"{output} keeps the weights of step {saved_at}" if saved_at else "nothing was saved"
        for offset, value in enumerate(read):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"training stopped: the loss is {value} at step {steps_before + offset + 1}; {kept}. Set "
                    "{grad_clip}, check the data, or resume from the saved state",
                    step=steps_before + offset + 1, kept=saved_at, parameters=["grad_clip"])
        mean = float(np.mean(read))
        if len(read) >= 10 and mean > DIVERGENCE_FACTOR * self.lowest:
            raise TrainingDiverged(
                f"training diverged: the mean loss of steps {steps_before + 1}-{steps_before + len(read)} is "
                f"{mean:.4g}, over {DIVERGENCE_FACTOR:g}× the lowest before it ({self.lowest:.4g}); {kept}. "
                "Warm-restart from it with {grad_clip} set (the same settings would diverge again: every batch "
                "is seeded by its step)", step=steps_before + len(read), kept=saved_at, parameters=["grad_clip"])
        if len(read) >= LOSS_READ_EVERY:
            self.lowest = min(self.lowest, mean)


def diverged_path(output: str | os.PathLike) -> Path:
    """The mark a diverged run leaves beside its checkpoint (:func:`train` refuses to run it again unchanged)."""
    output = Path(output)
    return output.with_name(output.name + ".diverged.json")


DIVERGENCE_REMEDIES = ("grad_clip",)
"""Settings a run that diverged must change before it is run again (the same ones would retrace its steps)."""


def _mark_diverged(output, config: TrainingConfig, diverged: TrainingDiverged, losses_from: int = 0,
                   losses: Sequence[float] = (), grad_norms: Sequence[float] = ()) -> None:
    """Write the mark (:func:`diverged_path`): the step, the checkpoint kept, the remedies' settings, and the run's
    curves from its start or resumption ``losses_from`` to the divergence as [step, mean over the
    :data:`LOSS_READ_EVERY` steps up to it] (the record is not written for a diverged run, so these are its only
    trace)."""
    def curve(values: Sequence[float]) -> list[list[float | None]]:  # non-finite values left out; none: null
        def mean(part):
            finite = [v for v in part if math.isfinite(v)]
            return round(sum(finite) / len(finite), 6) if finite else None
        return [[losses_from + min(start + LOSS_READ_EVERY, len(values)), mean(values[start:start + LOSS_READ_EVERY])]
                for start in range(0, len(values), LOSS_READ_EVERY)]

    mark = {"step": diverged.step, "kept": diverged.kept, "message": str(diverged),
            **{name: getattr(config, name) for name in DIVERGENCE_REMEDIES},
            "losses_from": losses_from, "loss_curve": curve(list(losses)), "grad_norm_curve": curve(list(grad_norms))}
    replace_file(lambda tmp: Path(tmp).write_text(json.dumps(mark, indent=1) + "\n"), diverged_path(output))


def _refuse_to_diverge_again(output, config: TrainingConfig) -> None:
    """Refuse a run whose output diverged before with the same :data:`DIVERGENCE_REMEDIES`; a changed one
    clears the mark."""
    path = diverged_path(output)
    if not path.exists():
        return
    mark = json.loads(path.read_text())
    if all(mark.get(name) == getattr(config, name) for name in DIVERGENCE_REMEDIES):
        raise TrainingDiverged(
            f"{output} diverged at step {mark.get('step')} with these settings and would again (every batch is "
            f"seeded by its step): set {{grad_clip}}, or delete {path} to run it unchanged",
            step=int(mark.get("step", 0)), kept=int(mark.get("kept", 0)), parameters=["grad_clip"])
    path.unlink()


LOSS_READ_EVERY = 50
"""Steps between reading the losses back from the device (each read waits for the device)."""


def make_optimizer(parameters, config: TrainingConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the config's rate and decay; the fused single-kernel implementation on CUDA."""
    return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay,
                             fused=device.type == "cuda")


def denoising_loss(denoiser, clean, noise, sigma, timesteps) -> torch.Tensor:
    """‖r(x + σz, σ) − r*(x, z, σ)‖² averaged over the batch and pixels; bf16 autocast on CUDA.

    ``timesteps`` is t(σ) computed on the host (or None for blind networks).
    """
    device = clean.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        raw = denoiser.raw_output(clean + sigma.view(-1, 1, 1, 1) * noise, sigma, timesteps)
    return (raw.float() - denoiser.raw_target(clean, noise, sigma)).pow(2).mean()


def _draw_batch(denoiser, data: torch.Tensor, config: TrainingConfig):
    """(clean, noise, σ, t(σ) or None) of one global batch from the global RNG (seeded per step).

    Timesteps are drawn and mapped to σ and back to the network's t on the host, so that no step
    waits for the device.
    """
    index = torch.randint(len(data), (config.batch_size,)).to(data.device)
    clean = data[index]
    noise = torch.randn(clean.shape, device=data.device)
    if denoiser.schedule is None:
        sigma = torch.rand(config.batch_size, device=data.device) * config.sigma_max
        return clean, noise, sigma, None
    steps = torch.randint(denoiser.schedule.steps, (config.batch_size,))
    native = torch.as_tensor(denoiser.schedule.sigmas, dtype=torch.float32)[steps]
    sigma = native / denoiser.native_scale.scale
    return clean, noise, sigma.to(data.device), denoiser.timesteps(sigma).to(data.device)


@torch.no_grad()
def _update_ema(ema: nn.Module, network: nn.Module, weight: float | torch.Tensor) -> None:
    """θ_ema ← θ_ema + w·(θ − θ_ema), w = 1 − decay (a number, or a 0-d tensor on the device, which a
    compiled update takes without recompiling when it changes); buffers (running statistics) are copied."""
    averages, current = list(ema.parameters()), list(network.parameters())
    if torch.is_tensor(weight):  # the weight read on the device: lerp's formula for w < 0.5, equal to rounding above
        torch._foreach_add_(averages, torch._foreach_mul(torch._foreach_sub(current, averages), weight))
    else:
        torch._foreach_lerp_(averages, current, weight)
    for average, value in zip(ema.buffers(), network.buffers()):
        average.copy_(value)


def _agree(flag: bool, ranks: _Distributed, device: torch.device) -> bool:
    """True on every process if it is true on any (so all stop at the same step)."""
    if ranks.world == 1:
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.all_reduce(value)
    return bool(value > 0)


def _global_means(values: list[torch.Tensor], ranks: _Distributed) -> list:
    """The values (losses, or (loss, ‖g‖) pairs) of the processes averaged, as floats (one wait for the device)."""
    if not values:
        return []
    stacked = torch.stack(values)
    if ranks.world > 1:
        dist.all_reduce(stacked)
        stacked = stacked / ranks.world
    return stacked.tolist()


SAVED_WEIGHTS = {name: getattr(torch, name) for name in WEIGHT_PRECISIONS}


def _save(output, ema: nn.Module, image_shape, training: dict) -> None:
    dtype = SAVED_WEIGHTS[training.get("weights", "float32")]
    save_checkpoint(Checkpoint.from_network(ema, image_shape, training), output, dtype=dtype)


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor of a parameter's shape that parameter's memory layout.

    A state saved under another ``channels_last`` setting comes back in the other layout, and the
    foreach/fused AdamW kernels pair the elements of a parameter, its gradient (which follows the
    parameter's layout) and its moments by position in memory.
    """
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == parameter.shape and value.stride() != parameter.stride():
                    state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def _save_state(path: Path, network, ema, optimizer, header: dict, step: int, losses: list[float],
                grad_norms: list[float] | None = None) -> None:
    state = {"header": header, "step": step, "losses": losses, "network": network.state_dict(),
             "ema": ema.state_dict(), "optimizer": optimizer.state_dict()}
    if grad_norms is not None:
        state["grad_norms"] = list(grad_norms)
    replace_file(lambda tmp: torch.save(state, tmp), path)


def _restore(path: Path, network, ema, optimizer, header: dict) -> tuple[int, list[float], dict, list[float]]:
    """Load the state at ``path`` into the objects; returns its step, its losses, its header and the gradient
    norms of its losses' steps (NaN where an older state did not keep them)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable state cannot be resumed
        raise InputError(f"cannot resume from {path}: the file is damaged; delete it to start over") from None
    if not isinstance(state, dict) or not isinstance(state.get("header"), dict):
        raise InputError(f"cannot resume from {path}: it is not a training state; delete it to start over")
    saved = state["header"]
    details = changed_settings(saved, header)
    if details:
        raise InputError(
            f"{path} belongs to a run with other settings ({details}); give the same settings, or delete it "
            "or pick another output to start over"
        )
    try:
        network.load_state_dict(state["network"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        match_state_layouts(optimizer)
        losses = list(state["losses"])
        norms = list(state.get("grad_norms", []))
        return int(state["step"]), losses, saved, [math.nan] * (len(losses) - len(norms)) + norms
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise InputError(f"cannot resume from {path}: the file is damaged; delete it to start over") from None
