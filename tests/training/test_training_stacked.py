"""Stacked training: each model follows the run that trains it alone, to float tolerance."""

import pytest
import torch

from biasprobe.checkpoints import read_checkpoint
from biasprobe.errors import InputError
from biasprobe.models import from_preset
from biasprobe.training import TrainingConfig, state_path, train, train_stacked
from tests.training.test_training import discs


def fresh(family: str, seed: int):
    torch.manual_seed(seed)
    network, _ = from_preset(family, "tiny", image_size=8, channels=1)
    for parameter in network.parameters():  # leave the zero start, so that every layer learns from step 1
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return network


@pytest.mark.parametrize("family", ["dit", "unet-bf"])
def test_each_stacked_model_equals_its_lone_run(tmp_path, family):
    config = TrainingConfig(steps=5, batch_size=4, learning_rate=2e-3, checkpoint_every=3)
    data, seeds = [discs(12, seed=1), discs(7, seed=2), discs(12, seed=1)], [3, 4, 5]
    alone = [train(fresh(family, k), x, tmp_path / f"alone{k}.pt", TrainingConfig(**{**vars(config), "seed": s}),
                   progress=False) for k, (x, s) in enumerate(zip(data, seeds))]
    together = train_stacked([fresh(family, k) for k in range(3)], data, [tmp_path / f"stack{k}.pt" for k in range(3)],
                             config, seeds=seeds, progress=False)
    for k, (one, many) in enumerate(zip(alone, together)):
        torch.testing.assert_close(torch.tensor(many.losses), torch.tensor(one.losses), rtol=1e-4, atol=1e-6)
        lone, stacked = read_checkpoint(tmp_path / f"alone{k}.pt"), read_checkpoint(tmp_path / f"stack{k}.pt")
        assert stacked.training["seed"] == seeds[k] and stacked.training["n_train"] == len(data[k])
        for name, value in lone.state_dict.items():
            torch.testing.assert_close(stacked.state_dict[name], value, rtol=1e-3, atol=1e-4)  # Adam amplifies ulps
    assert not torch.allclose(torch.tensor(together[0].losses), torch.tensor(together[1].losses))


def test_stacked_run_resumes_one_model_alone(tmp_path, monkeypatch):
    config = TrainingConfig(steps=4, batch_size=4, learning_rate=2e-3, checkpoint_every=2, seed=7)
    straight = train(fresh("dit", 0), discs(8), tmp_path / "straight.pt", config, progress=False)
    outputs = [tmp_path / "a.pt", tmp_path / "b.pt"]
    stopped = TrainingConfig(**{**vars(config), "steps": 4})
    monkeypatch.setattr("biasprobe.training.stacked._unstack", _die_after(2))
    with pytest.raises(KeyboardInterrupt):
        train_stacked([fresh("dit", 0), fresh("dit", 1)], [discs(8), discs(8)], outputs, stopped, progress=False)
    assert all(state_path(o).exists() for o in outputs)
    resumed = train(fresh("dit", 5), discs(8), outputs[0], config, progress=False)
    assert resumed.resumed_from == 2
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(straight.losses), rtol=1e-4, atol=1e-6)


def _die_after(calls: int):
    from biasprobe.training import stacked

    real, seen = stacked._unstack, []

    def unstack(*args):
        seen.append(1)
        if len(seen) == calls:
            raise KeyboardInterrupt
        real(*args)

    return unstack


def test_mixed_architectures_are_refused(tmp_path):
    dit, unet = fresh("dit", 0), fresh("unet-bf", 0)
    with pytest.raises(InputError, match="share family and config"):
        train_stacked([dit, unet], [discs(4)] * 2, [tmp_path / "a.pt", tmp_path / "b.pt"],
                      TrainingConfig(steps=1, batch_size=2), progress=False)


def test_train_cli_trains_several_models_stacked(tmp_path):
    import numpy as np

    from tests.conftest import run_cli

    images = (np.random.default_rng(0).random((24, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images)
    common = ("train", "dit", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--steps", "2", "--batch", "4",
              "--image-size", "8")
    result = run_cli(*common, "--n-train", "4,8", "--seed", "0,1", "-o", tmp_path / "m-n{n}-s{seed}.pt")
    assert result.returncode == 0, result.stderr
    assert "stacked" in result.stdout
    for n in (4, 8):
        for seed in (0, 1):
            training = read_checkpoint(tmp_path / f"m-n{n}-s{seed}.pt").training
            assert (training["n_train"], training["seed"], training["steps_done"]) == (n, seed, 2)
    clash = run_cli(*common, "--n-train", "4,8", "-o", tmp_path / "same.pt")
    assert clash.returncode != 0 and "{n}" in clash.stderr


def test_stacked_warm_restarts_equal_lone_ones(tmp_path):
    config = TrainingConfig(steps=2, batch_size=4, learning_rate=2e-3)
    data, seeds = [discs(8, seed=1), discs(6, seed=2)], [3, 4]
    landed = [tmp_path / f"landed{k}.pt" for k in range(2)]
    train_stacked([fresh("dit", k) for k in range(2)], data, landed, config, seeds=seeds, progress=False)
    longer = TrainingConfig(**{**vars(config), "steps": 5})
    alone = [train(fresh("dit", 9), x, tmp_path / f"alone{k}.pt", TrainingConfig(**{**vars(longer), "seed": s}),
                   init=landed[k], progress=False) for k, (x, s) in enumerate(zip(data, seeds))]
    together = train_stacked([fresh("dit", 9), fresh("dit", 9)], data, [tmp_path / f"s{k}.pt" for k in range(2)],
                             longer, seeds=seeds, init=landed, progress=False)
    for k, (one, many) in enumerate(zip(alone, together)):
        assert (one.resumed_from, one.losses_from, one.steps_done, one.warm_restarts) == (2, 2, 5, [2])
        assert (many.losses_from, many.steps_done, many.warm_restarts) == (2, 5, [2]) and len(many.losses) == 3
        torch.testing.assert_close(torch.tensor(many.losses), torch.tensor(one.losses), rtol=1e-4, atol=1e-6)
        stacked = read_checkpoint(tmp_path / f"s{k}.pt")
        assert stacked.training["warm_restarts"] == [2] and stacked.training["steps_done"] == 5
        for name, value in read_checkpoint(tmp_path / f"alone{k}.pt").state_dict.items():
            torch.testing.assert_close(stacked.state_dict[name], value, rtol=1e-3, atol=1e-4)
    with pytest.raises(InputError, match="other settings"):  # a warm restart continues the same run
        train(fresh("dit", 9), data[1], tmp_path / "other.pt", TrainingConfig(**{**vars(longer), "seed": 3}),
              init=landed[1], progress=False)
