import pytest
import torch

from biasprobe.errors import InputError
from biasprobe.models import DiT, attention_modules, build_model, window_mask

SMALL = {"image_size": 8, "channels": 3, "patch_size": 1, "depth": 3, "width": 24, "heads": 2, "windows": [3, None, 5]}


def make_dit(randomize, **overrides) -> DiT:
    torch.manual_seed(0)
    return randomize(DiT(**{**SMALL, **overrides})).eval()


@pytest.fixture
def model(randomize_zero_parameters) -> DiT:
    return make_dit(randomize_zero_parameters)


def observe(model: DiT) -> dict[str, torch.Tensor]:
    """Record each attention layer's probabilities on the next forward pass."""
    probabilities = {}
    for name, module in attention_modules(model).items():
        module.observer = lambda module, probs, name=name: probabilities.__setitem__(name, probs)
    return probabilities


@pytest.mark.parametrize("patch_size", [1, 2, 4])
def test_output_shape(randomize_zero_parameters, patch_size):
    model = make_dit(randomize_zero_parameters, patch_size=patch_size, windows=None)
    x = torch.randn(2, 3, 8, 8)
    out = model(x, torch.tensor([3.0, 500.0]))
    assert out.shape == x.shape and out.abs().min() > 0
    assert {m.pixels_per_token for m in attention_modules(model).values()} == {patch_size}


def test_unpatchify_inverts_patch_layout():
    model = DiT(**{**SMALL, "patch_size": 2})
    image = torch.randn(2, 3, 8, 8)
    # Token (i, j) holds patch pixels (u, v, c) in the order expected by the final linear layer.
    tokens = image.reshape(2, 3, 4, 2, 4, 2).permute(0, 2, 4, 3, 5, 1).reshape(2, 16, 12)
    assert torch.equal(model.unpatchify(tokens), image)


def test_fresh_model_predicts_zero():
    assert not DiT(**SMALL)(torch.randn(1, 3, 8, 8), torch.tensor([10.0])).any()


def test_learn_sigma_doubles_the_output():
    model = DiT(**{**SMALL, "patch_size": 2}, learn_sigma=True)
    assert model.out_channels == 6
    assert model(torch.randn(1, 3, 8, 8), torch.tensor([3.0])).shape == (1, 6, 8, 8)


def test_fractional_timesteps(model):
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([0.5, 417.25])
    out = model(x, t)
    assert not torch.allclose(out, model(x, t.round()))
    torch.testing.assert_close(model(x, t + 1e-3), out, rtol=0, atol=1e-3)


