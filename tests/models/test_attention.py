"""The fused attention kernels compute the explicit softmax(QKᵀ/√d + M) V exactly."""

import pytest
import torch

from biasprobe.models import DiT, GridAttention, attention_modules, set_attention_kernel
from biasprobe.models.attention import window_block_mask, window_mask


def explicit(module: GridAttention, tokens, grid):
    """The same layer's output on the explicit (observed) path."""
    module.observer = lambda *_: None
    try:
        return module(tokens, grid)
    finally:
        module.observer = None


@pytest.mark.parametrize("kernel", ["sdpa", "flex"])
@pytest.mark.parametrize("window", [None, 3, 5])
@pytest.mark.parametrize("width", [24, 36])  # head dims 12 and 18: padded to 16 and 24
def test_kernels_match_the_explicit_path(kernel, window, width):
    torch.manual_seed(0)
    layer = GridAttention(width, 2, window=window)
    layer.kernel = kernel
    grid = (6, 5)
    backward = kernel != "flex"  # FlexAttention has no backward on the CPU (the GPU's compiled one has)
    layer.requires_grad_(backward)
    tokens = torch.randn(3, 30, width, requires_grad=backward)
    reference = explicit(layer, tokens, grid)
    out = layer(tokens, grid)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    if backward:
        (reference_grad,) = torch.autograd.grad(reference.square().sum(), tokens)
        (grad,) = torch.autograd.grad(out.square().sum(), tokens)
        torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [1, 3, 7])
def test_block_mask_is_the_window_mask(window):
    grid = (7, 9)
    block_mask = window_block_mask(grid, window, block_size=16)
    dense = block_mask.to_dense()  # (1, 1, query blocks, key blocks): 1 where any pair may attend
    mask = window_mask(grid, window)
    padded = torch.zeros(64, 64, dtype=torch.bool)
    padded[:63, :63] = mask
    blocks = padded.view(4, 16, 4, 16).any(dim=(1, 3)).int()
    assert torch.equal(dense[0, 0].int(), blocks)
    assert blocks.sum() < blocks.numel() or window == 7  # skipped blocks: cost falls with the window
    masked = block_mask.mask_mod(0, 0, torch.arange(63)[:, None], torch.arange(63)[None, :])
    assert torch.equal(masked, mask)


def test_every_window_shares_one_compiled_kernel():
    """torch.compile guards on the Python values a mask_mod closes over: the window's radius must be a tensor (an
    input of the compiled kernel), else each window compiles anew and past dynamo's recompile limit FlexAttention
    falls back to its unfused path (zoo v2 round 1). Two windows' mask_mods differ only in tensors."""
    import torch._dynamo

    masks = [window_block_mask((6, 5), window, block_size=16).mask_mod for window in (3, 13)]
    assert masks[0].__code__ is masks[1].__code__
    for first, second in zip(masks[0].__closure__, masks[1].__closure__, strict=True):
        a, b = first.cell_contents, second.cell_contents
        assert isinstance(a, torch.Tensor) or a == b, f"the mask_mod closes over {a!r} / {b!r}: compile guards on it"
    torch._dynamo.reset()
    compiles = []
    kernel = torch.compile(lambda block_mask: block_mask.mask_mod(0, 0, torch.arange(30)[:, None],
                                                                  torch.arange(30)[None, :]).sum(),
                           backend=lambda graph, inputs: compiles.append(1) or graph.forward)
    assert [int(kernel(window_block_mask((6, 5), w, block_size=16))) for w in (3, 5, 7, 9, 11, 13)] == [
        int(window_mask((6, 5), w).sum()) for w in (3, 5, 7, 9, 11, 13)]
    assert len(compiles) <= 2  # one graph, plus at most one recompile when the radius becomes dynamic


def test_local_dit_is_the_same_function_under_every_kernel():
    torch.manual_seed(1)
    model = DiT(image_size=8, channels=1, patch_size=1, depth=3, width=20, heads=2, windows=[3, 5, None])
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.1)  # break the zero start so the output depends on attention
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 700.0])
    model.requires_grad_(False)
    outputs = {}
    for kernel in ("sdpa", "flex", "auto"):
        set_attention_kernel(model, kernel)
        outputs[kernel] = model(x, t)
    for block_size in (32, 16):  # 64 tokens: 2 and 4 query blocks, some key blocks skipped
        set_attention_kernel(model, "flex", block_size=block_size)
        outputs[f"flex-{block_size}"] = model(x, t)
        layer = attention_modules(model)["blocks.0.attn"]
        assert layer._mask_cache[("flex", (8, 8), "cpu", block_size)].BLOCK_SIZE == (block_size, block_size)
    for module in attention_modules(model).values():
        module.observer = lambda *_: None
    reference = model(x, t)
    for out in outputs.values():
        torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="unknown attention kernel"):
        set_attention_kernel(DiT(image_size=8, depth=1, width=8, heads=2), "fast")
    with pytest.raises(ValueError, match="block size 48"):
        set_attention_kernel(DiT(image_size=8, depth=1, width=8, heads=2), "flex", block_size=48)


def test_attention_state_is_switched_in_one_place_and_restored_also_after_an_error():
    from biasprobe.models import attention_switched

    model = DiT(image_size=8, depth=2, width=8, heads=2)
    first, second = attention_modules(model).values()
    second.kernel, second.block_size = "sdpa", 64
    seen = []
    observers = {first: lambda *_: seen.append("first"), second: lambda *_: seen.append("second")}
    with pytest.raises(KeyError):
        with attention_switched([first, second], observer=observers, explicit=True, kernel="flex", block_size=32):
            assert first.explicit and second.explicit and first.kernel == second.kernel == "flex"
            assert first.block_size == second.block_size == 32
            model(torch.rand(1, 3, 8, 8), torch.tensor([10]))
            assert seen == ["first", "second"]  # each layer its own observer
            raise KeyError("stop")
    assert first.observer is None and second.observer is None and not first.explicit and not second.explicit
    assert (first.kernel, first.block_size, second.kernel, second.block_size) == ("auto", 128, "sdpa", 64)
    with pytest.raises(ValueError, match="unknown attention settings"):
        attention_switched([first], windows=3).__enter__()
    with pytest.raises(ValueError, match="unknown attention kernel"):
        attention_switched([first], kernel="fast").__enter__()
    assert first.kernel == "auto"
