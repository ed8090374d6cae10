"""What a newcomer tripped over on a first use (issue 27): each wrong file, folder or argument is one
line that says what to do, in the command line and in the library's own error types."""

import pytest
import torch

import biasprobe as bp
from biasprobe.errors import CheckpointError
from biasprobe.formats import supported

from .conftest import run_cli, tiny_checkpoint
from tests.cli.test_command_line import assert_one_line_error


@pytest.mark.parametrize("name, contents", [("notes.txt", b"hello, this is no checkpoint\n"),
                                            ("picture.pt", b"\x89PNG\r\n\x1a\n" + bytes(100))])
def test_a_file_of_another_kind_is_refused_with_the_supported_formats(tmp_path, name, contents):
    (tmp_path / name).write_bytes(contents)
    shown = run_cli("info", tmp_path / name)
    assert_one_line_error(shown, "is neither a zip archive nor a pickle")
    line = shown.stderr.strip()
    assert not line.rstrip(")").endswith(": 101") and all(what in line for what in supported().values())
    with pytest.raises(CheckpointError, match="Supported: "):
        bp.load(tmp_path / name)


@pytest.fixture
def gap_store():
    """A real store the paper report committed (a DiT's generalization gap)."""
    from pathlib import Path

    return next((Path(__file__).resolve().parents[1] / "reports" / "paper" / "stores").glob("gap-dit-n10-*.zarr.zip"))


def test_report_into_a_folder_it_cannot_write_is_one_line_naming_the_flag(tmp_path, monkeypatch, gap_store):
    import os

    locked = tmp_path / "read-only"
    locked.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path).startswith(str(locked))
                        and mode & os.W_OK else access(path, mode, **kw))  # a read-only file system, even for root
    for out in (locked / "report", locked):
        shown = run_cli("report", gap_store, "--out", out)
        assert_one_line_error(shown, f"--out cannot be written: no permission to write in {locked}")
        assert "OSError" not in shown.stderr and not (locked / "report").exists()


def test_a_picture_given_to_report_is_told_to_give_a_store(tmp_path):
    from pathlib import Path

    picture = Path(__file__).resolve().parents[1] / "data" / "images" / "camera-32.png"
    shown = run_cli("report", picture, "--out", tmp_path / "r")
    assert_one_line_error(shown, "is a file, not a biasprobe store: give a store that an analysis wrote")
    assert "--out" not in shown.stderr  # not: "run an analysis with --out camera-32.png first"


def test_a_data_dir_without_the_data_set_is_an_error_not_a_silent_fall_back(tmp_path):
    from biasprobe import data
    from biasprobe.errors import InputError

    with pytest.raises(InputError, match=r"Fashion-MNIST not found in .*nowhere .*: pass as data_dir= the folder"):
        data.load("fashion-mnist", "test", 2, data_dir=tmp_path / "nowhere")
    checkpoint = tiny_checkpoint(tmp_path / "m.pt", "unet-bf")
    shown = run_cli("gap", checkpoint, "--data", "fashion-mnist", "--n-train", "10", "--per-split", "2",
                    "--data-dir", tmp_path / "nowhere",
                    "--out", tmp_path / "g.zarr")
    assert_one_line_error(shown, f"Fashion-MNIST not found in {tmp_path / 'nowhere'}")
    assert "pass as --data-dir the folder" in shown.stderr and "leave out --data-dir" in shown.stderr
    assert data.load("fashion-mnist", "test", 2).shape == (2, 1, 32, 32)  # without one: the installed copy


def test_a_colour_picture_read_by_a_grey_model_is_said_to_be_converted(tmp_path):
    from pathlib import Path

    from biasprobe.images import ColourConversionWarning, read_image

    pictures = Path(__file__).resolve().parents[1] / "data" / "images"
    with pytest.warns(ColourConversionWarning, match="chelsea-32.png is a colour picture; .* converted to grey"):
        read_image(pictures / "chelsea-32.png", (1, 32, 32))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ColourConversionWarning)
        read_image(pictures / "chelsea-grey-32.png", (1, 32, 32))  # grey stays silent
        read_image(pictures / "chelsea-32.png", (3, 32, 32))  # colour for a colour model too
    checkpoint = tiny_checkpoint(tmp_path / "m.pt", "unet-bf", image_size=32)
    shown = run_cli("jacobian", checkpoint, "--image", pictures / "chelsea-32.png", "--top-k", "2", "--method",
                    "randomized", "--no-memorization", "--out", tmp_path / "j.zarr")
    assert shown.returncode == 0, shown.stderr
    assert any(line.startswith("Warning: ") and "converted to grey (ITU-R 601 luma)" in line
               for line in shown.stderr.splitlines()), shown.stderr


