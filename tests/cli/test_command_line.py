"""The command line as a user meets it: help, new, info, and one-line errors; and as a researcher
meets it: progress that says where it is, quick start-up, tables that fit 80 columns, JSON for scripts,
the interrupt message, no file replaced silently."""

import dataclasses
import inspect
import json
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from biasprobe_cli import checkpoints, generalization, jacobian, reference
from biasprobe_cli.main import INTERRUPTED

import biasprobe as bp
from biasprobe import progress
from biasprobe.analyses.harmonic import CATEGORIES, gahb_summary
from biasprobe.analyses.jacobian import METHODS, OUTPUTS, PRECISIONS, ConvergenceWarning
from biasprobe.analyses.span import NEIGHBOURS
from biasprobe.analyses.support import SUPPORTS
from biasprobe.denoiser import file_sha256
from biasprobe.images import write_image
from biasprobe.models import FAMILIES
from biasprobe.training.samplers import METHODS as SAMPLERS

from tests.conftest import run_cli, run_cli_process, tiny_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")


@pytest.fixture
def every_line(monkeypatch):
    """Plain progress lines at every advance (no throttling)."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if TIMESTAMP.match(line)]


def assert_one_line_error(result, fragment: str):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert fragment in lines[0], lines[0]


def test_the_installed_entry_point_helps_and_fails_in_one_line(tmp_path):
    result = run_cli_process("--help")
    assert result.returncode == 0
    for command in ("info", "new", "train", "jacobian", "locality", "gap", "sample", "compare", "demo"):
        assert command in result.stdout
    assert_one_line_error(run_cli_process("info", tmp_path / "none.pt"), "no checkpoint at")


def test_new_dit_xs_then_info(tmp_path):
    path = tmp_path / "a.pt"
    result = run_cli("new", "dit", "--preset", "xs", "--windows", "3,5,7,9,11,13", "-o", path)
    assert result.returncode == 0, result.stderr
    d = bp.load(path)
    assert d.image_shape == (3, 32, 32)
    assert [m.window for m in d.attention_modules().values()] == [3, 5, 7, 9, 11, 13] + [None] * 6
    assert d.network.config["width"] == 252 and d.network.config["heads"] == 4 and "qk_norm" not in d.network.config
    normed = tmp_path / "qk.pt"
    assert run_cli("new", "dit", "--preset", "tiny", "--qk-norm", "-o", normed).returncode == 0
    assert bp.load(normed).network.config["qk_norm"] is True and '"qk_norm": true' in run_cli("info", normed).stdout
    info = run_cli("info", path)
    assert info.returncode == 0, info.stderr
    for expected in ("dit", "eps", "[-1, 1]", "linear, 1000 steps", "3×3", "13×13", "global", "biasprobe-pt",
                     "(3, 32, 32)"):
        assert expected in info.stdout, expected
    assert file_sha256(path) in info.stdout


def test_new_writes_every_family_with_its_conventions(tmp_path):
    for family, parameterization in (("unet-bf", "residual"), ("unet-ddpm", "eps")):
        path = tmp_path / f"{family}.safetensors"
        args = ["new", family, "--preset", "tiny", "--image-size", "16", "-o", path]
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        d = bp.load(path)
        assert d.parameterization == parameterization
        with torch.no_grad():
            assert d(torch.rand(1, *d.image_shape), 0.1).shape == (1, *d.image_shape)


def test_bad_arguments_and_files_get_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00junk" * 100)
    assert_one_line_error(run_cli("info", tmp_path / "junk.pt"), "not a readable PyTorch checkpoint")
    assert_one_line_error(run_cli("info", tmp_path / "none.pt"), "no checkpoint at")
    out = tmp_path / "x.pt"
    assert_one_line_error(run_cli("new", "vae", "-o", out), "unknown model family")
    assert_one_line_error(run_cli("new", "dit", "--preset", "huge", "-o", out), "preset")
    assert_one_line_error(run_cli("new", "dit", "--windows", "3,4", "-o", out), "odd")
    assert_one_line_error(run_cli("new", "unet-bf", "--qk-norm", "-o", out), "applies to dit only")
    assert_one_line_error(run_cli("new", "dit", "--preset", "tiny", "--windows", "3,3,3,3,3", "-o", out), "4-layer")
    assert_one_line_error(run_cli("new", "unet-bf", "--windows", "3", "-o", out), "dit only")
    assert not out.exists()


def test_help_starts_quickly_without_torch_and_version_prints():
    code = ("import sys, time; began = time.perf_counter(); import biasprobe_cli.main; "
            "print('torch' in sys.modules, 'scipy' in sys.modules, 'xarray' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == ["False", "False", "False"]
    began = time.perf_counter()
    shown = subprocess.run([sys.executable, "-m", "biasprobe_cli", "--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - began
    assert shown.returncode == 0 and "jacobian" in shown.stdout
    # 0.3 s on an idle 2-core CPU, 3.5 s at a load average of 20; torch, scipy and xarray stay unloaded
    assert elapsed < 10.0, f"biasprobe --help took {elapsed:.2f} s"
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"biasprobe {bp.__version__}"


def test_help_reads_at_80_columns_without_type_placeholders(monkeypatch):
    """At 80 columns every command's help fits, flags carry no ``<bool>`` placeholder, the help column
    of ``jacobian`` is about half the width (it was 20 characters over 191 lines), and a group lists its
    commands whole (issue 27)."""
    from biasprobe_cli.main import app

    monkeypatch.setenv("COLUMNS", "80")
    top = run_cli("--help").stdout
    assert re.search(r"^  --version +Print the version and exit\.$", top, re.M), top
    commands = [[command.name] for command in app.registered_commands]
    commands += [[group.name, command.name] for group in app.registered_groups
                 for command in group.typer_instance.registered_commands]
    for command in [[], *commands]:
        shown = run_cli(*command, "--help")
        assert shown.returncode == 0, command
        assert "<bool>" not in shown.stdout and max(len(line) for line in shown.stdout.splitlines()) <= 80, command
    for group, commands in (([], app.registered_commands),
                            *(([group.name], group.typer_instance.registered_commands) for group in app.registered_groups)):
        listed = " ".join(run_cli(*group, "--help").stdout.split())
        for command in commands:
            summary = " ".join(inspect.cleandoc(command.callback.__doc__ or "").split("\n\n")[0].split())
            assert summary in listed, (group, summary)
    lines = run_cli("jacobian", "--help").stdout.splitlines()
    assert len(lines) < 110
    starts = {len(line) - len(line.lstrip()) for line in lines if line.startswith("   ") and line.strip()}
    assert max(starts) <= 34, starts  # the help column: at least 46 of the 80 columns


def test_help_names_every_choice_of_the_library():
    assert checkpoints.FAMILY_NAMES == ", ".join(FAMILIES)
    assert jacobian.METHOD_NAMES == METHODS and jacobian.OUTPUT_NAMES == OUTPUTS
    assert jacobian.PRECISION_NAMES == PRECISIONS and generalization.SAMPLER_NAMES == SAMPLERS
    assert jacobian.SUPPORT_NAMES == SUPPORTS and jacobian.DEFAULT_NEIGHBOURS == NEIGHBOURS


def test_ctrl_c_says_nothing_was_left_half_written(tmp_path):
    path = tiny_checkpoint(tmp_path / "m.pt", "unet-bf")
    with mock.patch("biasprobe.load", side_effect=KeyboardInterrupt):
        result = run_cli("info", path)
    assert result.returncode == 130
    assert result.stderr.strip() == INTERRUPTED


def test_plain_progress_lines_name_the_stage_and_count(capsys, every_line):
    with progress.stage("[2/4] Jacobian m"), progress.task("image 1/2, σ = 0.1", 3, unit="products") as advance:
        for _ in range(3):
            advance()
    lines = stderr_lines(capsys.readouterr().err)
    assert lines[0].endswith("[2/4] Jacobian m: image 1/2, σ = 0.1 — 0/3 products (0%, 0:00 elapsed)")
    assert "3/3 products (100%" in lines[-1] and len(lines) == 4  # start, three advances, no repeat at the end
    assert list(progress.track(range(4), "quiet", enabled=False)) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""


def test_plain_progress_is_throttled_to_the_interval(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 3600.0)
    assert list(progress.track(range(100), "many", unit="items")) == list(range(100))
    lines = stderr_lines(capsys.readouterr().err)
    assert len(lines) == 2 and "0/100" in lines[0] and "100/100 items (100%" in lines[1]


def test_jacobian_progress_json_and_tables_of_80_columns(tmp_path, monkeypatch, every_line):
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", "unet-bf", image_size=8)
    write_image(torch.rand(1, 8, 8), tmp_path / "a.png")
    write_image(torch.rand(1, 8, 8), tmp_path / "b.png")
    args = ["jacobian", checkpoint, "--image", tmp_path / "a.png", "--image", tmp_path / "b.png", "--sigma", "0.1,0.2"]
    shown = run_cli(*args)
    assert shown.returncode == 0, shown.stderr
    lines = stderr_lines(shown.stderr)
    # both images of a σ in one batch of products (autodiff.dense_jacobians), counted as such
    assert any("images 1-2/2, σ = 0.2 — 128/128 products" in line for line in lines), lines
    assert any("Jacobians — 4/4 images × σ" in line for line in lines)
    assert max(len(line) for line in shown.stdout.splitlines() if not line.startswith("wrote ")) <= 80 and "…" not in shown.stdout  # paths print whole
    assert "wrote tiny.jacobian.zarr" in shown.stdout
    data = json.loads(run_cli(*args, "--json", "--out", tmp_path / "j.zarr").stdout)
    assert data["checkpoints"] == [{"checkpoint": "tiny", "dimension": 64, "method": "dense", "tolerance": 1e-3}]
    assert len(data["pairs"]) == 4 and len(data["gahb"]) == 4 and len(data["verdicts"]) == 2
    stored = bp.open(tmp_path / "j.zarr")
    np.testing.assert_allclose([p["trace"] for p in data["pairs"]], stored.effective_dimension.values.ravel())
    summary = gahb_summary(stored)
    assert [g["category"] for g in data["gahb"]] == list(summary.category.values.ravel())
    assert [g["reason"] for g in data["gahb"]] == list(summary.reason.values.ravel())
    assert [v["verdict"] for v in data["verdicts"]] == list(summary.verdict.values)
    for verdict, count in zip(data["verdicts"], summary.category_count.values):
        assert verdict["counts"] == dict(zip(CATEGORIES, count.tolist())) and sum(count) == 2
    assert data["written"] == [str(tmp_path / "j.zarr")]


def test_randomized_method_warns_with_the_residual_it_stopped_at(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    denoiser = bp.load(tiny_checkpoint(tmp_path / "tiny.pt", "unet-bf", image_size=8))
    image = torch.rand(1, 1, 8, 8)
    with pytest.warns(ConvergenceWarning, match=r"worst residual ‖Se − λe‖/\|λ\| = \d\.\de-\d\d") as caught:
        result = bp.jacobian(denoiser, image, [0.1], top_k=4, method="randomized", tolerance=1e-14)
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert len(messages) == 1 and f"{float(result.eigen_residual.max()):.1e}" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # converged pairs stay silent
        bp.jacobian(denoiser, image, [0.1], top_k=4, method="randomized", tolerance=1.0)
    write_image(image[0], tmp_path / "a.png")
    shown = run_cli("jacobian", tmp_path / "tiny.pt", "--image", tmp_path / "a.png", "--top-k", "2",
                    "--method", "randomized")
    warned = [line for line in shown.stderr.splitlines() if line.startswith("Warning:")]
    stored = bp.open(tmp_path / "tiny.jacobian.zarr")
    assert bool(warned) == bool(stored.eigen_residual.max() > 1e-3)


def test_locality_table_fits_80_columns_and_json(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "dit.pt", "dit", windows=[3, None, None, None])
    args = ["locality", checkpoint, "--data", "discs", "--n", "2", "--sigma", "0.05,0.2", "--out", tmp_path / "l.zarr"]
    shown = run_cli(*args)
    assert shown.returncode == 0, shown.stderr
    assert max(len(line) for line in shown.stdout.splitlines() if not line.startswith("wrote ")) <= 80 and "…" not in shown.stdout  # paths print whole
    assert "3×3" in shown.stdout and "global" in shown.stdout
    data = json.loads(run_cli(*args, "--json").stdout)
    stored = bp.open(tmp_path / "l.zarr")
    assert len(data["layers"]) == stored.sizes["layer"] * 2 and data["layers"][0]["window"] == 3
    np.testing.assert_allclose(data["layers"][0]["mean_distance"],
                               float(stored.mean_distance.isel(sigma=0, layer=0).mean("head").mean("image")))


@pytest.mark.parametrize("family, overrides", [("dit", {"depth": 12, "windows": [3] * 6 + [None] * 6}),
                                               ("unet-ddpm", {"attention_resolutions": [16, 8]})])
def test_locality_table_keeps_module_names_on_one_row_at_80_columns(tmp_path, family, overrides):
    """Every module name whole on its layer's row (a 12-layer DiT's ``blocks.11.attn``, a UNet's
    ``decoder.1.1.attention`` beside grids that differ), the bound log N said in the caption (issue 27)."""
    checkpoint = tiny_checkpoint(tmp_path / "m.pt", family, image_size=16, **overrides)
    shown = run_cli("locality", checkpoint, "--data", "discs", "--n", "2", "--sigma", "0.1", "--out", tmp_path / "l.zarr")
    assert shown.returncode == 0, shown.stderr
    stored = bp.open(tmp_path / "l.zarr")
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines if not line.startswith("wrote ")) <= 80
    for layer, module in zip(stored.layer.values, stored.layer_name.values):
        assert any(line.split()[:2] == [str(layer), str(module)] for line in lines if line.strip()), (module, lines)
    caption = " ".join(lines[lines.index(next(line for line in lines if line.startswith("window:") or line.startswith("grid:"))):])
    for rows, cols, bound in zip(stored.grid_rows.values, stored.grid_cols.values, stored.entropy_uniform.values):
        assert f"{rows}×{cols} tokens: log N = {bound:.2f}" in caption, caption


def test_info_json(tmp_path):
    path = tiny_checkpoint(tmp_path / "m.pt", "dit")
    data = json.loads(run_cli("info", path, "--json").stdout)
    assert data["sha256"] == file_sha256(path) and data["description"]["family"] == "dit"


def test_info_wraps_long_values_at_80_columns(tmp_path):
    lines = run_cli("info", tiny_checkpoint(tmp_path / "m.pt", "dit", windows=[3, 5, None, None])).stdout.splitlines()
    too_long = [line for line in lines if len(line) > 80 and len(line.split()) > 2]  # a hash or a path stays whole
    assert not too_long and any(line.startswith(" ") for line in lines)
    config = next(i for i, line in enumerate(lines) if line.startswith("config"))
    assert lines[config + 1].startswith(" ")  # the config's JSON continues on an indented line


def test_train_continues_an_interrupted_run_and_never_replaces_a_finished_one(tmp_path):
    images = (np.random.default_rng(0).random((20, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images[:15], test=images[15:])
    out = tmp_path / "m.pt"
    base = ["train", "unet-bf", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--n-train", "6",
            "--batch", "4", "--image-size", "8", "-o", out]
    stopped = run_cli(*base, "--steps", "3", "--max-minutes", "1e-9")  # stops after its first step, keeps its state
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped early" in stopped.stdout and "1/3 steps" in stopped.stdout
    resumed = run_cli(*base, "--steps", "4")
    assert resumed.returncode == 0, resumed.stderr
    assert f"continuing {out} from step 1" in resumed.stdout and "to 4 steps" in resumed.stdout
    assert "4/4 steps" in resumed.stdout
    before = out.read_bytes()
    again = run_cli(*base, "--steps", "6")
    assert again.returncode == 1 and "a finished 4-step run" in again.stderr and "-o" in again.stderr
    assert "Traceback" not in again.stderr and out.read_bytes() == before


def test_train_takes_the_compile_mode_and_channels_last(tmp_path, monkeypatch):
    from biasprobe.training import loop

    images = (np.random.default_rng(0).random((20, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images[:15], test=images[15:])
    modes = []
    monkeypatch.setattr(loop, "compile_network", lambda network, mode: modes.append(mode) or network)
    base = ["train", "unet-bf", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--n-train", "6",
            "--batch", "4", "--image-size", "8", "--steps", "1"]
    for flags, mode in ((["--compile"], "default"), (["--compile-mode", "reduce-overhead", "--channels-last"],
                                                     "reduce-overhead"), ([], False)):
        out = tmp_path / f"{mode}.pt"
        result = run_cli(*base, *flags, "-o", out)
        assert result.returncode == 0, result.stderr
        assert modes.pop() == mode
        saved = bp.load(out).source.training
        assert (saved["compile"], saved["channels_last"]) == (mode, "--channels-last" in flags)


def test_train_compile_scope_step_compiles_the_loss_and_the_ema_and_implies_compile(tmp_path, monkeypatch):
    import torch

    images = (np.random.default_rng(0).random((20, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images[:15], test=images[15:])
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda function, mode=None: compiled.append((function, mode)) or function)
    base = ["train", "unet-bf", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--n-train", "6",
            "--batch", "4", "--image-size", "8", "--steps", "1"]
    result = run_cli(*base, "--compile-scope", "step", "-o", tmp_path / "step.pt")
    assert result.returncode == 0, result.stderr
    assert [(getattr(f, "func", f).__name__, mode) for f, mode in compiled] == [
        ("denoising_loss", "default"), ("_update_ema", "default")]  # not the network alone: the step around it
    saved = bp.load(tmp_path / "step.pt").source.training
    assert (saved["compile"], saved["compile_scope"]) == ("default", "step")
    wrong = run_cli(*base, "--compile-scope", "all", "-o", tmp_path / "all.pt")
    assert wrong.returncode == 1 and wrong.stderr.startswith("Error: --compile-scope takes network, step, not 'all'")
    assert "Traceback" not in wrong.stderr and not (tmp_path / "all.pt").exists()


def test_sample_png_puts_samples_above_their_nearest_training_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = (np.random.default_rng(0).random((20, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images[:15], test=images[15:])
    run_cli("train", "unet-bf", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--n-train", "6",
            "--batch", "4", "--image-size", "8", "--steps", "1", "-o", tmp_path / "m.pt")
    gap = json.loads(run_cli("gap", tmp_path / "m.pt", "--per-split", "3", "--sigma", "0.1,0.3", "--json").stdout)
    stored = bp.open(tmp_path / "m.gap.zarr")
    assert [level["sigma"] for level in gap["levels"]] == [0.1, 0.3] and gap["n_train"] == 6
    np.testing.assert_allclose(gap["average_gap"], float(stored.average_gap))
    shown = run_cli("sample", tmp_path / "m.pt", "-n", "3", "--png", tmp_path / "s.png")
    assert shown.returncode == 0, shown.stderr
    assert f"wrote {tmp_path / 's.png'} (3 samples above their nearest training images)" in shown.stdout
    from PIL import Image

    with Image.open(tmp_path / "s.png") as picture:
        assert picture.size == (3 * 8 + 2 * 2, 2 * 8 + 2)
        grid = np.asarray(picture, dtype=np.float32) / 255
    stored = bp.open(tmp_path / "m.samples.zarr")
    np.testing.assert_allclose(grid[10:, :8], stored.nearest_image.values[0, 0], atol=1 / 255)


def test_demo_writes_outside_the_tracked_tree_by_default():
    from biasprobe_cli.demo import DEFAULT_FOLDER

    ignored = subprocess.run(["git", "check-ignore", "-q", str(DEFAULT_FOLDER / "index.md")], cwd=ROOT, check=False)
    tracked = subprocess.run(["git", "ls-files", str(DEFAULT_FOLDER)], cwd=ROOT, capture_output=True, text=True,
                             check=True)
    assert ignored.returncode == 0 and tracked.stdout == ""


def test_reference_renders_without_entities():
    assert "&#" not in reference.render()


def figure_texts(figure) -> list[str]:
    from matplotlib.text import Text

    return [text.get_text() for text in figure.findobj(Text) if text.get_text()]


def test_figures_say_nan_in_words_and_drop_empty_panels(tmp_path):
    from biasprobe.figures.comparison import comparison_figure
    from biasprobe.figures.jacobian import jacobian_figure, side_by_side_figure

    unet = bp.load(tiny_checkpoint(tmp_path / "a.pt", "unet-bf"))
    whole_frame = bp.jacobian(unet, torch.rand(1, 1, 8, 8), [0.1], support="frame")  # κ is undefined: a = 1
    assert gahb_summary(whole_frame).confinement_excess.isnull().all()
    texts = figure_texts(jacobian_figure(whole_frame))
    assert any("κ undefined (Ω = frame)" in text for text in texts)
    assert not any("nan" in text.lower() for text in texts), texts
    texts = figure_texts(side_by_side_figure({"a": whole_frame, "b": whole_frame}))
    assert any("κ undefined (Ω = frame)" in text for text in texts)
    assert not any("nan" in text.lower() for text in texts), texts
    other = bp.load(tiny_checkpoint(tmp_path / "b.pt", "unet-bf", seed=1))
    test = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    unets = bp.compare(unet, other, test, (None, None), top_k=4)
    texts = figure_texts(comparison_figure(unets))
    assert "mean_distance" not in unets and not any("attention" in text or "not available" in text for text in texts)
    assert len(comparison_figure(unets).axes) == 1  # the spectrum alone: no gap, no attention, no samples


def test_terminal_bars_nest_and_close(monkeypatch, capsys):
    monkeypatch.setattr(progress, "is_terminal", lambda: True)
    with progress.stage("[1/1] demo"), progress.task("outer", 2, unit="images") as outer:
        for _ in range(2):
            with progress.task("inner", 3, unit="products") as inner:
                inner(3, status="resid 1e-3")
                progress.note("wrote x.zarr")
            outer()
        assert progress._live is not None and len(progress._live.tasks) == 1  # the inner bars are gone
        assert progress._live.tasks[0].fields["unit"] == "images"
    assert progress._live is None
    err = capsys.readouterr().err
    assert "wrote x.zarr" in err and "[1/1] demo: outer" in err


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_terminal_bars_keep_their_numbers_whole_at_any_width(monkeypatch, width):
    """A long description is cut, never the count, the percentage or the time left (issue 27)."""
    import io

    from rich.console import Console
    from rich.progress import Task

    monkeypatch.setattr(progress, "is_terminal", lambda: True)
    monkeypatch.setattr(Task, "time_remaining", property(lambda task: 83.0))
    long = "denoising 100 train and 100 test images at 5 noise levels of the training set"
    with progress.stage("[1/4] gap unet-bf-n10000-s1 (2/6)"), progress.task(long, 1000, unit="batches") as outer:
        outer(37)
        with progress.task("image 1/2, σ = 0.1", 1024, unit="products") as inner:
            inner(384, status="resid 1e-3")
            screen = io.StringIO()
            Console(file=screen, width=width, color_system=None).print(progress._live.make_tasks_table(progress._live.tasks))
    lines = screen.getvalue().splitlines()
    assert len(lines) == 2 and max(len(line) for line in lines) <= width, lines
    if width >= 80:
        assert lines[0].rstrip().endswith("37/1000 batches (4%, 0:00 elapsed, ~1:23 left)"), lines
        assert lines[1].rstrip().endswith("384/1024 products (38%, 0:00 elapsed, ~1:23 left), resid 1e-3"), lines
    else:  # too narrow for every number: the count and the time left stay
        assert lines[0].rstrip().endswith(" 37/1000 ~1:23 left") and lines[1].rstrip().endswith(" 384/1024 ~1:23 left"), lines
    assert lines[0].startswith("[1/4]") and ("…" in lines[0]) == (width < 200)


def test_messages_print_numbers_as_numbers_and_top_k_zero_says_its_range(tmp_path):
    from biasprobe.errors import InputError

    denoiser = bp.load(tiny_checkpoint(tmp_path / "m.pt", "unet-bf"))
    with pytest.raises(InputError) as caught:
        bp.jacobian(denoiser, torch.rand(1, 1, 8, 8), [-0.1, 0.2])
    assert "got -0.1 (in [-0.1, 0.2])" in str(caught.value) and "np." not in str(caught.value)
    for method in ("randomized", "dense"):
        with pytest.raises(InputError, match="between 1 and 64, got 0"):
            bp.jacobian(denoiser, torch.rand(1, 1, 8, 8), [0.1], top_k=0, method=method)


def test_a_fresh_interpreter_finds_analyses_by_name_despite_lazy_imports():
    code = ("import pickle, sys; from biasprobe.analyses.base import registered; "
            "a = registered('locality'); print(a.__name__, 'torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.split() == ["locality", "True"]


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """The demo's zoo as tiny 8×8 checkpoints of the same families, names and subsets (12-layer DiTs, as
    the demo's tables need), random images, two gap noise levels and short sampler runs."""
    from biasprobe import demo, zoo

    specs = {"unet-bf-n10": ("unet-bf", 10, "s1", {}), "unet-bf-n10000-s1": ("unet-bf", 10000, "s1", {}),
             "unet-bf-n10000-s2": ("unet-bf", 10000, "s2", {}), "dit-n10": ("dit", 10, "s1", {}),
             "dit-n1000": ("dit", 1000, "s1", {}), "dit-n10000": ("dit", 10000, "s1", {}),
             "dit-local-n1000": ("dit", 1000, "s1", {"windows": [3, 5, 7, 9, 11, 13] + [None] * 6})}
    assert set(specs) >= {*demo.JACOBIAN_MODELS, *demo.LOCALITY_MODELS, *demo.TWO_MODELS}
    paths = {}
    for seed, (name, (family, n, subset, overrides)) in enumerate(specs.items()):
        if family == "dit":
            overrides = {"depth": 12, "width": 8, "heads": 1, "patch_size": 1, **overrides}
        paths[name] = tiny_checkpoint(tmp_path / f"{name}.pt", family, image_size=8, seed=seed, **overrides)
    images = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(zoo, "manifest", lambda: [{"name": name, "family": family, "n_train": n, "subset": subset}
                                                  for name, (family, n, subset, _) in specs.items()])
    monkeypatch.setattr(zoo, "load_checkpoint", lambda name, device=None: bp.load(paths[name], device=device))
    monkeypatch.setattr(zoo, "evaluation_images", lambda part: images[{"train_s1": 0, "train_s2": 4, "test": 8}[part]:][:4])
    for plan in ("QUICK", "FULL"):
        monkeypatch.setattr(demo, plan, dataclasses.replace(getattr(demo, plan), gap_sigmas=(0.05, 0.2)))
    from biasprobe.reports import folder
    from biasprobe.training import samplers

    monkeypatch.setattr(folder, "DPI", 20)

    sample = samplers.sample  # an untrained blind UNet's ascent would run to its 2000-iteration cap
    monkeypatch.setattr(samplers, "sample", lambda *args, **options: sample(*args, **{"max_iterations": 20, **options}))
    return specs


