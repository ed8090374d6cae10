"""The command line as a user meets it: help, new, info, and one-line errors."""

import torch

import biasprobe as bp
from biasprobe.denoiser import file_sha256

from .conftest import run_cli, run_cli_process


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
    assert d.network.config["width"] == 252 and d.network.config["heads"] == 4
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
    assert_one_line_error(run_cli("new", "dit", "--preset", "tiny", "--windows", "3,3,3,3,3", "-o", out), "4-layer")
    assert_one_line_error(run_cli("new", "unet-bf", "--windows", "3", "-o", out), "dit only")
    assert not out.exists()
