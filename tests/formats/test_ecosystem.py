"""Checkpoints from other code: Kadkhodaie et al. model.pt, facebookresearch DiT .pt, diffusers folders.

Each fixture writes a file in the format's own layout; the loaded Denoiser must then compute what
the original code computes. References, per format:

- Kadkhodaie et al.: a functional forward written here from their ``network.py`` that walks the
  state dict's keys directly (no biasprobe module involved).
- facebookresearch DiT: diffusers' independent ``DiTTransformer2DModel``, its weights mapped to the
  reference key layout as diffusers' conversion script maps them, with its timestep frequencies set
  to the reference's (diffusers divides by half − 1 where DiT divides by half).
- diffusers: the diffusers model's own forward, combined into D(y, σ) by hand with diffusers'
  scheduler ᾱ.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import biasprobe as bp
from biasprobe.analyses.jacobian import JacobianOperator, jacobian_matrix
from biasprobe.formats import SUPPORTED, detect_format

from tests.conftest import run_cli, tiny_checkpoint

TOLERANCE = {"rtol": 1e-4, "atol": 5e-5}  # float32, and t recovered from σ to ~1e-5 steps


def _image(shape, seed=0):
    return torch.rand(1, *shape, generator=torch.Generator().manual_seed(seed))


def _check_jacobian(denoiser, sigma):
    dataset = bp.jacobian(denoiser, _image(denoiser.image_shape), sigmas=[sigma], method="dense", top_k=4)
    assert dataset.sizes["sigma"] == 1
    assert np.isfinite(dataset["spectrum"].values).all()


def _check_locality(denoiser, sigma):
    dataset = bp.locality(denoiser, _image(denoiser.image_shape).repeat(2, 1, 1, 1), sigmas=[sigma])
    assert dataset.sizes["layer"] == len(denoiser.attention_modules())
    entropy, log_tokens = dataset["entropy"].values, dataset["entropy_uniform"].values
    assert np.isfinite(entropy).all() and (entropy <= log_tokens[None, None, :, None] + 1e-5).all()
    histogram = dataset["distance_histogram"].sum("distance_bin").values
    np.testing.assert_allclose(histogram, 1, atol=1e-5)


# --------------------------------------------------------------------------- Kadkhodaie et al.


def _unet_layout(channels: int, blocks: int, width: int, convs: int = 2) -> dict[str, list[tuple]]:
    """Each nn.Sequential of their UNet as (kind, in, out) layers, in their network.py's order."""
    w = [width * 2**b for b in range(blocks + 1)]

    def stage(first_in: int, out: int, count: int) -> list[tuple]:
        layers = []
        for index in range(count):
            layers += [("conv", first_in if index == 0 else out, out), ("bn", out, out), ("relu", 0, 0)]
        return layers

    layout = {"encoder.0": [("conv", channels, w[0]), ("relu", 0, 0)] + stage(w[0], w[0], convs - 1)}
    layout.update({f"encoder.{b}": stage(w[b - 1], w[b], convs) for b in range(1, blocks)})
    layout["mid_block"] = stage(w[blocks - 1], w[blocks], convs)
    layout.update({f"decoder.{b}": stage(w[b + 1], w[b], convs) for b in range(1, blocks)})
    layout["decoder.0"] = stage(2 * w[0], w[0], convs - 1) + [("conv", w[0], channels)]
    return layout


