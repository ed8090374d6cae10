"""Sweeps: a local dask cluster gives the store a serial loop gives; a killed sweep resumes to the
same store; a failing checkpoint is named and leaves the others' regions intact (on a scheduler given
by address); training recipes."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

import biasprobe as bp
from biasprobe.denoiser import file_sha256
from biasprobe.errors import InputError, ParameterError
from biasprobe.sweeps import SweepError, select
from biasprobe.sweeps import store as sweep_store
from biasprobe.sweeps.recipes import read_recipe

from tests.conftest import run_cli, tiny_checkpoint

SIGMAS = [0.1, 0.3]


@pytest.fixture
def zoo(tmp_path):
    """Three tiny DiTs (8×8 grey) of different seeds."""
    return [tiny_checkpoint(tmp_path / f"dit-{i}.pt", "dit", seed=i) for i in range(3)]


@pytest.fixture
def images():
    return torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def assert_same_sweep(first: xr.Dataset, second: xr.Dataset) -> None:
    """Identical values, coordinates and per-checkpoint attrs, except when and by which command."""
    def without_times(dataset):
        attrs = [json.loads(text) for text in dataset.analysis_attrs.values]
        for a in attrs:  # when and by which command each region was computed
            a.pop("created", None)
            a.pop("command", None)
        return dataset.drop_vars("analysis_attrs").drop_attrs(), attrs

    (a, attrs_a), (b, attrs_b) = without_times(first), without_times(second)
    xr.testing.assert_identical(a, b)
    assert attrs_a == attrs_b


def test_two_workers_give_the_store_a_serial_loop_gives(tmp_path, zoo, images):
    serial = bp.sweep("locality", zoo, tmp_path / "serial.zarr", images, sigmas=SIGMAS, workers=0, device="cpu")
    cluster = bp.sweep("locality", zoo, tmp_path / "cluster.zarr", images, sigmas=SIGMAS, workers=2,
                       processes=False, device="cpu")
    stored = bp.open(cluster)
    assert list(stored.checkpoint.values) == ["dit-0", "dit-1", "dit-2"]
    assert stored.sizes["checkpoint"] == 3 and stored.mean_distance.dims[0] == "checkpoint"
    assert list(stored.family.values) == ["dit"] * 3
    assert stored.checkpoint_sha256.values[1] == file_sha256(zoo[1])
    assert_same_sweep(bp.open(serial), stored)
    # every per-checkpoint variable, text included, is chunked by checkpoint: concurrent regions never share a chunk
    group = zarr.open_group(cluster, mode="r")
    assert all(group[name].chunks[0] == 1 for name in ("layer_name", "mean_distance"))
    # each region is exactly what the analysis gives for that checkpoint alone
    alone = bp.locality(bp.load(zoo[2]), images, SIGMAS)
    chosen = select(stored, "dit-2")
    xr.testing.assert_identical(alone.drop_attrs(), chosen.drop_attrs())
    assert {k: v for k, v in chosen.attrs.items() if k != "created"} == {
        k: json.loads(json.dumps(v)) for k, v in alone.attrs.items() if k != "created"}


KILL_AFTER_SECOND_REGION = """
    import os, signal, sys
    import torch, xarray as xr
    import biasprobe as bp
    original = xr.Dataset.to_zarr
    calls = []
    def to_zarr(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if kwargs.get("region"):
            calls.append(1)
            if len(calls) == 2:  # the second region's data is written, its completion flag is not
                os.kill(os.getpid(), signal.SIGKILL)
        return result
    xr.Dataset.to_zarr = to_zarr
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    bp.sweep("locality", sys.argv[2:], sys.argv[1], images, sigmas={sigmas}, workers=0, device="cpu")
"""


def test_a_sweep_killed_half_way_resumes_to_the_same_store(tmp_path, zoo, images):
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILL_AFTER_SECOND_REGION.format(sigmas=SIGMAS)))
    out = tmp_path / "resumed.zarr"
    killed = subprocess.run([sys.executable, script, out, *zoo], check=False, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert list(sweep_store.completed(out)) == [True, False, False]  # region 2 written but not recorded
    with pytest.raises(InputError, match="incomplete"):
        bp.open(out)
    bp.sweep("locality", zoo, out, images, sigmas=SIGMAS, workers=0, device="cpu")
    whole = bp.sweep("locality", zoo, tmp_path / "whole.zarr", images, sigmas=SIGMAS, workers=0, device="cpu")
    assert_same_sweep(bp.open(whole), bp.open(out))


def test_a_failing_checkpoint_is_named_and_the_others_are_written(tmp_path, zoo, images):
    odd = tiny_checkpoint(tmp_path / "wide.pt", "dit", image_size=16, seed=5)  # takes 16×16 images: fails
    checkpoints = [zoo[0], odd, zoo[1]]
    out = tmp_path / "failed.zarr"
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            pytest.raises(SweepError, match="wide") as caught:  # an existing scheduler, by its address
        bp.sweep("locality", checkpoints, out, images, sigmas=SIGMAS, scheduler=cluster.scheduler_address,
                 device="cpu")
    assert list(caught.value.failed) == ["wide"] and "do not fit" in caught.value.failed["wide"]
    assert list(sweep_store.completed(out)) == [True, False, True]
    stored = xr.open_zarr(out, zarr_format=3, consolidated=False).load()
    for index, checkpoint in ((0, zoo[0]), (2, zoo[1])):
        alone = bp.locality(bp.load(checkpoint), images, SIGMAS)
        np.testing.assert_array_equal(stored.mean_distance[index].values, alone.mean_distance.values)
    assert np.isnan(stored.mean_distance[1].values).all()
    # the command line names it in one line and exits 1
    result = run_cli("sweep", "locality", zoo[0], odd, "--image", _png(tmp_path), "--sigma", "0.1",
                     "--workers", "0", "--device", "cpu", "--out", tmp_path / "cli.zarr")
    assert result.returncode == 1 and "wide" in result.stderr and "Traceback" not in result.stderr


def _png(tmp_path):
    from biasprobe.images import write_image

    path = tmp_path / "x.png"
    write_image(torch.rand(1, 8, 8), path)
    return path


def test_a_store_of_something_else_is_never_touched(tmp_path, zoo, images):
    single = bp.save(bp.locality(bp.load(zoo[0]), images, [0.1]), tmp_path / "single.zarr")
    before = sorted(p.name for p in single.rglob("*"))
    with pytest.raises(InputError, match="not a sweep"):
        bp.sweep("locality", zoo, single, images, sigmas=SIGMAS, workers=0, device="cpu")
    assert sorted(p.name for p in single.rglob("*")) == before
    out = bp.sweep("locality", zoo[:1], tmp_path / "one.zarr", images, sigmas=SIGMAS, workers=0, device="cpu")
    with pytest.raises(InputError, match="another sweep.*options"):
        bp.sweep("locality", zoo[:1], out, images, sigmas=[0.2], workers=0, device="cpu")
    assert zarr.open_group(out).attrs[sweep_store.SWEEP_ATTR]


def test_gap_sweep_from_the_command_line_and_its_figure(tmp_path):
    from biasprobe.figures.generalization import gap_figure

    data = np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    models = []
    for n in (4, 12):
        models.append(tmp_path / f"n{n}.pt")
        result = run_cli("train", "unet-bf", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}",
                         "--n-train", n, "--steps", "2", "--batch", "4", "--image-size", "8", "-o", models[-1],
                         "--device", "cpu")
        assert result.returncode == 0, result.stderr
    out = tmp_path / "gap.zarr"
    result = run_cli("sweep", "gap", *models, "--per-split", "8", "--sigma", "0.1,0.2", "--workers", "0", "--out", out)
    assert result.returncode == 0, result.stderr
    stored = bp.open(out)
    assert list(stored.n_train.values) == [4, 12] and stored.sizes["image"] == 8
    assert list(stored.images_per_split.values[:, 0]) == [4, 8]  # N = 4 < K: NaN-padded to K
    alone = bp.analyses.generalization.checkpoint_gap(bp.load(models[1]), k=8, sigmas=[0.1, 0.2])
    xr.testing.assert_identical(select(stored, "n12").drop_attrs(), alone.drop_attrs())
    figure = gap_figure(out)
    assert len(figure.axes[1].get_lines()) == 3  # a curve per checkpoint and the zero line
    # compare two checkpoints' results of the sweep store, computing nothing
    result = run_cli("compare", f"{out}:n4", f"{out}:n12", "--out", tmp_path / "pair")
    assert result.returncode == 0, result.stderr
    pair = bp.open(tmp_path / "pair" / "comparison.zarr")
    assert list(pair.checkpoint.values) == ["A", "B"] and pair.attrs["compared"] == "gap"
    np.testing.assert_array_equal(pair.gap.sel(checkpoint="B").values, select(stored, "n12").gap.values)
    assert pair.attrs["checkpoint_b"] == str(models[1]) and (tmp_path / "pair" / "comparison.png").stat().st_size
    wrong = run_cli("compare", f"{out}:n4", models[1], "--out", tmp_path / "mixed")
    assert wrong.returncode == 1 and "two checkpoints or two stored results" in wrong.stderr
    wrong = run_cli("compare", f"{out}:n5", f"{out}:n12", "--out", tmp_path / "unknown")
    assert wrong.returncode == 1 and "no checkpoint 'n5' in this sweep" in wrong.stderr


RECIPE = """
output = "zoo"

[defaults]
data = "npz:{data}"
preset = "tiny"
image_size = 8
steps = 3
batch = 4
checkpoint_every = 2

[[model]]
name = "unet-n{{n}}-{{subset}}"
family = "unet-bf"
n = [4, 8]
subset = ["s1", "s2"]

[[model]]
name = "dit-local"
family = "dit"
n = 6
windows = [3, 0]
qk_norm = true
"""


def test_a_recipe_trains_each_model_resumably_and_writes_the_manifest(tmp_path):
    from biasprobe.checkpoints import read_checkpoint
    from biasprobe.sweeps.recipes import read_recipe, train_recipe

    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(data=tmp_path / "set.npz"))
    names = [model.name for model in read_recipe(recipe).models]
    assert names == ["unet-n4-s1", "unet-n4-s2", "unet-n8-s1", "unet-n8-s2", "dit-local"]
    result = run_cli("sweep", "train", recipe, "--only", "unet-n4-s1,dit-local", "--workers", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "zoo" / "manifest.json").read_text())["checkpoints"]
    assert [entry["name"] for entry in manifest] == ["unet-n4-s1", "dit-local"]
    local = manifest[1]
    assert local["windows"] == [3, None, None, None] and local["n_train"] == 6 and local["steps_done"] == 3 and local["complete"]
    assert local["sha256"] == file_sha256(tmp_path / "zoo" / "dit-local.safetensors")
    assert np.isfinite(local["final_loss"]) and local["card"] == "cpu" and local["time_s"] > 0
    trained = read_checkpoint(tmp_path / "zoo" / "dit-local.safetensors")
    assert trained.config["windows"] == [3, None, None, None] and trained.training["n_train"] == 6
    assert trained.config["qk_norm"] is True and "qk_norm" not in read_checkpoint(
        tmp_path / "zoo" / "unet-n4-s1.safetensors").config
    # a finished model is not trained again; the rest are, on a local cluster of two workers
    train_recipe(recipe, workers=2, processes=False, device="cpu")
    manifest = json.loads((tmp_path / "zoo" / "manifest.json").read_text())["checkpoints"]
    assert [entry["name"] for entry in manifest] == names
    assert manifest[-1] == local
    assert len({entry["sha256"] for entry in manifest}) == 5


def test_a_recipe_keeps_the_gap_of_every_checkpoint_across_rounds(tmp_path):
    from biasprobe.sweeps.recipes import read_recipe, train_recipe
    from biasprobe.training import state_path

    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    recipe_file = tmp_path / "recipe.toml"
    text = RECIPE.format(data=tmp_path / "set.npz").replace("steps = 3", "steps = 5\ngap_images = 4")
    recipe_file.write_text(text)
    train_recipe(read_recipe(recipe_file), only=["dit-local"], workers=0, device="cpu")
    record = json.loads((tmp_path / "zoo" / "dit-local.train.json").read_text())
    assert [row["steps"] for row in record["gaps"]] == [2, 4, 5]  # every checkpoint, the last one included
    row = record["gaps"][-1]
    assert row["images"] == [4, 4] and row["t"] == list(range(0, 1000, 20))  # the paper's gap
    assert len(row["gap"]) == len(row["gap_sem"]) == 50 and row["average_gap_sem"] > 0
    assert row["average_gap"] == pytest.approx(np.mean(row["gap"]), abs=1e-3)
    # each image's t-averaged PSNR per split, from which paired differences are formed: they give the average gap
    images = row["image_psnr"]
    assert len(images["train"]) == len(images["test"]) == 4
    assert np.mean(images["train"]) - np.mean(images["test"]) == pytest.approx(row["average_gap"], abs=1e-3)
    assert not (tmp_path / "zoo" / "dit-local.gaps.json").exists()  # the interim rows went into the record
    # the attention entropy per layer (lowest over heads), below log N (uniform attention) and above 0
    entropy = row["attention_entropy"]
    assert len(entropy) == record["config"]["depth"] and all(0 < h < np.log(64) + 1e-6 for h in entropy)
    window = record["windows"].index(3)  # a 3×3 window reaches at most 9 keys: its entropy is at most log 9
    assert entropy[window] <= np.log(9) + 1e-4
    # the next round (a warm restart: state lost, more steps) appends to the rows
    recipe_file.write_text(text.replace("steps = 5", "steps = 7"))
    train_recipe(read_recipe(recipe_file), only=["dit-local"], workers=0, device="cpu")
    assert not state_path(tmp_path / "zoo" / "dit-local.safetensors").exists()
    record = json.loads((tmp_path / "zoo" / "dit-local.train.json").read_text())
    assert [row["steps"] for row in record["gaps"]] == [2, 4, 5, 6, 7] and record["warm_restarts"] == [5]
    recipe_file.write_text(text.replace("gap_images = 4", "gap_images = -1"))
    with pytest.raises(InputError, match="gap_images must be a whole number"):
        read_recipe(recipe_file)


def test_a_record_older_than_a_recipe_key_reads_it_at_its_default_and_a_changed_key_is_refused(tmp_path):
    from biasprobe.sweeps.recipes import read_recipe, train_recipe

    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    recipe_file = tmp_path / "recipe.toml"
    text = RECIPE.format(data=tmp_path / "set.npz")
    recipe_file.write_text(text)
    train_recipe(read_recipe(recipe_file), only=["unet-n4-s1", "dit-local"], workers=0, device="cpu")
    path = tmp_path / "zoo" / "unet-n4-s1.train.json"
    record = json.loads(path.read_text())
    del record["recipe"]["qk_norm"]  # a record written before the key existed
    path.write_text(json.dumps(record))
    recipe_file.write_text(text.replace("steps = 3", "steps = 4"))
    train_recipe(read_recipe(recipe_file), only=["unet-n4-s1"], workers=0, device="cpu")  # continues: no refusal
    assert json.loads(path.read_text())["steps_done"] == 4
    recipe_file.write_text(text.replace("qk_norm = true", "qk_norm = false"))
    with pytest.raises(SweepError, match="dit-local.safetensors was trained by another recipe entry .*qk_norm"):
        train_recipe(read_recipe(recipe_file), only=["dit-local"], workers=0, device="cpu")


def test_a_bad_recipe_is_one_line(tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('[[model]]\nname = "a"\nfamily = "dit"\nn = 4\nwindow = [3]\n')
    result = run_cli("sweep", "train", recipe)
    assert result.returncode == 1 and "unknown keys ['window']" in result.stderr and "Traceback" not in result.stderr
    recipe.write_text('[[model]]\nname = "a"\nfamily = "dit"\nn = 4\ncompile = "fast"\n')
    result = run_cli("sweep", "train", recipe)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "model a: compile must be true, false or one of default, reduce-overhead" in result.stderr
    for family, value in ("unet-bf", "true"), ("dit", '"yes"'):  # refused when read, before anything trains
        recipe.write_text(f'[[model]]\nname = "a"\nfamily = "{family}"\nn = 4\nqk_norm = {value}\n')
        result = run_cli("sweep", "train", recipe)
        assert result.returncode == 1 and "qk_norm is true or false and applies to family dit only" in result.stderr


def test_a_recipe_chooses_the_compile_mode_and_channels_last(tmp_path):
    from biasprobe.sweeps.recipes import read_recipe

    recipe = tmp_path / "modes.toml"
    recipe.write_text('[defaults]\nfamily = "unet-bf"\nn = 4\n[[model]]\nname = "old"\ncompile = true\n'
                      '[[model]]\nname = "graphs"\ncompile = "reduce-overhead"\nchannels_last = true\n'
                      'compile_scope = "step"\n')
    old, graphs = (model.config() for model in read_recipe(recipe).models)
    assert (old.compile, old.channels_last, old.compile_scope) == ("default", False, "network")  # as before
    assert (graphs.compile, graphs.channels_last, graphs.compile_scope) == ("reduce-overhead", True, "step")
    recipe.write_text('[[model]]\nname = "a"\nfamily = "dit"\nn = 4\ncompile_scope = "all"\n')
    result = run_cli("sweep", "train", recipe)
    assert result.returncode == 1 and "model a: compile_scope must be one of network, step" in result.stderr


def test_a_run_may_replace_the_recipes_compile_mode(tmp_path, monkeypatch):
    """`sweep train --compile-mode` and `--compile-scope` (train_recipe's ``compile``, ``compile_scope``)
    replace every trained model's compile settings for this run, as ``max_minutes`` does; a mode
    torch.compile lacks, or a scope that is none, is one line."""
    from biasprobe.sweeps import engine
    from biasprobe.sweeps.recipes import read_recipe, train_recipe

    np.savez(tmp_path / "set.npz", train=np.zeros((30, 8, 8), np.uint8), test=np.zeros((10, 8, 8), np.uint8))
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text(RECIPE.format(data=tmp_path / "set.npz"))
    handed = {}

    def run(function, tasks, **options):  # what each worker would be handed, without training
        handed.update(tasks)
        return engine.Outcome()

    monkeypatch.setattr(engine, "run", run)
    recipe = read_recipe(recipe_file)
    train_recipe(recipe, only=["dit-local", "unet-n4-s1"], compile="reduce-overhead", compile_scope="step",
                 max_minutes=2, workers=0)
    assert {name: (model.config().compile, model.config().compile_scope, model.max_minutes)
            for name, (model, *_) in handed.items()} == {
        "dit-local": ("reduce-overhead", "step", 2), "unet-n4-s1": ("reduce-overhead", "step", 2)}
    handed.clear()
    train_recipe(recipe, only=["dit-local"], workers=0)  # no override: the recipe's setting (eager here)
    assert (handed["dit-local"][0].config().compile, handed["dit-local"][0].compile_scope) == (False, "network")
    result = run_cli("sweep", "train", recipe_file, "--compile-scope", "all", "--workers", "0", "--device", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: --compile-scope takes network, step, not 'all'")
    with pytest.raises(ParameterError, match="compile_scope must be one of network, step, not 'all'"):
        train_recipe(recipe, compile_scope="all", workers=0)
    result = run_cli("sweep", "train", recipe_file, "--compile-mode", "fastest", "--workers", "0", "--device", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr and "reduce-overhead" in result.stderr
    assert not (recipe.output / "dit-local.safetensors").exists()


def test_a_round_continues_models_whose_state_was_lost_by_a_warm_restart(tmp_path):
    """As on a bare GPU machine: each round stops at max_minutes and only the weights and records come
    back (the resumable state is lost); the next round continues from the weights."""
    from biasprobe.checkpoints import read_checkpoint
    from biasprobe.sweeps.recipes import read_recipe, train_recipe
    from biasprobe.training import state_path

    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text(RECIPE.format(data=tmp_path / "set.npz").replace("steps = 3", "steps = 5"))
    recipe = read_recipe(recipe_file)
    checkpoint = recipe.output / "dit-local.safetensors"
    record_path = recipe.output / "dit-local.train.json"
    for round_ in range(2):  # each round runs out of time after its first step
        train_recipe(recipe, only=["dit-local"], max_minutes=1e-9, workers=0, device="cpu")
        assert state_path(checkpoint).exists()
        state_path(checkpoint).unlink()
        record = json.loads(record_path.read_text())
        assert record["steps_done"] == round_ + 1 and record["warm_restarts"] == ([1] if round_ else [])
    first_time = record["time_s"]
    train_recipe(recipe, only=["dit-local"], workers=0, device="cpu")  # the last round finishes
    record = json.loads(record_path.read_text())
    assert record["steps_done"] == 5 and record["complete"] and record["warm_restarts"] == [1, 2]
    assert [step for step, _ in record["loss_curve"]] == [1, 2, 3, 4, 5]  # appended, never replaced
    assert [step for step, _ in record["grad_norm_curve"]] == [1, 2, 3, 4, 5]  # so are the gradient norms
    assert record["grad_norm_max"] == max(record["grad_norm_curve"], key=lambda point: point[1])
    assert record["time_s"] > first_time and record["flops_per_forward"] > 0
    saved = read_checkpoint(checkpoint).training
    assert (saved["steps_done"], saved["warm_restarts"]) == (5, [1, 2])
    assert not state_path(checkpoint).exists()
    # a finished model is left alone
    sha = record["sha256"]
    train_recipe(recipe, only=["dit-local"], workers=0, device="cpu")
    assert json.loads(record_path.read_text())["sha256"] == sha
    # a recipe entry that no longer matches its checkpoint is refused in one line
    recipe_file.write_text(RECIPE.format(data=tmp_path / "set.npz").replace("steps = 3", "steps = 9")
                           .replace("n = 6", "n = 7"))
    result = run_cli("sweep", "train", recipe_file, "--only", "dit-local", "--workers", "0", "--device", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "trained by another recipe entry (n: saved 6, now 7)" in result.stderr
    assert json.loads(record_path.read_text())["sha256"] == sha
    # --manifest completes a record of an older version (no FLOPs, no warm restarts) without training
    older = {k: v for k, v in record.items() if k not in ("flops_per_forward", "warm_restarts")}
    record_path.write_text(json.dumps(older))
    recipe_file.write_text(RECIPE.format(data=tmp_path / "set.npz").replace("steps = 3", "steps = 5"))
    result = run_cli("sweep", "train", recipe_file, "--manifest")
    assert result.returncode == 0, result.stderr
    completed = json.loads(record_path.read_text())
    assert completed["flops_per_forward"] == record["flops_per_forward"] and completed["warm_restarts"] == []
    entry = json.loads((recipe.output / "manifest.json").read_text())["checkpoints"][0]
    assert entry["name"] == "dit-local" and entry["flops_per_forward"] == record["flops_per_forward"]


def test_records_manifest_and_list_say_whether_each_model_is_on_a_plateau(tmp_path):
    """`--manifest` judges each record's loss curve (training.plateau) into the record and the manifest;
    `--list` shows the change over the last 20 % and the verdict."""
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(data=tmp_path / "set.npz"))
    rng = np.random.default_rng(0)
    steps = np.arange(25, 5001, 25)
    curves = {"unet-n4-s1": 0.03 * (1 + 0.01 * rng.standard_normal(len(steps))),  # flat
              "dit-local": 0.03 + 0.02 * np.exp(-steps / 2000)}  # still falling
    for name, losses in curves.items():  # records as a round leaves them (FLOPs known: no network built)
        (tmp_path / "zoo").mkdir(exist_ok=True)
        (tmp_path / "zoo" / f"{name}.train.json").write_text(json.dumps({
            "name": name, "file": f"{name}.safetensors", "steps": 5000, "steps_done": 5000, "warm_restarts": [],
            "flops_per_forward": 1, "loss_curve": [[int(s), float(v)] for s, v in zip(steps, losses)]}))
    result = run_cli("sweep", "train", recipe, "--manifest")
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads((tmp_path / "zoo" / "manifest.json").read_text())["checkpoints"]}
    flat, falling = entries["unet-n4-s1"], entries["dit-local"]
    assert flat["plateau"] is True and abs(flat["loss_change_last_20pct"]) < 0.01 and flat["loss_change_se"] > 0
    expected = (0.03 + 0.02 * np.exp(-4500 / 2000)) / (0.03 + 0.02 * np.exp(-3500 / 2000)) - 1
    assert falling["plateau"] is False and falling["loss_change_last_20pct"] == pytest.approx(expected, abs=0.003)
    assert json.loads((tmp_path / "zoo" / "dit-local.train.json").read_text())["plateau"] is False  # record too
    recipe_steps = {model.name: model.steps for model in read_recipe(recipe).models}
    assert all(entry["steps"] == recipe_steps[name] != 5000 for name, entry in entries.items())  # the recipe's now
    assert all(entry["complete"] is (entry["steps_done"] >= entry["steps"]) for entry in entries.values())
    assert json.loads((tmp_path / "zoo" / "dit-local.train.json").read_text())["steps"] == 5000  # the record's kept
    listing = run_cli("sweep", "train", recipe, "--list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines() if line.split()}
    assert rows["unet-n4-s1"][-1] == "yes" and rows["dit-local"][-1] == "no"
    assert rows["dit-local"][-2] == f"{expected:+.1%}" and rows["unet-n4-s2"][-2:] == ["-", "-"]  # never trained
    assert "flat" in rows["name"] and "Δ20%" in rows["name"]


def test_a_manifest_written_by_sweep_train_is_read_back_by_the_report(tmp_path):
    """One schema (biasprobe.sweeps.manifest): what `sweep train` writes, the report's zoo reader reads — the
    models with their files, sha256, family, variant, training images and how far they are trained."""
    from biasprobe.reports.zoo import read_zoo, zoo_training
    from biasprobe.sweeps.manifest import REQUIRED_FIELDS, ManifestEntry, read_manifest

    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(data=tmp_path / "set.npz"))
    result = run_cli("sweep", "train", recipe, "--only", "unet-n4-s2,dit-local", "--workers", "0", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    written = {e["name"]: e for e in json.loads((tmp_path / "zoo" / "manifest.json").read_text())["checkpoints"]}
    assert all(set(REQUIRED_FIELDS) <= set(entry) for entry in written.values())
    models = {model.name: model for model in read_zoo(tmp_path / "zoo")}
    assert set(models) == {"unet-n4-s2", "dit-local"}
    unet, dit = models["unet-n4-s2"], models["dit-local"]
    assert unet.path == tmp_path / "zoo" / "unet-n4-s2.safetensors" and unet.sha256 == file_sha256(unet.path)
    assert (unet.family, unet.n_train, unet.subset, unet.variant) == ("unet-bf", 4, "s2", "global")
    assert (dit.family, dit.n_train, dit.windows, dit.variant) == ("dit", 6, (3,), None)  # trailing global layers dropped
    assert dit.data == f"npz:{tmp_path / 'set.npz'}" and dit.steps_done == 3
    bp.load(dit.path)  # the file the report opens
    trained = {state.name: state for state in zoo_training(tmp_path / "zoo")}
    assert trained["dit-local"].steps_done == trained["dit-local"].steps == 3
    judged = written["dit-local"]
    assert trained["dit-local"].change == judged["loss_change_last_20pct"]  # 3 steps: too short to judge, None
    assert trained["dit-local"].plateau is (None if judged["loss_change_last_20pct"] is None else judged["plateau"])
    for entry in read_manifest(tmp_path / "zoo"):  # every field the writer wrote is kept for other readers
        assert entry.written == written[entry.name] and isinstance(entry, ManifestEntry)


def test_gap_rows_survive_a_run_lost_midway(tmp_path, monkeypatch):
    """A run that dies after a checkpoint's measurement keeps the rows measured so far (``NAME.gaps.json``) and
    the next run carries them into the record."""
    from biasprobe.sweeps import recipes
    from biasprobe.sweeps.recipes import train_recipe

    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text(RECIPE.format(data=tmp_path / "set.npz").replace("steps = 3", "steps = 5\ngap_images = 4"))
    measured = recipes.checkpoint_gap_row
    calls = []

    def dies_at_the_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("machine taken back")
        return measured(*args)
    monkeypatch.setattr(recipes, "checkpoint_gap_row", dies_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        train_recipe(read_recipe(recipe_file), only=["dit-local"], workers=0, device="cpu")
    folder = tmp_path / "zoo"
    assert not (folder / "dit-local.train.json").exists()
    assert [row["steps"] for row in json.loads((folder / "dit-local.gaps.json").read_text())] == [2]
    monkeypatch.setattr(recipes, "checkpoint_gap_row", measured)
    train_recipe(read_recipe(recipe_file), only=["dit-local"], workers=0, device="cpu")
    steps = [row["steps"] for row in json.loads((folder / "dit-local.train.json").read_text())["gaps"]]
    assert steps[0] == 2 and steps[-1] == 5 and steps == sorted(set(steps))
    assert not (folder / "dit-local.gaps.json").exists()


def test_a_failing_task_is_named_at_once_not_only_at_the_end(capsys):
    from biasprobe.sweeps import engine

    def work(value):
        if value < 0:
            raise ValueError("negative input\nsecond line")
        return value

    outcome = engine.run(work, {"good": (1,), "bad": (-1,)}, workers=0, progress=True)
    assert outcome.done == ["good"] and outcome.failed == {"bad": "ValueError: negative input"}
    assert "bad failed: ValueError: negative input" in capsys.readouterr().err


def recipe_file_with_data(tmp_path, steps: int = 3) -> tuple:
    """RECIPE over 40 random 8×8 images in tmp_path/set.npz, with ``steps``: (the recipe file, its text)."""
    data = np.random.default_rng(1).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:30], test=data[30:])
    text = RECIPE.format(data=tmp_path / "set.npz").replace("steps = 3", f"steps = {steps}")
    (tmp_path / "recipe.toml").write_text(text)
    return tmp_path / "recipe.toml", text


@pytest.mark.parametrize("record_lost", [False, True], ids=["record kept", "record lost with its round"])
def test_a_later_round_may_add_gradient_clipping_and_the_record_says_from_which_step(tmp_path, record_lost):
    """A round that adds grad_clip dates the change in the record; when the earlier record was lost with its round
    (zoo v2's round 1: only the weights came back), from the checkpoint's own settings."""
    from biasprobe.checkpoints import read_checkpoint
    from biasprobe.sweeps.recipes import read_recipe, train_recipe
    from biasprobe.training import state_path

    recipe_file, text = recipe_file_with_data(tmp_path, steps=4)
    train_recipe(read_recipe(recipe_file), only=["dit-local"], max_minutes=1e-9, workers=0, device="cpu")
    output = read_recipe(recipe_file).output
    state_path(output / "dit-local.safetensors").unlink()  # lost, as on a bare machine: a warm restart follows
    if record_lost:
        (output / "dit-local.train.json").unlink()
    recipe_file.write_text(text.replace("checkpoint_every = 2", "checkpoint_every = 2\ngrad_clip = 0.5"))
    train_recipe(read_recipe(recipe_file), only=["dit-local"], workers=0, device="cpu")
    record = json.loads((output / "dit-local.train.json").read_text())
    assert record["steps_done"] == 4 and record["setting_changes"] == [{"step": 1, "grad_clip": [None, 0.5]}]
    assert record["warm_restarts"] == [1] and record["recipe"]["grad_clip"] == 0.5
    assert read_checkpoint(output / "dit-local.safetensors").training["grad_clip"] == 0.5


def test_only_trains_the_models_named_in_the_order_named(tmp_path, monkeypatch):
    from biasprobe.sweeps import engine
    from biasprobe.sweeps.recipes import read_recipe, train_recipe

    recipe_file, _ = recipe_file_with_data(tmp_path)
    seen = []
    monkeypatch.setattr(engine, "run", lambda function, tasks, **options: seen.append(list(tasks)) or engine.Outcome())
    train_recipe(read_recipe(recipe_file), only=["dit-local", "unet-n8-s1", "unet-n4-s2", "dit-local"], workers=0)
    assert seen == [["dit-local", "unet-n8-s1", "unet-n4-s2"]]
