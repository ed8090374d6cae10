"""The training loop: it learns, resumes exactly, and DDP equals one process."""


import copy
import json
import math

import pytest
import torch

import biasprobe as bp
from biasprobe.checkpoints import read_checkpoint
from biasprobe.errors import ParameterError
from biasprobe.models import attention_modules, build_model, from_preset, set_attention_kernel
from biasprobe.training import TrainingConfig, loop, state_path, train


def discs(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Bright discs on a dark background: a simple distribution a tiny model can learn."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(size).float()
    centre = torch.rand(n, 2, generator=g) * (size - 3) + 1.5
    radius = torch.rand(n, 1, 1, generator=g) * 1.5 + 1.5
    dist = ((grid[None, :, None] - centre[:, 0, None, None]) ** 2 + (grid[None, None, :] - centre[:, 1, None, None]) ** 2).sqrt()
    return (0.2 + 0.6 * (dist < radius)).float()[:, None]


@pytest.mark.parametrize("family", ["dit", "unet-bf"])
def test_tiny_run_lowers_the_loss(tmp_path, family):
    torch.manual_seed(0)
    network, _ = from_preset(family, "tiny", image_size=8, channels=1)
    config = TrainingConfig(steps=80, batch_size=16, learning_rate=2e-3, seed=1)
    result = train(network, discs(32), tmp_path / "a.pt", config, metadata={"data": "discs"}, progress=False)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    ckpt = read_checkpoint(tmp_path / "a.pt")
    assert ckpt.training["data"] == "discs" and ckpt.training["n_train"] == 32
    assert ckpt.training["steps_done"] == 80
    assert not state_path(tmp_path / "a.pt").exists()  # cleaned up after a finished run
    assert bp.load(tmp_path / "a.pt").image_shape == (1, 8, 8)


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    images = discs(16)
    config = TrainingConfig(steps=6, batch_size=4, learning_rate=1e-3, checkpoint_every=3, seed=2)

    def fresh():
        torch.manual_seed(0)
        return from_preset("dit", "tiny", image_size=8, channels=1)[0]

    train(fresh(), images, tmp_path / "straight.pt", config, progress=False)

    real_update, calls = loop._update_ema, []

    def update_then_die(*args):
        calls.append(1)
        if len(calls) == 5:  # during step 5, after the checkpoint at step 3
            raise KeyboardInterrupt
        real_update(*args)

    monkeypatch.setattr(loop, "_update_ema", update_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(fresh(), images, tmp_path / "resumed.pt", config, progress=False)
    assert state_path(tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(loop, "_update_ema", real_update)
    result = train(fresh(), images, tmp_path / "resumed.pt", config, progress=False)
    assert result.resumed_from == 3
    straight = read_checkpoint(tmp_path / "straight.pt").state_dict
    resumed = read_checkpoint(tmp_path / "resumed.pt").state_dict
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)

    other = TrainingConfig(steps=6, batch_size=4, learning_rate=5e-3, checkpoint_every=3, seed=2)
    monkeypatch.setattr(loop, "_update_ema", update_then_die)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        train(fresh(), images, tmp_path / "x.pt", config, progress=False)
    with pytest.raises(bp.InputError, match="learning_rate"):
        train(fresh(), images, tmp_path / "x.pt", other, progress=False)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    network, _ = from_preset("unet-bf", "tiny", image_size=8, channels=1)
    calls = []

    def poison(module, inputs, output):  # from the 5th step on, the network outputs NaN
        calls.append(1)
        return output * float("nan") if len(calls) >= 5 else output

    network.register_forward_hook(poison)
    config = TrainingConfig(steps=10, batch_size=4, learning_rate=1e-3, checkpoint_every=2, seed=0)
    with pytest.raises(bp.InputError, match=r"loss is nan at step 5.*step 4"):
        train(network, discs(8), tmp_path / "a.pt", config, progress=False)
    kept = read_checkpoint(tmp_path / "a.pt")
    assert kept.training["steps_done"] == 4
    assert all(torch.isfinite(v).all() for v in kept.state_dict.values() if v.is_floating_point())
    mark = loop.diverged_path(tmp_path / "a.pt").read_text()  # standard JSON: the NaN steps left out of the means
    curve = json.loads(mark, parse_constant=lambda name: pytest.fail(f"{name} in the mark"))["loss_curve"]
    assert curve[-1][0] == 6 and math.isfinite(curve[-1][1])  # steps 1-6, of which 5 and 6 are NaN


def test_resume_refuses_other_windows_and_fewer_steps(tmp_path, monkeypatch):
    images = discs(8)
    config = TrainingConfig(steps=6, batch_size=4, checkpoint_every=2, seed=0)

    def dit(windows):
        torch.manual_seed(0)
        return from_preset("dit", "tiny", image_size=8, channels=1, windows=windows)[0]

    real_update, calls = loop._update_ema, []

    def update_then_die(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        real_update(*args)

    monkeypatch.setattr(loop, "_update_ema", update_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(dit([3, 3]), images, tmp_path / "w.pt", config, progress=False)
    monkeypatch.setattr(loop, "_update_ema", real_update)
    with pytest.raises(bp.InputError, match="model_config"):  # a global DiT must not continue a windowed one
        train(dit(None), images, tmp_path / "w.pt", config, progress=False)
    with pytest.raises(bp.InputError, match="steps is 3, below the 4 steps already done"):
        train(dit([3, 3]), images, tmp_path / "w.pt", TrainingConfig(steps=3, batch_size=4, checkpoint_every=2),
              progress=False)
    assert train(dit([3, 3]), images, tmp_path / "w.pt", config, progress=False).resumed_from == 4


def test_compile_setting_takes_the_old_bool_and_the_modes():
    assert TrainingConfig(steps=1).compile is False
    assert TrainingConfig(steps=1, compile=True).compile == "default"  # checkpoints and recipes before the modes
    for mode in loop.COMPILE_MODES:
        assert TrainingConfig(steps=1, compile=mode).compile == mode
    with pytest.raises(ParameterError, match="compile must be true, false or one of default, reduce-overhead"):
        TrainingConfig(steps=1, compile="fast")
    with pytest.raises(ParameterError, match="channels_last must be true or false"):
        TrainingConfig(steps=1, channels_last="yes")
    assert TrainingConfig(steps=1).compile_scope == "network"
    with pytest.raises(ParameterError, match="compile_scope must be one of network, step, not 'all'"):
        TrainingConfig(steps=1, compile_scope="all")
    # a run saved with the old bool (and before the scopes) may be continued in another mode and scope
    assert loop.changed_settings({"compile": True, "channels_last": False},
                                 {"compile": "reduce-overhead", "channels_last": True, "compile_scope": "step"}) == ""


def test_a_training_step_is_freed_as_soon_as_it_is_dropped():
    """train() drops its step before closing the process group: no reference cycle may keep the step, and
    with it DistributedDataParallel's reducer, alive until a garbage collection."""
    import gc
    import weakref

    network = from_preset("unet-bf", "tiny", image_size=8, channels=1)[0]
    optimizer = loop.make_optimizer(network.parameters(), TrainingConfig(steps=1), torch.device("cpu"))
    step = loop.TrainingStep(network, network, optimizer, discs(4), TrainingConfig(steps=1, batch_size=4))
    step(0)
    dropped = weakref.ref(step)
    gc.disable()
    try:
        del step
        assert dropped() is None
    finally:
        gc.enable()


def test_compiling_the_step_around_the_network_takes_one_process():
    network = from_preset("unet-bf", "tiny", image_size=8, channels=1)[0]
    optimizer = loop.make_optimizer(network.parameters(), TrainingConfig(steps=1), torch.device("cpu"))
    config = TrainingConfig(steps=1, batch_size=4, compile="default", compile_scope="step")
    with pytest.raises(ParameterError, match="compile_scope 'step' trains in one process"):
        loop.TrainingStep(network, network, optimizer, discs(4), config, world=2, rank=0)


def test_compiled_and_channels_last_runs_equal_the_plain_run(tmp_path, monkeypatch):
    """The same seeds give the same losses and weights eagerly, compiled with CUDA graphs' mode
    (a plain inductor compile on the CPU), the network alone or the step around it (the loss, and the EMA
    with its changing decay and the batch norm's running statistics), and with channels-last weights."""
    images = discs(8)
    seen = {}
    real_compile, real_optimizer = torch.compile, loop.make_optimizer

    def compile_spy(network, mode=None):
        seen["mode"] = mode
        return real_compile(network, mode=mode)

    def optimizer_spy(parameters, config, device):
        parameters = list(parameters)
        seen["nhwc"] = all(p.is_contiguous(memory_format=torch.channels_last) for p in parameters if p.ndim == 4)
        return real_optimizer(parameters, config, device)

    monkeypatch.setattr(torch, "compile", compile_spy)
    monkeypatch.setattr(loop, "make_optimizer", optimizer_spy)

    def run(name, **settings):
        torch.manual_seed(0)
        network = from_preset("unet-bf", "tiny", image_size=8, channels=1)[0]
        config = TrainingConfig(steps=4, batch_size=4, learning_rate=1e-3, seed=1, **settings)
        result = train(network, images, tmp_path / f"{name}.safetensors", config, progress=False)
        return result.losses, read_checkpoint(tmp_path / f"{name}.safetensors")

    plain_losses, plain = run("plain")
    assert "mode" not in seen and not seen["nhwc"]
    for name, settings in {"graphs": {"compile": "reduce-overhead"}, "nhwc": {"channels_last": True},
                           "whole": {"compile": "reduce-overhead", "compile_scope": "step"}}.items():
        losses, saved = run(name, **settings)
        torch.testing.assert_close(losses, plain_losses, rtol=1e-5, atol=1e-6)
        assert saved.training["compile"] == settings.get("compile", False)
        assert saved.training["compile_scope"] == settings.get("compile_scope", "network")
        assert seen.pop("mode", False) == settings.get("compile", False)
        assert seen["nhwc"] == settings.get("channels_last", False)
        for key, weight in plain.state_dict.items():
            assert saved.state_dict[key].is_contiguous()  # the file format is unchanged
            torch.testing.assert_close(saved.state_dict[key], weight, rtol=1e-4, atol=1e-6)
    assert any(w.ndim == 4 for w in plain.state_dict.values())  # the UNet has convolutions to reorder


def test_a_compiled_network_with_dropout_draws_the_same_masks_as_the_eager_one(tmp_path):
    """Dropout under torch.compile would draw from Inductor's generator; the loop makes it draw from
    torch's, so that compiled and eager training with the same seeds give the same losses and weights."""
    images = discs(8)

    def run(name, compile, scope="network"):
        torch.manual_seed(0)
        network = build_model("unet-ddpm", image_size=8, channels=1, base_width=8, channel_mult=(1, 2),
                              num_res_blocks=1, attention_resolutions=(), groups=2, dropout=0.5)
        config = TrainingConfig(steps=3, batch_size=4, learning_rate=1e-3, seed=1, compile=compile,
                                compile_scope=scope)
        result = train(network, images, tmp_path / f"{name}.safetensors", config, progress=False)
        return result.losses, read_checkpoint(tmp_path / f"{name}.safetensors").state_dict

    plain_losses, plain = run("plain", False)
    for scope in loop.COMPILE_SCOPES:
        losses, compiled = run(f"compiled-{scope}", "default", scope)
        torch.testing.assert_close(losses, plain_losses, rtol=1e-5, atol=1e-6)
        for key, weight in plain.items():
            torch.testing.assert_close(compiled[key], weight, rtol=1e-4, atol=1e-6)


def test_warm_restart_may_change_compile_and_channels_last(tmp_path):
    images = discs(8)

    def network():
        torch.manual_seed(0)
        return from_preset("unet-bf", "tiny", image_size=8, channels=1)[0]

    first = TrainingConfig(steps=2, batch_size=4, seed=1, compile=False)
    train(network(), images, tmp_path / "a.safetensors", first, progress=False)
    more = TrainingConfig(steps=4, batch_size=4, seed=1, channels_last=True)
    result = train(network(), images, tmp_path / "a.safetensors", more, progress=False, init=tmp_path / "a.safetensors")
    assert (result.losses_from, result.steps_done) == (2, 4)
    assert read_checkpoint(tmp_path / "a.safetensors").training["channels_last"] is True


def test_attention_masks_are_built_before_compiling_so_the_network_traces_once():
    """Masks built inside a compiled graph would live in memory a CUDA-graph replay reuses (and cost
    a recompile once cached): the loop builds them eagerly first, drawing no random number."""
    torch.manual_seed(0)
    network, shape = from_preset("dit", "tiny", image_size=8, channels=1, windows=[3, 5])
    set_attention_kernel(network, "flex")  # its block masks too (the CPU's flex has no backward)
    network.requires_grad_(False)
    state = torch.random.get_rng_state()
    loop.build_attention_masks(network, shape, discs(1))
    assert torch.equal(torch.random.get_rng_state(), state) and network.training
    windowed = [layer for layer in attention_modules(network).values() if layer.window]
    assert len(windowed) == 2 and all(len(layer._mask_cache) == 2 for layer in windowed)
    graphs = []

    def counting(graph, inputs):
        graphs.append(graph)
        return graph.forward

    compiled = torch.compile(network, backend=counting)
    y, t = torch.rand(4, *shape), torch.tensor([1.0, 10.0, 100.0, 900.0])
    first = compiled(y, t)
    torch.testing.assert_close(compiled(y, t), first)
    assert len(graphs) == 1  # one graph, no break, no recompile


def test_a_run_resumed_in_the_other_memory_layout_continues_exactly(tmp_path):
    images = discs(8)

    def run(output, steps, max_minutes=None, channels_last=False):
        torch.manual_seed(0)
        network = from_preset("unet-bf", "tiny", image_size=8, channels=1)[0]
        config = TrainingConfig(steps=steps, batch_size=4, learning_rate=1e-3, seed=1, checkpoint_every=1,
                                max_minutes=max_minutes, channels_last=channels_last)
        return train(network, images, output, config, progress=False)

    straight = run(tmp_path / "a.safetensors", 4)
    first = run(tmp_path / "b.safetensors", 4, max_minutes=1e-9)  # stops after one step, keeping its state
    assert first.steps_done == 1 and state_path(tmp_path / "b.safetensors").exists()
    resumed = run(tmp_path / "b.safetensors", 4, channels_last=True)
    assert resumed.resumed_from == 1
    torch.testing.assert_close(resumed.losses, straight.losses, rtol=1e-5, atol=1e-6)
    # the restored moments take their parameter's layout (fused kernels pair elements by position)
    weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last))
    optimizer = torch.optim.AdamW([weight])
    optimizer.state[weight] = {"exp_avg": torch.arange(108.0).view(4, 3, 3, 3), "step": torch.tensor(1.0)}
    loop.match_state_layouts(optimizer)
    moved = optimizer.state[weight]["exp_avg"]
    assert moved.stride() == weight.stride() and torch.equal(moved, torch.arange(108.0).view(4, 3, 3, 3))


def test_a_diverging_loss_stops_training_before_it_overwrites_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "LOSS_READ_EVERY", 10)
    torch.manual_seed(0)
    network, _ = from_preset("dit", "tiny", image_size=8, channels=1)
    calls = []

    def blow_up(module, inputs, output):  # from the 21st step on, the output is 30 times too large: finite, far off
        calls.append(1)
        return output * 30 if len(calls) > 20 else output

    network.register_forward_hook(blow_up)
    config = TrainingConfig(steps=40, batch_size=4, learning_rate=1e-3, checkpoint_every=10, seed=0)
    with pytest.raises(bp.TrainingDiverged, match=r"steps 21-30 .* over 2.5× the lowest .*weights of step 20") as caught:
        train(network, discs(8), tmp_path / "a.pt", config, progress=False)
    assert (caught.value.step, caught.value.kept) == (30, 20)
    assert "grad_clip" in str(caught.value)
    assert read_checkpoint(tmp_path / "a.pt").training["steps_done"] == 20
    mark = json.loads(loop.diverged_path(tmp_path / "a.pt").read_text())
    assert (mark["step"], mark["kept"], mark["grad_clip"]) == (30, 20, None)
    # the run's only trace: its curves to the read that diverged, as means over each read of 10 steps here
    assert [step for step, _ in mark["loss_curve"]] == [10, 20, 30] and mark["losses_from"] == 0
    assert mark["loss_curve"][2][1] > 2.5 * min(mark["loss_curve"][0][1], mark["loss_curve"][1][1])
    assert len(mark["grad_norm_curve"]) == 3 and all(value > 0 for _, value in mark["grad_norm_curve"])
    # the same settings would retrace the same steps: refused, also as a warm restart; a clip clears the mark
    with pytest.raises(bp.TrainingDiverged, match="diverged at step 30 with these settings"):
        train(network, discs(8), tmp_path / "a.pt", config, progress=False)
    calls.clear()
    clipped = TrainingConfig(**{**config.__dict__, "grad_clip": 1.0})
    result = train(network, discs(8), tmp_path / "a.pt", clipped, progress=False)
    assert result.resumed_from == 20 and result.steps_done == 40
    assert not loop.diverged_path(tmp_path / "a.pt").exists()


def test_the_divergence_guard_judges_reads_against_the_lowest_before_them():
    guard = loop.DivergenceGuard([1.0] * 50 + [0.5] * 50 + [0.6] * 20)  # whole reads of 50; the partial one is not
    assert guard.lowest == 0.5
    guard.check([1.2] * 50, 120, "a.pt", 100)  # 2.4× the lowest: not diverged
    guard.check([50.0] * 9, 170, "a.pt", 100)  # fewer than 10 steps: not judged, not counted
    guard.check([0.2] * 20, 179, "a.pt", 100)  # a partial read is judged but too noisy to set the lowest
    assert guard.lowest == 0.5
    with pytest.raises(bp.TrainingDiverged, match="steps 200-249"):
        guard.check([1.26] * 50, 199, "a.pt", 100)
    with pytest.raises(bp.TrainingDiverged, match="loss is inf at step 2"):
        loop.DivergenceGuard([]).check([0.1, float("inf")], 0, "a.pt", 0)


def test_each_step_returns_its_gradient_norm_before_clipping_and_clips_to_the_limit():
    torch.manual_seed(0)
    network, _ = from_preset("dit", "tiny", image_size=8, channels=1)
    for limit in (None, 1e-3):
        optimizer = loop.make_optimizer(network.parameters(), TrainingConfig(steps=1), torch.device("cpu"))
        config = TrainingConfig(steps=1, batch_size=4, grad_clip=limit)
        loss, norm = loop.TrainingStep(network, copy.deepcopy(network), optimizer, discs(4), config)(0)
        after = torch.sqrt(sum((p.grad ** 2).sum() for p in network.parameters() if p.grad is not None))
        assert loss > 0 and norm > 1e-2
        assert after == pytest.approx(float(norm) if limit is None else limit, rel=1e-5)


def test_the_gradient_norms_are_kept_across_a_resumption(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "LOSS_READ_EVERY", 3)
    config = TrainingConfig(steps=6, batch_size=4, learning_rate=1e-3, checkpoint_every=3, seed=2, max_minutes=1e-9)
    torch.manual_seed(0)
    first = train(from_preset("dit", "tiny", image_size=8, channels=1)[0], discs(8), tmp_path / "a.pt", config,
                  progress=False)
    assert first.steps_done == 1 and len(first.grad_norms) == 1  # stopped by its time limit after one step
    torch.manual_seed(0)
    rest = train(from_preset("dit", "tiny", image_size=8, channels=1)[0], discs(8), tmp_path / "a.pt",
                 TrainingConfig(**{**config.__dict__, "max_minutes": None}), progress=False)
    assert rest.resumed_from == 1 and len(rest.grad_norms) == len(rest.losses) == 6
    assert rest.grad_norms[0] == first.grad_norms[0] and all(n > 0 for n in rest.grad_norms)
