"""Library errors name parameters; the CLI prints the same errors with its flags; renamed flags still work."""

import pickle

import numpy as np
import pytest
import torch

import biasprobe as bp
from biasprobe.errors import InputError

from .conftest import run_cli, tiny_checkpoint


def test_an_error_renders_its_parameters_for_python_and_for_the_cli():
    error = InputError("give noise levels as {sigmas}, not {timesteps}", parameters=["sigmas", "timesteps"])
    assert str(error) == "give noise levels as sigmas, not timesteps"
    assert error.render({"sigmas": "--sigma", "timesteps": "--t"}) == "give noise levels as --sigma, not --t"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InputError and str(copy) == str(error)
    worded = InputError("choose another {out}", parameters={"out": "path"})
    assert str(worded) == "choose another path" and worded.render({"out": "--out"}) == "choose another --out"
    assert str(InputError("plain {braces} stay")) == "plain {braces} stay"



def test_every_training_setting_that_train_sets_is_named_by_its_flag():
    """An error about a TrainingConfig setting (e.g. compile_scope refusing torchrun) names the flag of
    `biasprobe train` that sets it."""
    from dataclasses import fields

    from biasprobe_cli.options import FLAGS

    from biasprobe.training import TrainingConfig

    help_text = run_cli("train", "--help").stdout
    # no flag sets weight_decay; train checks --batch itself (batch_size is --batch-size elsewhere)
    for setting in (f.name for f in fields(TrainingConfig) if f.name not in ("weight_decay", "batch_size")):
        assert setting in FLAGS, setting
        assert FLAGS[setting].split()[0] in help_text, (setting, FLAGS[setting])


def test_a_field_with_a_value_reads_as_python_or_as_a_command_line():
    error = InputError("use {method=dense} or {top_k}", parameters=["method", "top_k"])
    assert str(error) == "use method='dense' or top_k"
    assert error.render({"method": "--method", "top_k": "--top-k"}) == "use --method dense or --top-k"
    assert str(InputError("a {set=literal} of a message without parameters")) == "a {set=literal} of a message without parameters"


def test_solver_warnings_name_the_parameter_in_python_and_the_flag_on_the_command_line(tmp_path, capsys):
    from biasprobe_cli.main import _warn_in_one_line

    from biasprobe.eigensolvers import ConvergenceWarning

    denoiser = bp.load(tiny_checkpoint(tmp_path / "tiny.pt", "unet-bf", image_size=8))
    with pytest.warns(ConvergenceWarning) as caught:
        bp.jacobian(denoiser, torch.rand(1, 1, 8, 8), [0.1], top_k=4, method="randomized", tolerance=1e-14)
    warning = next(w.message for w in caught if w.category is ConvergenceWarning)
    assert "use method='dense' (d ≤ 4096) or method='lanczos'" in str(warning) and "--method" not in str(warning)
    _warn_in_one_line(warning, ConvergenceWarning, "x.py", 1)
    shown = capsys.readouterr().err
    assert shown.startswith("Warning: ") and "use --method dense (d ≤ 4096) or --method lanczos" in shown
    assert "method='dense'" not in shown


def test_blind_models_refuse_timesteps_in_either_language(tmp_path):
    path = tiny_checkpoint(tmp_path / "bf.pt", "unet-bf")
    with pytest.raises(InputError, match="give noise levels as sigmas, not timesteps"):
        bp.jacobian(bp.load(path), torch.full((1, 1, 8, 8), 0.5), timesteps=[10])
    np.save(tmp_path / "x.npy", np.full((1, 8, 8), 0.5, dtype=np.float32))
    result = run_cli("jacobian", path, "--image", tmp_path / "x.npy", "--t", "10", "--out", tmp_path / "j.zarr")
    assert result.returncode == 1 and "give noise levels as --sigma, not --t" in result.stderr


def test_the_old_output_flag_still_works_with_a_deprecation_notice(tmp_path):
    path = tiny_checkpoint(tmp_path / "bf.pt", "unet-bf")
    np.save(tmp_path / "x.npy", np.full((1, 8, 8), 0.5, dtype=np.float32))
    common = ("jacobian", path, "--image", tmp_path / "x.npy", "--sigma", "0.1", "--top-k", "4")
    old = run_cli(*common, "--output", "raw", "--out", tmp_path / "old.zarr")
    new = run_cli(*common, "--differentiate", "raw", "--out", tmp_path / "new.zarr")
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert "--output is deprecated" in old.stderr and "deprecated" not in new.stderr
    first, second = bp.open(tmp_path / "old.zarr"), bp.open(tmp_path / "new.zarr")
    assert first.attrs["output"] == second.attrs["output"] == "raw"
    np.testing.assert_array_equal(first.eigenvalue.values, second.eigenvalue.values)
    both = run_cli(*common, "--output", "raw", "--differentiate", "raw", "--out", tmp_path / "both.zarr")
    assert both.returncode == 1 and "give only --differentiate" in both.stderr


