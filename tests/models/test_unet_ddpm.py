import pytest
import torch

from biasprobe.errors import InputError
from biasprobe.models import DDPMUNet, attention_modules, build_model

SMALL = {"image_size": 8, "channels": 3, "base_width": 8, "channel_mult": (1, 2), "num_res_blocks": 1,
             "attention_resolutions": (4,), "heads": 2, "groups": 32}


@pytest.fixture
def model(randomize_zero_parameters) -> DDPMUNet:
    torch.manual_seed(0)
    return randomize_zero_parameters(DDPMUNet(**SMALL)).eval()


def test_output_shape_and_fractional_timesteps(randomize_zero_parameters):
    # Two groups of four channels: with SMALL's one channel per group, GroupNorm removes the per-channel
    # timestep shift a residual block adds, and half a timestep moved the output by float noise alone.
    torch.manual_seed(0)
    model = randomize_zero_parameters(DDPMUNet(**dict(SMALL, groups=2))).eval()
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([0.5, 417.25])
    out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, model(x, t.round()))
    torch.testing.assert_close(model(x, t + 1e-3), out, rtol=0, atol=1e-3)


def test_fresh_model_predicts_zero():
    assert not DDPMUNet(**SMALL)(torch.randn(1, 3, 8, 8), torch.tensor([10.0])).any()


def test_learn_sigma_doubles_the_output():
    model = DDPMUNet(**SMALL, learn_sigma=True)
    assert model.out_channels == 6
    assert model(torch.randn(1, 3, 8, 8), torch.tensor([3.0])).shape == (1, 6, 8, 8)


def test_attention_blocks_are_found_with_their_token_size(model):
    blocks = attention_modules(model)
    # One attention per 4×4 encoder block, one in the middle (also 4×4), two in the 4×4 decoder level.
    assert len(blocks) == 4
    assert {module.pixels_per_token for module in blocks.values()} == {2}
    model(torch.randn(1, 3, 8, 8), torch.tensor([5.0]))
    assert {module.grid for module in blocks.values()} == {(4, 4)}


def test_attention_at_full_resolution_sees_every_pixel():
    blocks = attention_modules(DDPMUNet(**{**SMALL, "attention_resolutions": (8, 4)}))
    assert sorted(module.pixels_per_token for module in blocks.values()) == [1, 1, 1, 2, 2, 2, 2]


def test_config_round_trip(model):
    rebuilt = build_model("unet-ddpm", **model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 900.0])
    assert torch.equal(rebuilt(x, t), model(x, t))
    assert model.config["channel_mult"] == [1, 2] and model.config["attention_resolutions"] == [4]


def test_rejects_attention_at_a_missing_resolution():
    with pytest.raises(InputError, match=r"feature-map sides .* \[8, 4\]"):
        DDPMUNet(**{**SMALL, "attention_resolutions": (16,)})


def test_rejects_images_of_another_size(model):
    with pytest.raises(InputError, match="shape"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([1.0]))