@pytest.mark.slow
def test_demo_runs_end_to_end_into_its_own_folder_and_refuses_a_users(tiny_zoo, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = run_cli("demo", "--out", mine, "--per-split", "2", "--device", "cpu")
    assert result.returncode == 1 and "did not write" in result.stderr and "--out" in result.stderr
    assert sorted(path.name for path in mine.iterdir()) == ["notes.txt"]

    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--full", "--per-split", "2", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    for stage_number, stage_name in enumerate(("gap", "Jacobian", "attention", "two-model test"), 1):
        assert f"[{stage_number}/4] {stage_name} " in result.stderr
    written = {line.removeprefix("wrote ").strip() for line in result.stderr.splitlines() if line.startswith("wrote ")}
    files = {str(path) for path in out.iterdir() if not path.name.startswith(".")}
    assert files == written and len(files) == 7 + 4 + 4 + 1 + 2 * (3 + 4 + 4) + 2
    index = (out / "index.md").read_text()
    assert all(f"| {name} |" in index for name in tiny_zoo) and "nan" not in index.lower()
    assert "minutes on a machine with" in index and (out / "index.html").read_text().count("<img ") == 11
    assert bp.open(out / "gap-dit-n10.zarr").attrs["analysis"] == "gap"


def test_help_reflows_paragraphs_and_keeps_bracketed_words(monkeypatch):
    """Docstring paragraphs are reflowed to the terminal (not broken where the source breaks them), and
    words in brackets such as the recipe's [defaults] table are shown, not taken for style tags."""
    monkeypatch.setenv("COLUMNS", "200")
    paper = " ".join(run_cli("report", "paper", "--help").stdout.split())
    lines = run_cli("report", "paper", "--help").stdout.splitlines()
    assert "reuses the cached store of each analysis (same checkpoint sha256 and parameters)" in paper
    assert any("(same checkpoint sha256" in line for line in lines)  # one line at 200 columns
    assert "[defaults]" in run_cli("sweep", "train", "--help").stdout


@pytest.mark.slow
def test_demo_stores_name_their_images_and_checkpoints_resolve_from_anywhere(tiny_zoo, tmp_path, monkeypatch):
    """Issue 27: which shipped images each demo store used (not only 0, 1), and the checkpoint path as
    given plus resolved, so that a store read elsewhere still finds its checkpoint."""
    from biasprobe.demo import FULL, run_demo

    run_demo(tmp_path / "demo", plan=FULL, k=2, progress=False)
    jacobian_store = bp.open(tmp_path / "demo" / "jacobian-unet-bf-n10.zarr")
    assert list(jacobian_store.image_source.values) == ["fashion-mnist-eval.npz:test[0]", "fashion-mnist-eval.npz:test[1]"]
    gap_store = bp.open(tmp_path / "demo" / "gap-unet-bf-n10000-s2.zarr")
    assert gap_store.image_source.sel(split="train").values.tolist() == [
        "fashion-mnist-eval.npz:train_s2[0]", "fashion-mnist-eval.npz:train_s2[1]"]
    assert bp.open(tmp_path / "demo" / "locality-dit-n10.zarr").image_source.values[0] == "fashion-mnist-eval.npz:test[0]"
    monkeypatch.chdir(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path / "m.pt", "unet-bf")
    relative = bp.jacobian(bp.load("m.pt"), torch.rand(1, 1, 8, 8), [0.1], top_k=2, method="randomized")
    assert relative.attrs["checkpoint"] == "m.pt" and relative.attrs["checkpoint_resolved"] == str(checkpoint.resolve())


@pytest.mark.slow
def test_quick_demo_judges_the_shipped_memorizer_as_the_jacobian_command_does(tmp_path, monkeypatch, capsys,
                                                                              every_line):
    """Issue 27: the quick demo's Jacobian verdicts come from the stores `biasprobe jacobian` writes (the
    memorization diagnostics from the checkpoint's training set, three σ), so the shipped memorizer
    unet-bf-n10 is called memorizing at every σ; the page says what was run and that --full runs the
    long version; one progress line follows the whole demo with the time left. (Real checkpoints, the
    demo cut to the memorizer's Jacobian, one DiT's attention and a few images.)"""
    from biasprobe import demo, zoo
    from biasprobe.analyses.harmonic import CATEGORIES, gahb_summary

    kept = {"unet-bf-n10", *demo.TWO_MODELS, "dit-n10"}
    entries = [entry for entry in zoo.manifest() if entry["name"] in kept]
    monkeypatch.setattr(zoo, "manifest", lambda: entries)
    monkeypatch.setattr(demo, "LOCALITY_MODELS", ("dit-n10",))
    plan = dataclasses.replace(demo.QUICK, jacobian_models=("unet-bf-n10",), locality_images=2, compare_samples=2)
    monkeypatch.setattr(demo, "QUICK", plan)

    index = demo.run_demo(tmp_path / "demo", plan=plan, k=4)
    store = bp.open(tmp_path / "demo" / "jacobian-unet-bf-n10.zarr")
    assert store.sizes["sigma"] >= 3 and "memorization_score" in store
    assert list(gahb_summary(store).verdict.values) == [CATEGORIES[1]] * store.sizes["sigma"]

    page = index.read_text()
    table = page[page.index("| unet-bf-n10 | dense |"):].splitlines()[: store.sizes["sigma"]]
    assert all(row.rstrip(" |").split("|")[-1].strip().startswith("memorizing") for row in table), table
    assert "split:" not in "".join(table) and "not harmonic" not in "".join(table)
    for words in ("quick demo", "σ = 0.05, 0.1, 0.2", "unet-bf dense", "dit randomized top-96", "one test image",
                  "4 test images", "`biasprobe demo --full` runs the long version", "recorded training set"):
        assert words in page, words
    overall = [line for line in capsys.readouterr().err.splitlines() if "biasprobe demo (quick), all 4 stages" in line]
    assert any(" left)" in line for line in overall) and "(100%" in overall[-1]
