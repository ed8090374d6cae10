"""Training several models of one architecture at once: parameters stacked, one vmapped step for all.

Model k has its own initial weights, training images and seed. Each step draws model k's batch
and noise exactly as :func:`~biasprobe.training.loop.train` would for it alone (the global RNG
seeded by (seed_k, step)), evaluates all K losses in one :func:`torch.func.vmap` over the
stacked parameters, and back-propagates their sum: model k's gradient is the gradient of its own
loss, since no other loss depends on its slice. AdamW and the EMA act elementwise, so on the
stacked tensors they do what they would do on each model alone. Each model therefore follows its
lone training run to float tolerance, while the device runs K models' work in the kernels of one.

Each output gets the checkpoint and resumable state that training it alone would write, so a
stacked run can be continued stacked or one model at a time.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from biasprobe.checkpoints import NATIVE_CONVENTIONS, network_denoiser
from biasprobe.errors import InputError
from biasprobe.models import attention_modules, attention_switched
from biasprobe.progress import track
from biasprobe.training.loop import (
    LOSS_READ_EVERY,
    TrainingConfig,
    TrainingResult,
    _draw_batch,
    _restore,
    _save,
    _save_state,
    _step_seed,
    denoising_loss,
    has_dropout,
    make_optimizer,
    model_identity,
    state_path,
    warm_start,
)

SHARED_SETTINGS = ("steps", "batch_size", "learning_rate", "weight_decay", "ema_decay", "sigma_max",
                   "checkpoint_every")
"""Settings that every stacked model must share (seeds, data and initial weights may differ)."""


def train_stacked(
    networks: Sequence[nn.Module],
    images: Sequence[torch.Tensor],
    outputs: Sequence[str | os.PathLike],
    config: TrainingConfig,
    *,
    seeds: Sequence[int] | None = None,
    metadata: Sequence[dict] | None = None,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    init: Sequence[str | os.PathLike] | None = None,
) -> list[TrainingResult]:
    """Train K networks of one family and config together; model k as ``train(networks[k], images[k], ...)``.

    ``seeds[k]`` (default: ``config.seed`` for all) replaces the config's seed for model k; the other
    settings are shared. Networks with dropout are refused (their random masks could not follow the
    lone runs). ``init[k]`` warm-restarts model k from that checkpoint when there is no state to
    resume, as :func:`~biasprobe.training.loop.train` does (all at the same step). Returns one
    :class:`TrainingResult` per model.
    """
    count = len(networks)
    seeds = [config.seed] * count if seeds is None else list(seeds)
    metadata = [{}] * count if metadata is None else list(metadata)
    if not count or not len(images) == len(outputs) == len(seeds) == len(metadata) == count:
        raise InputError("give one image set, output, seed and metadata entry per network")
    if len({str(o) for o in outputs}) < count:
        raise InputError("every stacked model needs its own output path")
    first = networks[0]
    if any(n.family != first.family or n.config != first.config for n in networks):
        raise InputError("stacked models must share family and config; train other architectures separately")
    if not stackable(first):
        raise InputError("networks with dropout cannot be stacked exactly; train them one at a time")
    if config.compile or config.channels_last:
        raise InputError("compile and channels_last apply to single-model training, not to stacked models")
    if config.grad_clip is not None:  # one norm per model would be needed: train them one at a time
        raise InputError("grad_clip applies to single-model training, not to stacked models")
    device = torch.device(device)
    configs = [replace(config, seed=seed) for seed in seeds]
    data = [torch.as_tensor(x, dtype=torch.float32).to(device) for x in images]
    if any(x.ndim != 4 or tuple(x.shape[1:]) != tuple(data[0].shape[1:]) for x in data):
        raise InputError("training images must be (N, C, H, W) tensors of one image shape")
    image_shape = tuple(data[0].shape[1:])
    conventions = NATIVE_CONVENTIONS[first.family]
    headers = [{**meta, **asdict(c), "n_train": len(x)} for meta, c, x in zip(metadata, configs, data)]
    state_headers = [{**h, **model_identity(n, image_shape)} for h, n in zip(headers, networks)]

    # per-model modules: their resumable states load into them, checkpoints are written from them
    models = [n.to(device) for n in networks]
    emas = [copy.deepcopy(n).eval().requires_grad_(False) for n in models]
    optimizers = [make_optimizer(n.parameters(), config, device) for n in models]
    losses: list[list[float]] = [[] for _ in range(count)]
    states = [state_path(o) for o in outputs]
    start = losses_from = 0
    warm_restarts: list[list[int]] = [[] for _ in range(count)]
    if resume and any(s.exists() for s in states):
        if not all(s.exists() for s in states):
            raise InputError("only some stacked models have a saved state; resume them one at a time")
        restored = [_restore(s, n, e, o, h)
                    for s, n, e, o, h in zip(states, models, emas, optimizers, state_headers)]
        if len({step for step, *_ in restored}) > 1:
            raise InputError("the stacked models' saved states are at different steps; resume them one at a time")
        start, losses = restored[0][0], [list(history) for _, history, *_ in restored]
        losses_from = restored[0][2].get("losses_from", 0)
        warm_restarts = [saved.get("warm_restarts", []) for _, _, saved, _ in restored]
    elif init is not None:
        if len(init) != count:
            raise InputError("give one checkpoint to warm-start from per stacked model")
        warm = [warm_start(n, path, h) for n, path, h in zip(models, init, state_headers)]
        if len({step for step, _ in warm}) > 1:
            raise InputError("the stacked models' checkpoints are at different steps; warm-start them one at a time")
        start = losses_from = warm[0][0]
        warm_restarts = [restarts for _, restarts in warm]
        for network, ema in zip(models, emas):
            ema.load_state_dict(network.state_dict())
    if start >= config.steps:
        raise InputError(f"the stacked models have done {start} steps already; give more steps than that")
    for h, sh, restarts in zip(headers, state_headers, warm_restarts):
        h.update(losses_from=losses_from, warm_restarts=restarts)
        sh.update(losses_from=losses_from, warm_restarts=restarts)

    base = copy.deepcopy(first).to(device)
    names = [name for name, _ in base.named_parameters()]
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).requires_grad_()
              for name in names}
    buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models])
               for name, _ in base.named_buffers()}
    ema_params = {name: torch.stack([dict(e.named_parameters())[name] for e in emas]) for name in names}
    optimizer = make_optimizer(params.values(), config, device)
    _stack_optimizer_state(optimizer, optimizers, list(params.values()))

    def network_loss(p, b, clean, noise, sigma, timesteps):
        def network(*args):
            return functional_call(base, (p, b), args)

        denoiser = network_denoiser(network, image_shape, conventions)
        return denoising_loss(denoiser, clean, noise, sigma, timesteps)

    sampler = network_denoiser(base, image_shape, conventions)  # draws batches; never called
    with_timesteps = sampler.schedule is not None
    stacked_loss = vmap(network_loss, in_dims=(0, 0, 0, 0, 0, 0 if with_timesteps else None))
    base.train()
    pending: list[torch.Tensor] = []
    # the fused kernels' vmap rules fail on some head dims (CUDA): explicit attention while stacked
    with attention_switched(attention_modules(base).values(), explicit=True):
        for step in track(range(start, config.steps), "training stacked", config.steps - start, progress):
            batches = []
            for c, x in zip(configs, data):
                torch.manual_seed(_step_seed(c.seed, step))
                batches.append(_draw_batch(sampler, x, c))
            clean, noise, sigma, timesteps = (None if b[0] is None else torch.stack(b) for b in zip(*batches))
            loss = stacked_loss(params, buffers, clean, noise, sigma, timesteps)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                torch._foreach_lerp_(list(ema_params.values()), list(params.values()), 1 - decay)
            pending.append(loss.detach())
            last = step + 1 == config.steps
            checkpoint = (step + 1) % config.checkpoint_every == 0 or last
            if checkpoint or (step + 1) % LOSS_READ_EVERY == 0:
                for history, values in zip(losses, torch.stack(pending).T.tolist()):
                    history += values
                pending = []
            if checkpoint:
                _unstack(params, buffers, ema_params, optimizer, models, emas, optimizers)
                for k in range(count):
                    _save(outputs[k], emas[k], image_shape, {**headers[k], "steps_done": step + 1})
                    if not last:
                        _save_state(states[k], models[k], emas[k], optimizers[k], state_headers[k], step + 1,
                                    losses[k])
    if start < config.steps or not all(os.path.exists(o) for o in outputs):
        _unstack(params, buffers, ema_params, optimizer, models, emas, optimizers)
    for s in states:
        s.unlink(missing_ok=True)
    return [TrainingResult(Path(o), h, start, losses_from + len(h), losses_from, restarts)
            for o, h, restarts in zip(outputs, losses, warm_restarts)]


def stackable(network: nn.Module) -> bool:
    """Whether copies of ``network`` can train stacked exactly: no dropout, whose masks would differ."""
    return not has_dropout(network)


def _stack_optimizer_state(stacked: torch.optim.Optimizer, singles, params: list[torch.Tensor]) -> None:
    """Give the stacked optimizer the per-model optimizers' (restored) moments, if they have any."""
    if not singles[0].state:
        return
    for index, parameter in enumerate(params):
        per_model = [o.state[o.param_groups[0]["params"][index]] for o in singles]
        stacked.state[parameter] = {
            key: per_model[0][key].clone() if key == "step" else torch.stack([s[key] for s in per_model])
            for key in per_model[0]
        }


@torch.no_grad()
def _unstack(params, buffers, ema_params, optimizer, models, emas, optimizers) -> None:
    """Copy slice k of the stacked weights, buffers, EMA and AdamW moments into model k's own objects."""
    for k, (model, ema, single) in enumerate(zip(models, emas, optimizers)):
        own = dict(model.named_parameters())
        for name, value in params.items():
            own[name].copy_(value[k])
            moments = optimizer.state.get(value)
            if moments:
                single.state[own[name]] = {key: m.clone() if key == "step" else m[k].clone()
                                           for key, m in moments.items()}
        for name, value in dict(model.named_buffers()).items():
            value.copy_(buffers[name][k])
        ema_own = dict(ema.named_parameters())
        for name, value in ema_params.items():
            ema_own[name].copy_(value[k])
        for name, value in dict(ema.named_buffers()).items():
            value.copy_(buffers[name][k])
