"""Native checkpoints: round trips, and refusal of corrupt or malicious files; bf16 weights, shards of
at most 16 MiB, warm restarts from saved weights."""

import pickle

import pytest
import torch

import biasprobe as bp
from biasprobe.checkpoints import Checkpoint, read_checkpoint, save_checkpoint
from biasprobe.errors import CheckpointError
from biasprobe.models import from_preset
from tests.conftest import run_cli, tiny_checkpoint
from tests.training.test_training import discs


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_round_trip_gives_the_same_denoiser(tmp_path, family, suffix):
    path = tiny_checkpoint(tmp_path / f"a{suffix}", family)
    d = bp.load(path)
    ckpt = read_checkpoint(path)
    again = tmp_path / f"b{suffix}"
    save_checkpoint(ckpt, again)
    y = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(d.denoise(y, 0.1), bp.load(again).denoise(y, 0.1), rtol=0, atol=0)
        assert not torch.allclose(d.denoise(y, 0.1), y)  # the network really acts
    assert d.describe()["family"] == family
    assert d.image_shape == (1, 8, 8)
    assert not d.network.training


def test_safetensors_and_pt_agree(tmp_path):
    pt = tiny_checkpoint(tmp_path / "a.pt", "dit")
    st = tmp_path / "a.safetensors"
    save_checkpoint(read_checkpoint(pt), st)
    y = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(bp.load(pt)(y, 0.2), bp.load(st)(y, 0.2), rtol=0, atol=0)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    good = tiny_checkpoint(tmp_path / "a.pt", "dit")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pt").write_bytes(b"this is not a checkpoint\n" * 10)
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    for name in ("cut.pt", "noise.pt", "cut.safetensors"):
        with pytest.raises(bp.CheckpointError, match="not a readable"):
            bp.load(tmp_path / name)
    with pytest.raises(bp.CheckpointError, match="no checkpoint at"):
        bp.load(tmp_path / "missing.pt")


def test_missing_extra_and_misshapen_weights_are_refused(tmp_path):
    ckpt = read_checkpoint(tiny_checkpoint(tmp_path / "a.pt", "dit"))
    name = next(iter(ckpt.state_dict))
    missing = Checkpoint(ckpt.family, ckpt.config, ckpt.image_shape,
                         {k: v for k, v in ckpt.state_dict.items() if k != name}, ckpt.denoiser)
    extra = Checkpoint(ckpt.family, ckpt.config, ckpt.image_shape,
                       {**ckpt.state_dict, "intruder.weight": torch.zeros(1)}, ckpt.denoiser)
    shapes = Checkpoint(ckpt.family, ckpt.config, ckpt.image_shape,
                        {**ckpt.state_dict, name: torch.zeros(3, 3, 3)}, ckpt.denoiser)
    for bad, message in ((missing, "missing 1"), (extra, "unexpected 1"), (shapes, "has shape")):
        save_checkpoint(bad, tmp_path / "bad.pt")
        with pytest.raises(bp.CheckpointError, match=message):
            bp.load(tmp_path / "bad.pt")


def test_plain_state_dict_and_unknown_family_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(bp.CheckpointError, match="not a biasprobe checkpoint"):
        bp.load(tmp_path / "plain.pt")
    ckpt = read_checkpoint(tiny_checkpoint(tmp_path / "a.pt", "dit"))
    ckpt.family = "vae"
    save_checkpoint(ckpt, tmp_path / "vae.pt")
    with pytest.raises(bp.CheckpointError, match="unknown model family"):
        bp.load(tmp_path / "vae.pt")


class Payload:
    """Unpickling this runs code: it would create a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_runs_nothing(tmp_path):
    target = tmp_path / "pwned.txt"
    for name, save in (("raw.pt", lambda p: p.write_bytes(pickle.dumps(Payload(target)))),
                       ("zip.pt", lambda p: torch.save({"format": "biasprobe", "x": Payload(target)}, p))):
        save(tmp_path / name)
        with pytest.raises(bp.CheckpointError, match=r"\(io.open\) that would need arbitrary unpickling|raw pickle"):
            bp.load(tmp_path / name)
        assert not target.exists()


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
