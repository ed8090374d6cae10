"""Checkpoint files: bf16 weights, shards of at most 16 MiB, warm restarts from saved weights."""

import pytest
import torch

import biasprobe as bp
from biasprobe.checkpoints import Checkpoint, read_checkpoint, save_checkpoint
from biasprobe.errors import CheckpointError
from biasprobe.models import from_preset
from tests.conftest import run_cli
from tests.test_training import discs


def network():
    torch.manual_seed(0)
    model = from_preset("dit", "tiny", image_size=8, channels=1)[0]
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.1)
    return model


def test_sharded_bf16_checkpoint_round_trips(tmp_path):
    model = network()
    checkpoint = Checkpoint.from_network(model, (1, 8, 8), {"data": "discs"})
    path = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, path, dtype=torch.bfloat16, max_file_bytes=70_000)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) > 2 and all(p.stat().st_size <= 70_000 for p in tmp_path.iterdir()), files
    loaded = read_checkpoint(path)
    assert loaded.state_dict.keys() == checkpoint.state_dict.keys()
    for name, value in checkpoint.state_dict.items():
        assert torch.equal(loaded.state_dict[name], value.to(torch.bfloat16))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5.0, 600.0])
    rebuilt = bp.load(path).network
    torch.testing.assert_close(rebuilt(x, t), model(x, t), rtol=0.05, atol=0.02)  # bf16 weights
    save_checkpoint(checkpoint, path)  # now small enough for one file: the old shards go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_missing_shard_is_a_clear_error(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(Checkpoint.from_network(network(), (1, 8, 8)), path, max_file_bytes=70_000)
    next(tmp_path.glob("m.shard-*")).unlink()
    with pytest.raises(CheckpointError, match="shard .* is missing"):
        read_checkpoint(path)


def test_train_saves_bf16_weights_and_warm_starts(tmp_path):
    import numpy as np

    np.savez(tmp_path / "set.npz", train=(discs(16)[:, 0].numpy() * 255).astype(np.uint8))
    common = ("train", "dit", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--n-train", "8",
              "--steps", "2", "--batch", "4", "--image-size", "8")
    first = run_cli(*common, "--weights", "bfloat16", "-o", tmp_path / "a.safetensors")
    assert first.returncode == 0, first.stderr
    saved = read_checkpoint(tmp_path / "a.safetensors")
    assert {v.dtype for v in saved.state_dict.values()} == {torch.bfloat16}
    again = run_cli(*common[:-5], "4", *common[-4:], "--init", tmp_path / "a.safetensors",
                    "-o", tmp_path / "b.safetensors")
    assert again.returncode == 0, again.stderr
    continued = read_checkpoint(tmp_path / "b.safetensors").training
    assert (continued["steps_done"], continued["warm_restarts"]) == (4, [2])  # the step count goes on
    wrong = run_cli("train", "dit", "--preset", "small", *common[4:], "--init", tmp_path / "a.safetensors",
                    "-o", tmp_path / "c.safetensors")
    assert wrong.returncode != 0 and "same family, preset" in wrong.stderr
    done = run_cli(*common, "--init", tmp_path / "a.safetensors", "-o", tmp_path / "d.safetensors")
    assert done.returncode != 0 and "give more than 2" in done.stderr