def test_a_store_with_a_truncated_chunk_is_the_library_error_naming_the_variable(tmp_path, gap_store):
    import zipfile

    from biasprobe.errors import InputError

    damaged = tmp_path / "damaged.zarr"
    with zipfile.ZipFile(gap_store) as archive:  # the committed single-file store, as a folder
        archive.extractall(damaged)
    chunk = next(path for path in sorted((damaged / "gap").rglob("*")) if path.is_file() and path.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    with pytest.raises(InputError, match=r"damaged\.zarr is damaged: the data of gap cannot be read \(.*\); run the "
                                         r"analysis again"):
        bp.open(damaged)


def test_figures_given_another_analysis_store_name_what_they_draw(gap_store):
    from biasprobe.errors import InputError
    from biasprobe.figures.comparison import comparison_figure
    from biasprobe.figures.generalization import gap_figure, nearest_figure
    from biasprobe.figures.jacobian import harmonic_figure, jacobian_figure, side_by_side_figure, spectrum_figure
    from biasprobe.figures.locality import attention_maps_figure, locality_figure, locality_profile_figure

    gap = bp.open(gap_store)
    for draw, wanted in ((jacobian_figure, "jacobian"), (spectrum_figure, "jacobian"), (harmonic_figure, "jacobian"),
                         (lambda s: side_by_side_figure({"a": s, "b": s}), "jacobian"),
                         (locality_figure, "locality"), (attention_maps_figure, "locality"),
                         (locality_profile_figure, "locality"), (nearest_figure, "memorization"),
                         (comparison_figure, "compare")):
        with pytest.raises(InputError, match=f"this store holds the gap analysis; this figure draws stores of {wanted}"):
            draw(gap)
    gap_figure(gap_store)  # its own figure draws it
    with pytest.raises(InputError, match="holds the gap analysis"):
        jacobian_figure(gap_store)  # a path too


def test_saving_under_a_file_is_the_library_error(tmp_path, gap_store):
    from biasprobe.errors import InputError

    (tmp_path / "afile").write_text("mine")
    for path in (tmp_path / "afile" / "x.zarr", tmp_path / "afile" / "deeper" / "x.zarr"):
        with pytest.raises(InputError, match=f"{tmp_path / 'afile'} is a file, not a folder"):
            bp.save(bp.open(gap_store), path)
    assert (tmp_path / "afile").read_text() == "mine"


def test_report_of_a_one_image_jacobian_says_adaptivity_is_undefined_not_nan(tmp_path):
    denoiser = bp.load(tiny_checkpoint(tmp_path / "m.pt", "unet-bf"))
    store = bp.save(bp.jacobian(denoiser, torch.rand(1, 1, 8, 8), [0.1]), tmp_path / "j.zarr")
    page = bp.report([store], tmp_path / "report").index.read_text()
    row = next(line for line in page.splitlines() if "harmonicity" in line)
    assert "adaptivity undefined (one image)" in row and "nan" not in row.lower(), row
    two = bp.save(bp.jacobian(denoiser, torch.rand(2, 1, 8, 8), [0.1]), tmp_path / "j2.zarr")
    assert "adaptivity 0." in bp.report([two], tmp_path / "report2").index.read_text()


@pytest.mark.parametrize("done, unfinished", [(8867, True), (10000, False)])
def test_info_says_plainly_when_a_model_is_unfinished(tmp_path, done, unfinished):
    import json

    from biasprobe.checkpoints import Checkpoint, save_checkpoint
    from biasprobe.models import build_model, preset_config

    network = build_model("unet-bf", **preset_config("unet-bf", "tiny"))
    path = save_checkpoint(Checkpoint.from_network(network, (1, 8, 8), {"steps": 10000, "steps_done": done}),
                           tmp_path / "m.pt") or tmp_path / "m.pt"
    shown = run_cli("info", path).stdout
    trained = " ".join(shown[shown.index("trained "):].split())
    if unfinished:
        assert trained.startswith("trained UNFINISHED: 8,867 of its 10,000 planned steps (89%)"), shown
    else:
        assert trained.startswith("trained finished: all 10,000 planned steps"), shown
    assert json.loads(run_cli("info", path, "--json").stdout)["unfinished"] is unfinished