def test_checkpoint_writers_take_dash_o_or_checkpoint_and_still_the_old_output(tmp_path):
    new = run_cli("new", "unet-bf", "--preset", "tiny", "--image-size", "8", "--checkpoint", tmp_path / "a.pt")
    old = run_cli("new", "unet-bf", "--preset", "tiny", "--image-size", "8", "--output", tmp_path / "b.pt")
    assert new.returncode == 0 and old.returncode == 0, new.stderr + old.stderr
    assert "--output is deprecated" in old.stderr and "deprecated" not in new.stderr
    assert bp.load(tmp_path / "a.pt").describe() == {**bp.load(tmp_path / "b.pt").describe(),
                                                      "path": str(tmp_path / "a.pt")}
    missing = run_cli("new", "unet-bf")
    assert missing.returncode == 1 and "give the checkpoint to write with -o/--checkpoint" in missing.stderr
    refused = run_cli("train", "unet-bf", "--data", "discs", "--n-train", "4", "-o", tmp_path / "c.bin")
    assert refused.returncode == 1 and refused.stderr.startswith("Error: --checkpoint must end in"), refused.stderr
    mode = run_cli("train", "unet-bf", "--preset", "tiny", "--image-size", "8", "--data", "discs", "--n-train", "4",
                   "-o", tmp_path / "d.pt", "--compile-mode", "fast")
    assert mode.returncode == 1 and mode.stderr.startswith("Error: --compile-mode takes default, reduce-overhead"), \
        mode.stderr
    assert not (tmp_path / "d.pt").exists()
    several = run_cli("train", "unet-bf", "--preset", "tiny", "--image-size", "8", "--data", "discs", "--n-train",
                      "4,8", "-o", tmp_path / "e{n}.pt", "--compile-mode", "fast")  # ignored by stacked runs, still checked
    assert several.returncode == 1 and "--compile-mode takes" in several.stderr and not list(tmp_path.glob("e*.pt"))


def test_the_sweep_names_the_differentiated_output_as_the_single_command_does():
    shown = run_cli("sweep", "jacobian", "--help").stdout
    assert "--differentiate" in shown and "--output" not in shown


def test_command_summaries_are_whole_sentences():
    result = run_cli("--help")
    assert result.returncode == 0
    from biasprobe_cli.main import app

    for command in app.registered_commands:
        summary = (command.callback.__doc__ or "").strip().split("\n\n")[0]
        assert "\n" not in summary and summary.endswith("."), command.callback.__name__


def test_recipe_keys_and_train_flags_derive_from_the_one_schema_of_training_settings(tmp_path):
    """TrainingConfig's fields are the schema: each setting users set is a recipe key (its default the
    schema's) and a flag of `biasprobe train`; a recipe's error names its key, the command's its flag."""
    from dataclasses import MISSING, fields

    from biasprobe.sweeps.recipes import ModelRecipe, read_recipe
    from biasprobe.training.settings import TRAINING_SETTINGS, USER_SETTINGS

    recipe = {f.name: f.default for f in fields(ModelRecipe)}
    help_text = run_cli("train", "--help").stdout
    for setting in USER_SETTINGS:
        assert recipe[setting.name] == setting.default and setting.default is not MISSING, setting
        assert setting.flag in help_text, setting
    assert {s.parameter for s in TRAINING_SETTINGS} - {s.parameter for s in USER_SETTINGS} == {"weight_decay"}
    assert [s.name for s in USER_SETTINGS if s.name != s.parameter] == ["batch", "lr", "ema"]
    path = tmp_path / "r.toml"
    path.write_text('[[model]]\nname = "m"\nfamily = "dit"\nn = 10\nema = 1.5\n')
    with pytest.raises(InputError, match="model m: ema must lie in"):
        read_recipe(path)
    result = run_cli("train", "dit", "--data", "discs", "--n-train", "4", "-o", tmp_path / "m.pt", "--ema", "1.5")
    assert result.returncode == 1 and "--ema must lie in" in result.stderr