def _random_state(layout: dict[str, list[tuple]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, layers in layout.items():
        for index, (kind, cin, cout) in enumerate(layers):
            if kind == "conv":
                state[f"{prefix}.{index}.weight"] = (
                    torch.randn(cout, cin, 3, 3, generator=generator) * (2 / (9 * cin)) ** 0.5
                )
            elif kind == "bn":
                state[f"{prefix}.{index}.gammas"] = 0.5 + torch.rand(1, cout, 1, 1, generator=generator)
                state[f"{prefix}.{index}.running_sd"] = 0.5 + torch.rand(1, cout, 1, 1, generator=generator)
    return state


def _run_sequential(state, prefix, layers, x):
    for index, (kind, _, _) in enumerate(layers):
        key = f"{prefix}.{index}"
        if kind == "conv":
            weight = state[f"{key}.weight"]
            x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        elif kind == "bn":
            x = x / state[f"{key}.running_sd"] * state[f"{key}.gammas"]
        else:
            x = F.relu(x)
    return x


def _reference_unet(state, layout, blocks, y):
    """Their UNet.forward, written functionally over the state dict."""
    skips, x = [], y
    for b in range(blocks):
        x = _run_sequential(state, f"encoder.{b}", layout[f"encoder.{b}"], x)
        skips.append(x)
        x = F.avg_pool2d(x, 2)
    x = _run_sequential(state, "mid_block", layout["mid_block"], x)
    for b in reversed(range(blocks)):
        x = torch.cat([F.conv_transpose2d(x, state[f"upsample.{b}.weight"], stride=2), skips[b]], dim=1)
        x = _run_sequential(state, f"decoder.{b}", layout[f"decoder.{b}"], x)
    return x


@pytest.fixture(scope="module")
def kadkhodaie_unet(tmp_path_factory):
    layout = _unet_layout(channels=1, blocks=2, width=4)
    state = _random_state(layout, seed=0)
    generator = torch.Generator().manual_seed(1)
    for b, (cin, cout) in enumerate([(8, 4), (16, 8)]):
        state[f"upsample.{b}.weight"] = torch.randn(cin, cout, 2, 2, generator=generator) * 0.3
    path = tmp_path_factory.mktemp("kadkhodaie") / "model.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # as saved from nn.DataParallel
    return path, state, layout


def test_kadkhodaie_unet_matches_their_forward(kadkhodaie_unet):
    path, state, layout = kadkhodaie_unet
    assert detect_format(path) == "kadkhodaie-unet"
    denoiser = bp.load(path, image_size=8)
    assert denoiser.image_shape == (1, 8, 8)
    assert denoiser.describe()["config"]["num_blocks"] == 2
    y = _image((1, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(
            denoiser.denoise(y, 0.1), y - _reference_unet(state, layout, 2, y), **TOLERANCE
        )
    # bias-free: D(y) = J(y) y, which loading must preserve
    jac = jacobian_matrix(denoiser, y, 0.1)
    torch.testing.assert_close(jac @ y.flatten(), denoiser.denoise(y, 0.1).flatten(), **TOLERANCE)
    _check_jacobian(denoiser, 0.1)


@pytest.mark.parametrize("kernel_sizes", [[3, 3, 3, 3], [3, 1, 3, 1, 3]])  # BF_CNN, BF_CNN_RF-style
def test_kadkhodaie_bf_cnn_matches_their_forward(tmp_path, kernel_sizes):
    generator = torch.Generator().manual_seed(2)
    widths = [1] + [6] * (len(kernel_sizes) - 1) + [1]
    state = {
        f"conv_layers.{i}.weight": torch.randn(widths[i + 1], widths[i], k, k, generator=generator)
        / (k * widths[i] ** 0.5)
        for i, k in enumerate(kernel_sizes)
    }
    for i in range(len(kernel_sizes) - 2):
        state[f"BN_layers.{i}.gammas"] = 0.5 + torch.rand(1, 6, 1, 1, generator=generator)
        state[f"BN_layers.{i}.running_sd"] = 0.5 + torch.rand(1, 6, 1, 1, generator=generator)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "model.pt")

    def reference(y):  # their BF_CNN.forward with first_layer_linear=True
        x = F.conv2d(y, state["conv_layers.0.weight"], padding=kernel_sizes[0] // 2)
        for i in range(1, len(kernel_sizes) - 1):
            x = F.conv2d(x, state[f"conv_layers.{i}.weight"], padding=kernel_sizes[i] // 2)
            x = F.relu(x / state[f"BN_layers.{i - 1}.running_sd"] * state[f"BN_layers.{i - 1}.gammas"])
        return F.conv2d(
            x, state[f"conv_layers.{len(kernel_sizes) - 1}.weight"], padding=kernel_sizes[-1] // 2
        )

    denoiser = bp.load(tmp_path / "model.pt", image_size=8)
    assert detect_format(tmp_path / "model.pt") == "kadkhodaie-bf-cnn"
    y = _image((1, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(denoiser.denoise(y, 0.2), y - reference(y), **TOLERANCE)
    _check_jacobian(denoiser, 0.2)


def test_info_names_the_format_and_unknown_files_list_the_supported(kadkhodaie_unet, tmp_path):
    result = run_cli("info", kadkhodaie_unet[0])
    assert result.returncode == 0, result.stderr
    assert "kadkhodaie-unet" in result.stdout
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(bp.CheckpointError) as error:
        bp.load(tmp_path / "other.pt")
    assert all(description in str(error.value) for description in SUPPORTED.values())
    with pytest.raises(bp.InputError, match="class_label does not apply"):
        bp.load(kadkhodaie_unet[0], class_label=3)


# --------------------------------------------------------------------------- diffusers


@pytest.fixture
def diffusers():
    """diffusers, an optional dependency: tests that take this fixture skip without it."""
    return pytest.importorskip("diffusers")


def _randomised(model: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Replace every weight (adaLN-Zero and output layers start at zero) by small random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(std * torch.randn(param.shape, generator=generator))
    return model.eval()


def _tiny_unet(seed: int = 0):
    import diffusers

    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    )
    return _randomised(unet, seed, std=0.2)


def _sigma_at_step(scheduler, step: int) -> float:
    """σ (native units) of an integer step, from diffusers' own ᾱ."""
    alpha_bar = float(scheduler.alphas_cumprod[step])
    return math.sqrt((1 - alpha_bar) / alpha_bar)


def _hand_denoised(model, scheduler, y_native, step, prediction, **labels):
    """x̂₀ in native units from the diffusers model's raw output at x_t = √ᾱ y_n, as its pipelines do."""
    alpha_bar = float(scheduler.alphas_cumprod[step])
    sigma = _sigma_at_step(scheduler, step)
    x_t = math.sqrt(alpha_bar) * y_native
    with torch.no_grad():
        out = model(x_t, torch.tensor([float(step)]), **labels).sample[:, : y_native.shape[1]]
    if prediction == "epsilon":
        return y_native - sigma * out
    if prediction == "v_prediction":
        return math.sqrt(alpha_bar) * x_t - math.sqrt(1 - alpha_bar) * out
    return out


@pytest.mark.parametrize("storage", ["safetensors", "bin", "sharded"])
def test_diffusers_unet_model_folder_matches_diffusers(diffusers, tmp_path, storage):
    unet = _tiny_unet()
    options = {"bin": {"safe_serialization": False}, "sharded": {"max_shard_size": "40KB"}}.get(storage, {})
    unet.save_pretrained(tmp_path / "unet", **options)
    if storage == "sharded":
        assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors.index.json").exists()
    denoiser = bp.load(tmp_path / "unet")
    scheduler = diffusers.DDPMScheduler()  # a bare model folder gets DDPMScheduler's defaults
    np.testing.assert_allclose(
        denoiser.schedule.alphas_cumprod, scheduler.alphas_cumprod.double(), rtol=1e-4
    )  # diffusers: float32
    step = 400
    sigma = _sigma_at_step(scheduler, step) / 2  # pixel models see [-1, 1]: σ_n = 2σ
    assert denoiser.sigma_to_t(sigma) == pytest.approx(step, abs=1e-3)
    y = _image((1, 8, 8))
    expected = (_hand_denoised(unet, scheduler, 2 * y - 1, step, "epsilon") + 1) / 2
    with torch.no_grad():
        torch.testing.assert_close(denoiser.denoise(y, sigma), expected, **TOLERANCE)


def test_diffusers_pipeline_unet_with_cosine_v_prediction(diffusers, tmp_path):
    unet = _tiny_unet(seed=1)
    scheduler = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipeline")
    denoiser = bp.load(tmp_path / "pipeline")
    assert detect_format(tmp_path / "pipeline") == "diffusers"
    assert denoiser.describe()["space"] == "pixel" and denoiser.schedule.kind == "cosine"
    np.testing.assert_allclose(
        denoiser.schedule.alphas_cumprod, scheduler.alphas_cumprod.double(), rtol=1e-4
    )  # diffusers: float32
    step, y = 250, _image((1, 8, 8), seed=3)
    sigma = _sigma_at_step(scheduler, step) / 2
    expected = (_hand_denoised(unet, scheduler, 2 * y - 1, step, "v_prediction") + 1) / 2
    with torch.no_grad():
        torch.testing.assert_close(denoiser.denoise(y, sigma), expected, **TOLERANCE)


def test_diffusers_unet_attention_is_captured_without_changing_the_output(diffusers, tmp_path):
    _tiny_unet().save_pretrained(tmp_path / "unet")
    denoiser = bp.load(tmp_path / "unet")
    layers = denoiser.attention_modules()
    assert list(layers) == [
        "down_blocks.1.attentions.0",
        "mid_block.attentions.0",
        "up_blocks.0.attentions.0",
        "up_blocks.0.attentions.1",
    ]
    y = _image((1, 8, 8))
    processors = [type(layer.attention.processor) for layer in layers.values()]
    with torch.no_grad():
        fused = denoiser.denoise(y, 0.1)
        for layer in layers.values():
            layer.observer = lambda module, probs: None
        explicit = denoiser.denoise(y, 0.1)
        for layer in layers.values():
            layer.observer = None
    torch.testing.assert_close(explicit, fused, **TOLERANCE)
    assert [type(layer.attention.processor) for layer in layers.values()] == processors
    _check_locality(denoiser, 0.1)
    assert [layer.grid for layer in layers.values()] == [(4, 4)] * 4
    assert [layer.pixels_per_token for layer in layers.values()] == [2] * 4
    _check_jacobian(denoiser, 0.1)


def test_jacobian_of_a_network_vmap_cannot_batch(diffusers, tmp_path):
    """diffusers' UNet queries memory formats inside its backward, which vmap refuses, and breaks
    forward mode: the operator falls back to batches of copies of y (a double backward for the
    columns) and still gives autograd's Jacobian, rows and columns."""
    _tiny_unet().save_pretrained(tmp_path / "unet")
    denoiser = bp.load(tmp_path / "unet")
    y = _image(denoiser.image_shape, seed=3)
    operator = JacobianOperator(denoiser, y, 0.1)
    rows = operator.dense()
    assert operator.vmap == {"rows": False, "columns": True}
    reference = torch.autograd.functional.jacobian(lambda v: denoiser.denoise(v, 0.1), y).reshape(rows.shape)
    torch.testing.assert_close(rows, reference, **TOLERANCE)
    torch.testing.assert_close(operator.columns(torch.eye(len(rows))[:5]), reference[:, :5].T, **TOLERANCE)
    assert operator.vmap == {"rows": False, "columns": False}


def _tiny_dit(heads: int, head_dim: int, seed: int, classes: int = 10, size: int = 8):
    import diffusers

    dit = diffusers.DiTTransformer2DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=size,
        patch_size=2,
        num_embeds_ada_norm=classes,
        norm_eps=1e-6,  # the reference DiT's LayerNorm epsilon
    )
    dit = _randomised(dit, seed)
    blocks = dit.transformer_blocks
    with torch.no_grad():  # the reference shares one timestep/label embedder between blocks
        for block in blocks[1:]:
            block.norm1.emb.load_state_dict(blocks[0].norm1.emb.state_dict())
    return dit


def _facebook_layout(dit) -> dict[str, torch.Tensor]:
    """The diffusers DiT's weights under the reference's key names (diffusers' conversion, inverted)."""
    source = dict(dit.state_dict())
    taken = set()

    def take(key):
        taken.add(key)
        return source[key].clone()

    state = {"pos_embed": dit.pos_embed.pos_embed.clone()}
    emb = "transformer_blocks.0.norm1.emb"
    pairs = {
        "x_embedder.proj": "pos_embed.proj",
        "t_embedder.mlp.0": f"{emb}.timestep_embedder.linear_1",
        "t_embedder.mlp.2": f"{emb}.timestep_embedder.linear_2",
        "final_layer.adaLN_modulation.1": "proj_out_1",
        "final_layer.linear": "proj_out_2",
    }
    for i in range(len(dit.transformer_blocks)):
        block = f"transformer_blocks.{i}"
        for part in ("weight", "bias"):
            state[f"blocks.{i}.attn.qkv.{part}"] = torch.cat(
                [take(f"{block}.attn1.to_{name}.{part}") for name in "qkv"]
            )
        pairs.update(
            {
                f"blocks.{i}.attn.proj": f"{block}.attn1.to_out.0",
                f"blocks.{i}.mlp.fc1": f"{block}.ff.net.0.proj",
                f"blocks.{i}.mlp.fc2": f"{block}.ff.net.2",
                f"blocks.{i}.adaLN_modulation.1": f"{block}.norm1.linear",
            }
        )
        taken.update(k for k in source if k.startswith(f"{block}.norm1.emb."))  # copies of block 0's
    for target, name in pairs.items():
        for part in ("weight", "bias"):
            state[f"{target}.{part}"] = take(f"{name}.{part}")
    state["y_embedder.embedding_table.weight"] = take(f"{emb}.class_embedder.embedding_table.weight")
    assert taken == set(source), sorted(set(source) - taken)
    return state


def _with_reference_timesteps(dit):
    """The diffusers DiT with the reference DiT's timestep frequencies exp(−ln(10⁴)·k/128)."""
    for block in dit.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    return dit


def test_facebook_dit_state_dict_matches_diffusers_dit(diffusers, tmp_path):
    dit = _tiny_dit(heads=6, head_dim=64, seed=0)  # width 384: DiT-S's, so 6 heads by the released rule
    torch.save(_facebook_layout(dit), tmp_path / "DiT-S-2-64x64.pt")
    denoiser = bp.load(tmp_path / "DiT-S-2-64x64.pt")
    assert detect_format(tmp_path / "DiT-S-2-64x64.pt") == "dit-pt"
    summary = denoiser.describe()
    assert (
        summary["config"] | {"depth": 2, "heads": 6, "learn_sigma": True, "num_classes": 10}
        == summary["config"]
    )
    assert denoiser.image_shape == (4, 8, 8) and summary["class_label"] == 10  # latent, null class
    scheduler = diffusers.DDPMScheduler()  # DiT: linear, 1000 steps, 1e-4 … 0.02
    step, y = 300, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sigma = _sigma_at_step(scheduler, step)  # latents as they are: σ in latent units
    reference = _with_reference_timesteps(dit)
    expected = _hand_denoised(reference, scheduler, y, step, "epsilon", class_labels=torch.tensor([10]))
    with torch.no_grad():
        torch.testing.assert_close(denoiser.denoise(y, sigma), expected, **TOLERANCE)
        labelled = _hand_denoised(reference, scheduler, y, step, "epsilon", class_labels=torch.tensor([3]))
        torch.testing.assert_close(
            bp.load(tmp_path / "DiT-S-2-64x64.pt", class_label=3).denoise(y, sigma), labelled, **TOLERANCE
        )
    _check_locality(denoiser, sigma)


def test_facebook_dit_train_checkpoint_prefers_ema_and_names_heads(diffusers, tmp_path):
    ema, model = (
        _tiny_dit(heads=6, head_dim=8, seed=1, size=4),
        _tiny_dit(heads=6, head_dim=8, seed=2, size=4),
    )
    args = argparse.Namespace(model="DiT-S/2", image_size=64, num_classes=10, global_seed=0)
    checkpoint = {"model": _facebook_layout(model), "ema": _facebook_layout(ema), "opt": {}, "args": args}
    torch.save(checkpoint, tmp_path / "0000100.pt")
    denoiser = bp.load(tmp_path / "0000100.pt")
    summary = denoiser.describe()
    assert (
        summary["weights"] == "ema"
        and summary["config"]["heads"] == 6
        and summary["training"]["model"] == "DiT-S/2"
    )
    scheduler = diffusers.DDPMScheduler()
    step, y = 700, torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    expected = _hand_denoised(
        _with_reference_timesteps(ema), scheduler, y, step, "epsilon", class_labels=torch.tensor([10])
    )
    with torch.no_grad():
        torch.testing.assert_close(
            denoiser.denoise(y, _sigma_at_step(scheduler, step)), expected, **TOLERANCE
        )
    _check_jacobian(denoiser, _sigma_at_step(scheduler, step))


class Options:
    """Not allow-listed: a checkpoint whose args is one of these must be refused."""


def test_facebook_dit_checkpoint_with_other_objects_is_refused(diffusers, tmp_path):
    state = _facebook_layout(_tiny_dit(heads=6, head_dim=8, seed=0))
    torch.save({"ema": state, "args": Options()}, tmp_path / "bad.pt")
    with pytest.raises(bp.CheckpointError, match="arbitrary unpickling"):
        bp.load(tmp_path / "bad.pt")


def test_diffusers_dit_pipeline_and_legacy_config_match_diffusers(diffusers, tmp_path):
    dit = _tiny_dit(heads=2, head_dim=8, seed=4, size=4)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8,), norm_num_groups=4, latent_channels=4, sample_size=16
    )
    scheduler = diffusers.DDPMScheduler()
    diffusers.DiTPipeline(transformer=dit, vae=vae, scheduler=scheduler).save_pretrained(
        tmp_path / "pipeline"
    )
    step, y = 500, torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    expected = _hand_denoised(dit, scheduler, y, step, "epsilon", class_labels=torch.tensor([10]))
    config_path = tmp_path / "pipeline" / "transformer" / "config.json"
    for class_name in ("DiTTransformer2DModel", "Transformer2DModel"):  # legacy DiT configs name the latter
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "_class_name": class_name}))
        denoiser = bp.load(tmp_path / "pipeline")
        assert denoiser.describe()["space"] == "latent" and denoiser.native_range == "unit"
        with torch.no_grad():
            torch.testing.assert_close(
                denoiser.denoise(y, _sigma_at_step(scheduler, step)), expected, **TOLERANCE
            )
    _check_locality(denoiser, 0.5)
    assert {layer.grid for layer in denoiser.attention_modules().values()} == {(2, 2)}
    _check_jacobian(denoiser, 0.5)


# --------------------------------------------------------------------------- latents through a VAE


def _tiny_vae(folder, scaling: float = 0.5):
    """A tiny diffusers AutoencoderKL with 8× downsampling (four blocks), saved as safetensors."""
    import diffusers

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), sample_size=32, scaling_factor=scaling,
    ).eval()
    vae.save_pretrained(folder)
    return vae


