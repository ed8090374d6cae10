"""Formats as plug-ins, and architecture overrides for files whose weights cannot show it all."""

import pytest
import torch

import biasprobe as bp
from biasprobe.errors import CheckpointError, InputError
from biasprobe.formats import FormatEntrypoint, detect_format, registry
from biasprobe.models.bf_cnn import BiasFreeCNN
from biasprobe.models.dit_reference import ClassConditionalDiT

from tests.conftest import run_cli


def test_registry_holds_every_builtin_format_once_in_priority_order():
    formats = registry()
    assert set(formats) == {"biasprobe-pt", "biasprobe-safetensors", "diffusers", "dit-pt",
                            "kadkhodaie-unet", "kadkhodaie-bf-cnn"}
    assert all(isinstance(entry, FormatEntrypoint) and entry.description for entry in formats.values())
    priorities = [entry.priority for entry in formats.values()]
    assert priorities == sorted(priorities)
    assert bp.formats.SUPPORTED == {name: entry.description for name, entry in formats.items()}



def test_the_loader_knows_the_native_format_only_through_the_registry():
    """Importing the loader imports no format module; biasprobe's own is found like any other."""
    import subprocess
    import sys

    script = ("import sys, biasprobe.formats as f; assert 'biasprobe.formats.native' not in sys.modules; "
              "assert 'biasprobe.checkpoints' not in sys.modules; f.registry(); "
              "assert 'biasprobe.formats.native' in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True)


@pytest.mark.parametrize(("module", "name", "new_module"), [
    ("biasprobe.formats", "save_checkpoint", "biasprobe.checkpoints"),
    ("biasprobe.formats", "Checkpoint", "biasprobe.checkpoints"),
    ("biasprobe.formats", "read_checkpoint", "biasprobe.checkpoints"),
    ("biasprobe.formats", "file_sha256", "biasprobe.denoiser"),
    ("biasprobe.formats.native", "network_denoiser", "biasprobe.checkpoints"),
])
def test_names_that_moved_keep_working_with_a_pointer(module, name, new_module):
    import importlib

    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} moved to {new_module}\.{name}"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(new_module), name)

@pytest.fixture
def odd_dit(tmp_path):
    """A facebookresearch-layout DiT of width 32 (no released model's), 4 heads: its file cannot say so."""
    torch.manual_seed(0)
    network = ClassConditionalDiT(input_size=8, in_channels=4, patch_size=2, depth=2, width=32, heads=4,
                                  num_classes=10).eval()
    for parameter in network.parameters():  # DiT zero-initialises its output layers
        torch.nn.init.normal_(parameter, std=0.05)
    torch.save(network.state_dict(), tmp_path / "odd.pt")
    return network, tmp_path / "odd.pt"


def test_a_dit_of_unreleased_width_needs_and_takes_its_head_count(odd_dit):
    network, path = odd_dit
    with pytest.raises(CheckpointError, match=r"heads of a DiT of width 32.*with arch \(heads=N\)"):
        bp.load(path)
    denoiser = bp.load(path, arch={"heads": 4})
    assert denoiser.describe()["config"]["heads"] == 4
    y, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([500.0, 500.0])
    with torch.no_grad():
        torch.testing.assert_close(denoiser.network(y, t), network(y, t))
    with pytest.raises(InputError, match="heads=3 does not divide"):
        bp.load(path, arch={"heads": 3})
    with pytest.raises(InputError, match="first_layer_linear does not apply.*it takes heads, num_classes"):
        bp.load(path, arch={"first_layer_linear": False})


def test_the_cli_names_the_flag_where_the_library_names_the_parameter(odd_dit):
    _, path = odd_dit
    refused = run_cli("info", path)
    assert refused.returncode == 1 and "with --arch (heads=N)" in refused.stderr and "Traceback" not in refused.stderr
    accepted = run_cli("info", path, "--arch", "heads=4")
    assert accepted.returncode == 0, accepted.stderr
    assert "dit-pt" in accepted.stdout
    malformed = run_cli("info", path, "--arch", "heads")
    assert malformed.returncode == 1 and "--arch takes KEY=VALUE" in malformed.stderr


