import pytest
import torch

from biasprobe.errors import InputError
from biasprobe.models import BiasFreeBatchNorm, BiasFreeUNet, build_model

# State-dict layout of Kadkhodaie et al.'s UNet (code/network.py) at its default configuration.
KADKHODAIE_DEFAULT_SHAPES = {
    "encoder.0.0.weight": (64, 1, 3, 3),
    "encoder.0.2.weight": (64, 64, 3, 3),
    "encoder.0.3.gammas": (1, 64, 1, 1),
    "encoder.0.3.running_sd": (1, 64, 1, 1),
    **{
        f"encoder.{b}.{i}.{name}": shape
        for b, width in ((1, 128), (2, 256))
        for i, name, shape in (
            (0, "weight", (width, width // 2, 3, 3)),
            (1, "gammas", (1, width, 1, 1)),
            (1, "running_sd", (1, width, 1, 1)),
            (3, "weight", (width, width, 3, 3)),
            (4, "gammas", (1, width, 1, 1)),
            (4, "running_sd", (1, width, 1, 1)),
        )
    },
    "mid_block.0.weight": (512, 256, 3, 3),
    "mid_block.1.gammas": (1, 512, 1, 1),
    "mid_block.1.running_sd": (1, 512, 1, 1),
    "mid_block.3.weight": (512, 512, 3, 3),
    "mid_block.4.gammas": (1, 512, 1, 1),
    "mid_block.4.running_sd": (1, 512, 1, 1),
    **{
        f"decoder.{b}.{i}.{name}": shape
        for b, width in ((2, 256), (1, 128))
        for i, name, shape in (
            (0, "weight", (width, 2 * width, 3, 3)),
            (1, "gammas", (1, width, 1, 1)),
            (1, "running_sd", (1, width, 1, 1)),
            (3, "weight", (width, width, 3, 3)),
            (4, "gammas", (1, width, 1, 1)),
            (4, "running_sd", (1, width, 1, 1)),
        )
    },
    "decoder.0.0.weight": (64, 128, 3, 3),
    "decoder.0.1.gammas": (1, 64, 1, 1),
    "decoder.0.1.running_sd": (1, 64, 1, 1),
    "decoder.0.3.weight": (1, 64, 3, 3),
    "upsample.2.weight": (512, 256, 2, 2),
    "upsample.1.weight": (256, 128, 2, 2),
    "upsample.0.weight": (128, 64, 2, 2),
}

SMALL = {"channels": 2, "num_blocks": 2, "base_width": 4}


def small_unet(**overrides) -> BiasFreeUNet:
    torch.manual_seed(0)
    return BiasFreeUNet(**{**SMALL, **overrides}).double()


def test_state_dict_matches_kadkhodaie_layout():
    state = BiasFreeUNet().state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == KADKHODAIE_DEFAULT_SHAPES
    BiasFreeUNet().load_state_dict(state, strict=True)


def test_has_no_bias():
    model = BiasFreeUNet(**SMALL)
    names = [name for name, _ in model.named_parameters()] + [name for name, _ in model.named_buffers()]
    assert not [name for name in names if "bias" in name]
    assert all(getattr(module, "bias", None) is None for module in model.modules())


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("convs", [1, 2, 3])
def test_eval_mode_is_homogeneous(pooling, convs):
    model = small_unet(pooling=pooling, num_enc_conv=convs, num_mid_conv=convs, num_dec_conv=convs)
    model.train()
    model(torch.randn(4, 2, 8, 8, dtype=torch.float64))  # move the running SDs away from 1
    model.eval()
    y = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    out = model(y)
    assert out.shape == y.shape and out.abs().max() > 0
    for scale in (1e-3, 0.37, 2.5, 1e4):
        error = (model(scale * y) - scale * out).norm() / (scale * out).norm()
        assert error < 1e-13
    assert not model(torch.zeros_like(y)).any()


def test_train_mode_is_invariant_to_the_batch_scale_without_eps():
    """With batch statistics every normalised layer divides out the input scale: f(a y) = f(y)
    (up to ε, exactly for ε = 0), so training-mode outputs are not 1-homogeneous."""
    model = small_unet().train()
    for module in model.modules():
        if isinstance(module, BiasFreeBatchNorm):
            module.eps = 0.0
    y = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(model(7.0 * y), model(y), rtol=1e-10, atol=0)


def test_batch_norm_rescales_by_batch_then_running_sd():
    norm = BiasFreeBatchNorm(3, momentum=0.25).double()
    x = 1 + 2 * torch.randn(5, 3, 4, 4, dtype=torch.float64)
    batch_sd = (x.var(dim=(0, 2, 3), keepdim=True, correction=0) + norm.eps).sqrt()
    torch.testing.assert_close(norm(x), x / batch_sd * norm.gammas)
    running_sd = 0.75 + 0.25 * batch_sd
    torch.testing.assert_close(norm.running_sd, running_sd)
    norm.eval()
    torch.testing.assert_close(norm(x), x / running_sd * norm.gammas)


def test_config_round_trip():
    model = small_unet(pooling="max", kernel_size=5, num_dec_conv=1).eval()
    rebuilt = build_model("unet-bf", **model.config).double().eval()
    rebuilt.load_state_dict(model.state_dict())
    y = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    assert torch.equal(rebuilt(y), model(y))
    assert model.config == {**SMALL, "kernel_size": 5, "num_enc_conv": 2, "num_mid_conv": 2,
                            "num_dec_conv": 1, "pooling": "max"}


def test_rejects_indivisible_images():
    with pytest.raises(InputError, match="divisible"):
        small_unet()(torch.randn(1, 2, 6, 6, dtype=torch.float64))


def test_trains_under_bf16_autocast():
    """The running SD stays float32 when the convolutions run in bfloat16 (training on CUDA)."""
    model = BiasFreeUNet(channels=1, num_blocks=2, base_width=4).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 1, 8, 8))
    out.float().pow(2).mean().backward()
    norms = [m for m in model.modules() if isinstance(m, BiasFreeBatchNorm)]
    assert norms and all(m.running_sd.dtype == torch.float32 for m in norms)
    assert all(not torch.equal(m.running_sd, torch.ones_like(m.running_sd)) for m in norms)
