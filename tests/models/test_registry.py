import inspect
import json

import pytest
import torch

from biasprobe.models import FAMILIES, PRESETS, build_model, preset_config


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_has_a_tiny_preset_that_builds_and_runs(family):
    torch.manual_seed(0)
    model = build_model(family, **preset_config(family, "tiny")).eval()
    assert model.family == family
    assert model.conditioning in ("none", "timestep")
    json.dumps(model.config)
    shape = (2, model.config["channels"], 32, 32)
    inputs = (torch.randn(shape),)
    if model.conditioning == "timestep":
        inputs += (torch.rand(2) * 999,)
    with torch.no_grad():
        out = model(*inputs)
    assert out.shape == (2, model.out_channels, 32, 32)


@pytest.mark.parametrize("family, preset", [(f, p) for f in PRESETS for p in PRESETS[f]])
def test_presets_are_valid_keywords(family, preset):
    assert set(preset_config(family, preset)) <= set(inspect.signature(FAMILIES[family]).parameters)


def test_preset_config_is_a_copy():
    preset_config("unet-ddpm", "default")["channel_mult"].append(4)
    assert preset_config("unet-ddpm", "default")["channel_mult"] == [1, 2, 2, 2]


def test_unknown_names_are_explained():
    with pytest.raises(ValueError, match="known families: unet-bf, unet-ddpm, dit"):
        build_model("vit")
    with pytest.raises(ValueError, match="known presets: xs, zoo, zoo128, zoo192, zoo256, s, small, tiny"):
        preset_config("dit", "huge")
    with pytest.raises(ValueError, match="unknown keywords for dit: depht"):
        build_model("dit", depht=3)


def test_conditioning_attributes():
    assert {name: cls.conditioning for name, cls in FAMILIES.items()} == {
        "unet-bf": "none", "unet-ddpm": "timestep", "dit": "timestep"}


def test_forward_flops_counts_the_attention_products_fused_kernels_hide():
    from torch.utils.flop_counter import FlopCounterMode

    from biasprobe.models import forward_flops, from_preset

    network, shape = from_preset("dit", "tiny", image_size=8, channels=1)  # patch 2: T = 16 tokens
    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # fused SDPA on the CPU: unseen
        network(torch.rand(1, *shape), torch.zeros(1))
    tokens, width, depth = 16, network.config["width"], network.config["depth"]
    assert forward_flops(network, shape) == counter.get_total_flops() + depth * 4 * tokens**2 * width
    windowed, _ = from_preset("dit", "tiny", image_size=8, channels=1, windows=[3, 3])
    assert forward_flops(windowed, shape) == forward_flops(network, shape)  # windows count as the dense product
    unet, unet_shape = from_preset("unet-bf", "tiny", image_size=8)
    assert 0 < forward_flops(unet, unet_shape) < forward_flops(unet, (1, 16, 16))