@pytest.fixture
def latent_setup(diffusers, tmp_path):
    """A tiny DiT train.py checkpoint on 4×4×4 latents, a tiny VAE folder and two RGB pictures."""
    from PIL import Image

    dit = _tiny_dit(heads=6, head_dim=8, seed=3, size=4)
    args = argparse.Namespace(model="DiT-S/2", image_size=32, num_classes=10)
    torch.save({"ema": _facebook_layout(dit), "args": args}, tmp_path / "dit.pt")
    vae = _tiny_vae(tmp_path / "vae")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    return tmp_path, vae


def _direct_latents(vae, png, scaling=0.5):
    from PIL import Image

    pixels = torch.from_numpy(np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    with torch.no_grad():
        return vae.encode(pixels[None] * 2 - 1).latent_dist.mean[0] * scaling


def test_vae_encodes_pictures_for_jacobian_and_locality(latent_setup):
    from biasprobe.latents import encode_images, load_vae

    tmp, vae = latent_setup
    expected = _direct_latents(vae, tmp / "a.png")
    encoder = load_vae(tmp / "vae")
    assert encoder.factor == 8 and encoder.scaling == 0.5
    torch.testing.assert_close(encode_images(encoder, [tmp / "a.png"], (4, 4, 4))[0], expected, **TOLERANCE)

    result = run_cli("jacobian", tmp / "dit.pt", "--image", tmp / "a.png", "--vae", tmp / "vae",
                     "--class-label", "3", "--top-k", "2", "--device", "cpu", "--out", tmp / "j.zarr")
    assert result.returncode == 0, result.stderr
    stored = bp.open(tmp / "j.zarr")
    torch.testing.assert_close(torch.from_numpy(stored.clean.values[0]), expected, **TOLERANCE)
    assert stored.attrs["vae"] == str(tmp / "vae")

    result = run_cli("locality", tmp / "dit.pt", "--image", tmp / "a.png", "--image", tmp / "b.png", "--resize",
                     "--vae", tmp / "vae", "--class-label", "3", "--sigma", "0.1", "--device", "cpu",
                     "--out", tmp / "l.zarr")
    assert result.returncode == 0, result.stderr
    stored = bp.open(tmp / "l.zarr")
    assert stored.clean.shape == (2, 4, 4, 4)
    torch.testing.assert_close(torch.from_numpy(stored.clean.values[0]), expected, **TOLERANCE)


def test_latent_npy_is_read_unclamped(latent_setup):
    from biasprobe.images import read_image

    tmp, _ = latent_setup
    latents = 3 * np.random.default_rng(1).standard_normal((4, 4, 4)).astype(np.float32)  # well outside [0, 1]
    np.save(tmp / "z.npy", latents)
    assert torch.equal(read_image(tmp / "z.npy", (4, 4, 4)), torch.from_numpy(latents))
    result = run_cli("jacobian", tmp / "dit.pt", "--image", tmp / "z.npy", "--top-k", "2", "--device", "cpu",
                     "--out", tmp / "z.zarr")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(bp.open(tmp / "z.zarr").clean.values[0], latents)
    info = run_cli("info", tmp / "dit.pt").stdout
    assert any(line.split() == ["space", "latent"] for line in info.splitlines()) and "native range" not in info
    np.save(tmp / "bad.npy", np.full((4, 4, 4), np.nan, dtype=np.float32))
    with pytest.raises(bp.InputError, match="NaN"):
        read_image(tmp / "bad.npy", (4, 4, 4))


def test_vae_and_class_label_errors_are_one_line(latent_setup):
    from tests.conftest import tiny_checkpoint

    tmp, _ = latent_setup
    pixel = tiny_checkpoint(tmp / "pixel.pt", "unet-bf", image_size=8, channels=3)
    (tmp / "unet").mkdir()
    (tmp / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "_diffusers_version": "0"}))
    cases = {
        "UNet2DModel, not an AutoencoderKL": ("jacobian", tmp / "dit.pt", "--image", tmp / "a.png",
                                              "--vae", tmp / "unet"),
        "latent-space models": ("jacobian", pixel, "--image", tmp / "a.png", "--vae", tmp / "vae"),
        "not an AutoencoderKL": ("locality", tmp / "dit.pt", "--image", tmp / "a.png", "--vae", tmp),
        "pass --resize": ("jacobian", tmp / "dit.pt", "--image", tmp / "b.png", "--vae", tmp / "vae"),
        "encode pictures with --vae": ("jacobian", tmp / "dit.pt", "--image", tmp / "a.png"),
        "--class-label does not apply": ("jacobian", pixel, "--image", tmp / "a.png", "--class-label", "1"),
    }
    for needle, args in cases.items():
        result = run_cli(*args, "--device", "cpu")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error:"), (needle, result.stderr)
        assert needle in lines[0], lines[0]


def test_image_size_option_reaches_fully_convolutional_foreign_nets(kadkhodaie_unet, tmp_path):
    picture = tmp_path / "x.npy"
    np.save(picture, np.random.default_rng(0).random((1, 16, 16)).astype(np.float32))
    result = run_cli("jacobian", kadkhodaie_unet[0], "--image", picture, "--image-size", "16", "--sigma", "0.1",
                     "--top-k", "8", "--out", tmp_path / "j.zarr")
    assert result.returncode == 0, result.stderr
    assert bp.open(tmp_path / "j.zarr").clean.shape[-2:] == (16, 16)
    native = tiny_checkpoint(tmp_path / "native.pt", "dit")
    result = run_cli("jacobian", native, "--image", picture, "--image-size", "16")
    assert result.returncode == 1 and result.stderr.strip().startswith("Error: --image-size does not apply")