def test_windowed_attention_stays_in_its_window(model):
    probabilities = observe(model)
    model(torch.randn(2, 3, 8, 8), torch.tensor([1.0, 700.0]))
    for (name, probs), window in zip(probabilities.items(), SMALL["windows"]):
        assert probs.shape == (2, 2, 64, 64)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 64))
        if window is None:
            assert (probs > 0).all()
            continue
        allowed = window_mask((8, 8), window)
        assert not probs[..., ~allowed].any()
        assert (probs[..., allowed] > 0).all()
        # A corner query sees only the (k//2 + 1)² tokens of its clipped window.
        assert int((probs[0, 0, 0] > 0).sum()) == (window // 2 + 1) ** 2


def test_observed_and_fused_attention_agree(model):
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([2.0, 300.0])
    fused = model(x, t)
    observe(model)
    observed = model(x, t)
    assert fused.abs().max() > 1e-2
    torch.testing.assert_close(observed, fused, rtol=1e-5, atol=1e-5)


def test_config_round_trip(model):
    rebuilt = build_model("dit", **model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([1.0, 900.0])
    assert torch.equal(rebuilt(x, t), model(x, t))
    assert model.config["windows"] == [3, None, 5]
    assert DiT(depth=2, width=8, heads=2).config["windows"] == [None, None]


def test_window_list_must_match_depth():
    with pytest.raises(ValueError, match="windows has 2 entries but the DiT has depth 3"):
        DiT(**{**SMALL, "windows": [3, 5]})


def test_width_not_divisible_by_four(randomize_zero_parameters):
    model = make_dit(randomize_zero_parameters, width=14, windows=None)
    assert model.pos_embed.shape == (1, 64, 14)
    assert len(set(map(tuple, model.pos_embed[0].tolist()))) == 64  # every position distinct
    assert model(torch.randn(1, 3, 8, 8), torch.tensor([1.0])).shape == (1, 3, 8, 8)


def test_rejects_images_of_another_size(model):
    with pytest.raises(InputError, match="shape"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([1.0]))


def test_qk_norm_bounds_the_logits_keeps_the_function_observable_and_round_trips(randomize_zero_parameters):
    """q̂ = g⊙q/rms(q) has norm √d at unit gains, so |q̂·k̂|/√d ≤ √d (Cauchy-Schwarz) however large q and k grow:
    scaling the qkv weights by 100 sharpens a plain layer's attention to near one-hot and leaves a normalised
    layer's as it was."""
    plain, normed = make_dit(randomize_zero_parameters), make_dit(randomize_zero_parameters, qk_norm=True)
    assert normed.config["qk_norm"] is True and "qk_norm" not in plain.config  # older configs keep their identity
    assert {n for n, _ in normed.named_parameters()} - {n for n, _ in plain.named_parameters()} == {
        f"blocks.{i}.attn.{which}_norm.weight" for i in range(3) for which in ("q", "k")}
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([2.0, 300.0])
    entropy = {}
    for name, model in ("plain", plain), ("normed", normed):
        for scale in 1, 100:
            with torch.no_grad():
                for block in model.blocks:
                    block.attn.qkv.weight.mul_(scale)
                probabilities = observe(model)
                model(x, t)
                for block in model.blocks:
                    block.attn.qkv.weight.div_(scale)
                    block.attn.observer = None
            global_layer = probabilities["blocks.1.attn"]
            entropy[name, scale] = float(-(global_layer * global_layer.clamp_min(1e-30).log()).sum(-1).mean())
    d = SMALL["width"] // SMALL["heads"]
    assert entropy["plain", 100] < 0.2 * entropy["plain", 1]  # attention collapses onto single keys
    # Logits within ±√d: every probability at least e^{-2√d}/64 of the row, so the entropy stays well above 0.
    assert entropy["normed", 100] > 0.5 * entropy["normed", 1]
    with torch.no_grad():
        tokens = normed.blocks[1].attn.qkv(torch.randn(1, 64, SMALL["width"]) * 1e3)
        q, k, _ = tokens.reshape(1, 64, 3, 2, d).permute(2, 0, 3, 1, 4)  # (batch, head, token, channel) each
        logits = normed.blocks[1].attn.q_norm(q) @ normed.blocks[1].attn.k_norm(k).transpose(-2, -1) / d**0.5
    assert logits.abs().max() <= d**0.5 * 1.0001
    fused = normed(x, t)
    observe(normed)
    torch.testing.assert_close(normed(x, t), fused, rtol=1e-5, atol=1e-5)
    rebuilt = build_model("dit", **normed.config).eval()
    rebuilt.load_state_dict(normed.state_dict())
    for block in normed.blocks:
        block.attn.observer = None
    assert torch.equal(rebuilt(x, t), normed(x, t))
    assert not DiT(**SMALL, qk_norm=True)(x, t).any()  # adaLN-Zero: a fresh model still outputs zero


def test_qk_norm_hands_the_kernel_queries_keys_and_values_of_one_dtype_under_autocast(monkeypatch):
    """Under bf16 autocast the norm's float32 arithmetic must not reach the kernel: FlexAttention (CUDA, the windowed
    layers) needs q, k and v in one dtype."""
    from biasprobe.models import attention

    seen = []
    original = attention.fused_attention
    monkeypatch.setattr(attention, "fused_attention",
                        lambda q, k, v, *rest: seen.append((q.dtype, k.dtype, v.dtype)) or original(q, k, v, *rest))
    model = DiT(**SMALL, qk_norm=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 8, 8), torch.tensor([2.0, 300.0]))
    assert seen and all(len(set(dtypes)) == 1 for dtypes in seen), seen
