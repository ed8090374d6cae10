"""Reports over stores: every store kind renders, the index carries provenance, user files are safe."""

import itertools
import json

import numpy as np
import pytest
import torch
import xarray as xr

import biasprobe as bp
from biasprobe.reports.folder import MARK

from tests.conftest import run_cli, tiny_checkpoint


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One store of each kind biasprobe writes, from tiny DiTs (8×8 grey)."""
    root = tmp_path_factory.mktemp("stores")
    first = bp.load(tiny_checkpoint(root / "a.pt", "dit"))
    second = bp.load(tiny_checkpoint(root / "b.pt", "dit", seed=1))
    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 1, 8, 8, generator=g)
    results = {
        "gap": bp.gap(first, train, test, [0.05, 0.1, 0.2, 0.4]),
        "jacobian": bp.jacobian(first, test[:1], [0.1], top_k=16),
        "locality": bp.locality(first, test[:2], [0.1], save_maps=True),
        "memorization": bp.memorization(first, 3, train, steps=4),
        "compare": bp.compare(first, second, test, (train, train), samples=2, sampler_steps=4, top_k=8,
                              gap_sigmas=[0.1, 0.3]),
    }
    return {kind: bp.save(result, root / f"a.{kind}.zarr") for kind, result in results.items()}


def test_every_store_kind_renders_png_pdf_and_an_index(stores, tmp_path):
    written = []
    result = bp.report(stores.values(), tmp_path / "report", on_file=written.append)
    out = tmp_path / "report"
    for kind in stores:
        png = next(out.glob(f"a.{kind}*.png"))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2_000
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    page, html = result.index.read_text(), result.html.read_text()
    for kind, store in stores.items():
        sha = bp.open(store).attrs["checkpoint_sha256"]
        assert f"({kind})" in page and sha in page and sha in html
    assert page.count("![") == len(stores) and html.count("<img ") == len(stores)
    assert "biasprobe version" in page and "command" in page and "created" in page
    assert "average gap, a" in page and "eigenspace overlap" in page
    assert set(written) == set(result.files) and result.index in written
    assert len(written) == 2 * len(stores) + 2


def test_a_swept_store_draws_one_curve_per_checkpoint(stores, tmp_path):
    gap = bp.open(stores["gap"])
    swept = xr.concat([gap, gap + 1.0], dim="checkpoint").assign_coords(
        checkpoint=["dit-n10", "dit-n1000"], checkpoint_sha256=("checkpoint", ["a" * 64, "b" * 64]))
    swept.attrs = gap.attrs
    path = bp.save(swept, tmp_path / "sweep.gap.zarr")
    result = bp.report([path], tmp_path / "report")
    page = result.index.read_text()
    assert "average gap, dit-n10 |" in page and "average gap, dit-n1000 |" in page
    assert f"| checkpoint dit-n1000 sha256 | `{'b' * 64}` |" in page
    assert (tmp_path / "report" / "sweep.gap.png").exists()


def test_the_folder_of_a_user_is_never_written(stores, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = run_cli("report", stores["gap"], "--out", mine)
    assert result.returncode == 1 and "did not write" in result.stderr and "--out" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_a_report_folder_is_rewritten_keeping_the_users_files(stores, tmp_path):
    out = tmp_path / "report"
    bp.report([stores["gap"], stores["memorization"]], out)
    (out / "notes.txt").write_text("keep me")
    bp.report([stores["gap"]], out)  # rerun with fewer stores: the samples figure is stale
    assert (out / "notes.txt").read_text() == "keep me"
    assert not list(out.glob("a.memorization*")) and (out / "a.gap.png").exists()
    assert json.loads((out / MARK).read_text())["files"] == ["a.gap.png", "a.gap.pdf", "index.md", "index.html"]
    (out / "a.gap.png").unlink()
    (out / "a.gap.png").write_bytes(b"a user's picture")
    (out / MARK).write_text(json.dumps({"files": ["index.md", "index.html"]}))
    with pytest.raises(bp.InputError, match="was not written by biasprobe report"):
        bp.report([stores["gap"]], out)
    assert (out / "a.gap.png").read_bytes() == b"a user's picture"


def test_cli_prints_a_line_per_file_and_refuses_bad_input(stores, tmp_path):
    result = run_cli("report", stores["gap"], stores["jacobian"], "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("wrote ")]
    assert len(lines) == 6 and any("index.html" in line for line in lines)
    missing = run_cli("report", tmp_path / "nothing.zarr", "--out", tmp_path / "r2")
    assert missing.returncode == 1 and "no biasprobe store" in missing.stderr and not (tmp_path / "r2").exists()
    unknown = bp.open(stores["gap"])
    unknown.attrs["analysis"] = "mystery"
    path = bp.save(unknown, tmp_path / "mystery.zarr")
    refused = run_cli("report", path, "--out", tmp_path / "r3")
    assert refused.returncode == 1 and "mystery" in refused.stderr and "gap" in refused.stderr


def test_single_file_stores_render_as_their_folders_do(stores, tmp_path):
    from biasprobe.store import pack

    packed = [pack(stores[kind], tmp_path / f"a.{kind}.zarr.zip") for kind in ("gap", "jacobian")]
    folders = run_cli("report", stores["gap"], stores["jacobian"], "--out", tmp_path / "from-folders")
    files = run_cli("report", *packed, "--out", tmp_path / "from-files")
    assert folders.returncode == 0 and files.returncode == 0, files.stderr
    names = lambda folder: sorted(p.name for p in folder.iterdir())
    assert names(tmp_path / "from-files") == names(tmp_path / "from-folders")  # a.gap.png, not a.gap.zarr.png
    page = (tmp_path / "from-files" / "index.md").read_text()
    for folder, file in zip((stores["gap"], stores["jacobian"]), packed):  # the page names each store
        assert str(file) in page
        page = page.replace(str(file), str(folder))
    assert page == (tmp_path / "from-folders" / "index.md").read_text()


def test_the_page_escapes_html_and_keeps_code_spans():
    from biasprobe.reports.page import Table, Text, html_page, markdown

    blocks = [Text("a <b> & `x|y`"), Table(["k", "v"], [("a|b", "`c`")])]
    page = html_page(blocks, "t")
    assert "a &lt;b&gt; &amp; <code>x|y</code>" in page and "<td><code>c</code></td>" in page
    assert "| a\\|b | `c` |" in markdown(blocks)


def test_the_html_is_the_markdown_rendered_lists_links_and_tables_included():
    from biasprobe.reports.page import Heading, Picture, Table, Text, html_page

    blocks = [Heading("Claims"), Text('Rules:\n\n- **one** "q" [PDF](a.pdf)\n- two <script>'),
              Table(["k"], [("`a|b`",)]), Picture("f.png", "f.pdf", "the **gap**")]
    page = html_page(blocks, "t")
    assert "<h2>Claims</h2>" in page and "<p>Rules:</p>" in page
    assert '<li><strong>one</strong> &quot;q&quot; <a href="a.pdf">PDF</a></li>' in page
    assert "<li>two &lt;script&gt;</li>" in page and "<script>" not in page
    assert "<td><code>a|b</code></td>" in page
    assert '<figcaption>the <strong>gap</strong> (<a href="f.pdf">PDF</a>)</figcaption>' in page


def _visible_labels(axis):
    renderer = axis.figure.canvas.get_renderer()
    ticks = [*axis.xaxis.get_major_ticks(), *axis.xaxis.get_minor_ticks()]
    return [t.label1.get_window_extent(renderer) for t in ticks if t.label1.get_visible() and t.label1.get_text()]


def test_the_gap_figure_has_readable_log_ticks_and_legends_off_the_curves(stores):
    """Eight σ over 0.02 … 0.5 once printed overlapping minor labels, and the legends sat on the curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from biasprobe.figures.generalization import gap_figure

    gap = bp.open(stores["gap"])
    blind = bp.open(stores["gap"]).assign_coords(t=("sigma", np.full(gap.sizes["sigma"], np.nan)))  # no schedule
    figure = gap_figure({f"model {i}": blind + i for i in range(7)})
    FigureCanvasAgg(figure).draw()
    for axis in figure.axes:
        assert axis.get_xscale() == "log"
        boxes = sorted(_visible_labels(axis), key=lambda box: box.x0)
        assert len(boxes) >= 3 and all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))
        legend = figure.legends[0].get_window_extent()
        assert not legend.overlaps(axis.get_window_extent())
    assert not any(axis.get_legend() for axis in figure.axes)
    scheduled = gap_figure(gap)  # the tiny DiT has a schedule: Fig. 2's axis, the diffusion step
    assert all(axis.get_xlabel() == "diffusion step t" and axis.get_xscale() == "linear" for axis in scheduled.axes)


def test_several_stores_of_one_analysis_are_also_drawn_together(stores, tmp_path):
    other = bp.open(stores["gap"])
    other.attrs["checkpoint"] = "elsewhere/b.pt"
    second = bp.save(other, tmp_path / "b.gap.zarr")
    result = bp.report([stores["gap"], second, stores["jacobian"]], tmp_path / "report")
    page = result.index.read_text()
    assert "## All gap stores together" in page and "All jacobian" not in page
    assert (tmp_path / "report" / "all.gap.png").stat().st_size > 5_000


def test_every_registered_analysis_has_report_figures():
    from biasprobe.analyses.base import ANALYSES
    from biasprobe.reports import FIGURES, NUMBERS

    assert set(ANALYSES) <= set(FIGURES) and set(ANALYSES) <= set(NUMBERS)