def test_a_bf_cnn_without_first_layer_linear_is_expressible(tmp_path):
    torch.manual_seed(0)
    network = BiasFreeCNN(channels=1, width=6, kernel_sizes=[3, 3, 3, 3], first_layer_linear=False).eval()
    for norm in network.BN_layers:
        norm.gammas.data.uniform_(0.5, 1.5)
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, tmp_path / "model.pt")
    assert detect_format(tmp_path / "model.pt") == "kadkhodaie-bf-cnn"
    y = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = y - network(y)
        default = bp.load(tmp_path / "model.pt", image_size=8).denoise(y, 0.1)
        declared = bp.load(tmp_path / "model.pt", image_size=8, arch={"first_layer_linear": False})
        torch.testing.assert_close(declared.denoise(y, 0.1), expected)
    assert not torch.allclose(default, expected)  # the weights alone cannot tell
    assert declared.describe()["config"]["first_layer_linear"] is False
    result = run_cli("info", tmp_path / "model.pt", "--arch", "first_layer_linear=false")
    assert result.returncode == 0, result.stderr


def test_native_checkpoints_refuse_overrides(tmp_path):
    path = tiny = tmp_path / "tiny.pt"
    result = run_cli("new", "unet-bf", "--image-size", "8", "--channels", "1", "-o", tiny)
    assert result.returncode == 0, result.stderr
    with pytest.raises(InputError, match="does not apply to biasprobe checkpoint .* its files record it"):
        bp.load(path, arch={"heads": 2})


def test_every_denoiser_exposes_the_typed_contract(odd_dit, tmp_path):
    from biasprobe.denoiser import CheckpointSource, NativeScale, file_sha256
    from biasprobe.schedules import Schedule

    wrapped = bp.Denoiser.wrap(lambda y, sigma: y, (1, 4, 4))
    assert (wrapped.schedule, wrapped.space, wrapped.native_scale) == (None, "pixel", NativeScale("unit", 1.0, 0.0))
    assert wrapped.source == CheckpointSource() and wrapped.source.sha256 is None

    _, path = odd_dit
    dit = bp.load(path, arch={"heads": 4})
    assert isinstance(dit.schedule, Schedule) and dit.space == "latent" and dit.native_scale.scale == 1.0
    assert (dit.source.path, dit.source.format, dit.source.sha256) == (str(path), "dit-pt", file_sha256(path))
    assert dit.source.training == {}

    assert run_cli("new", "unet-ddpm", "--image-size", "8", "-o", tmp_path / "ddpm.pt").returncode == 0
    ddpm = bp.load(tmp_path / "ddpm.pt")
    assert ddpm.native_scale == NativeScale("signed", 2.0, -1.0) and ddpm.space == "pixel"
    assert ddpm.schedule is not None and ddpm.source.format == "biasprobe-pt"
    summary = ddpm.describe()  # the plain-data summary for provenance is built from the typed facts
    assert (summary["path"], summary["file_format"], summary["space"]) == (str(tmp_path / "ddpm.pt"), "biasprobe-pt",
                                                                           "pixel")


def test_attention_layers_follow_one_protocol_with_separate_observe_and_explicit_switches():
    from biasprobe.analyses.capture import capture_attention
    from biasprobe.models.attention import GridAttention, ObservableAttention, explicit_math

    layer = GridAttention(8, 2, window=3)
    assert isinstance(layer, ObservableAttention) and not layer.explicit and layer.observer is None
    tokens = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    fused = layer(tokens, (4, 4))
    seen = []
    with explicit_math([layer]):
        assert layer.explicit and layer.observer is None
        torch.testing.assert_close(layer(tokens, (4, 4)), fused)
        with capture_attention({"a": layer}, lambda name, module, probs: seen.append(probs.shape)):
            layer(tokens, (4, 4))
    assert not layer.explicit and layer.observer is None and seen == [(2, 2, 16, 16)]
