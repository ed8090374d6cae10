"""The report folder's cache pruning removes only its own stale stores, never what lies outside ``stores/``."""

import json

from biasprobe.reports.folder import MARK, ReportFolder


def test_pruning_removes_unused_stores_only_inside_stores_and_never_follows_links(tmp_path):
    folder = tmp_path / "report"
    (folder / "stores").mkdir(parents=True)
    for name in ("used.zarr", "stale.zarr"):
        (folder / "stores" / name).mkdir()
        (folder / "stores" / name / "zarr.json").write_text("{}")
    (folder / "gap-demo.zarr").mkdir()  # a demo's result at the top level: not a cache
    shared = tmp_path / "shared-cache.zarr"
    shared.mkdir()
    (shared / "zarr.json").write_text("{}")
    (folder / "stores" / "linked.zarr").symlink_to(shared, target_is_directory=True)
    outside = tmp_path / "outside.zarr"
    outside.mkdir()
    marked = ["stores/used.zarr", "stores/stale.zarr", "stores/linked.zarr", "gap-demo.zarr", "../outside.zarr",
              "stores/../../outside.zarr", "", "stores/"]
    (folder / MARK).write_text(json.dumps({"written_by": "biasprobe report", "files": [], "stores": marked}))

    report = ReportFolder(folder)
    report.store_path("stores/used.zarr")
    assert report.prune_stores() == ["stores/linked.zarr", "stores/stale.zarr"]
    assert (folder / "stores" / "used.zarr" / "zarr.json").exists()
    assert not (folder / "stores" / "stale.zarr").exists() and not (folder / "stores" / "linked.zarr").exists()
    assert (shared / "zarr.json").exists() and outside.is_dir() and (folder / "gap-demo.zarr").is_dir()
    assert "gap-demo.zarr" in json.loads((folder / MARK).read_text())["stores"]


def test_figures_are_saved_byte_for_byte_the_same_whatever_the_date_and_matplotlib(tmp_path, monkeypatch):
    """No creation date, no matplotlib version: redrawing unchanged stores leaves `git status` clean (issue 27)."""
    import re
    from pathlib import Path

    from matplotlib.figure import Figure

    from biasprobe import __version__
    from biasprobe.reports.folder import save_figure

    def drawn() -> Figure:
        figure = Figure(figsize=(2, 2))
        figure.subplots().plot([0, 1], [1, 0], label="a")
        return figure

    for fmt in ("pdf", "png", "svg"):
        saved = []
        for epoch in ("0", "1700000000"):  # matplotlib dates its files by SOURCE_DATE_EPOCH when it dates them
            monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
            saved.append(save_figure(drawn(), tmp_path / epoch / f"f.{fmt}").read_bytes())
        assert saved[0] == saved[1], fmt
        assert b"atplotlib v" not in saved[0] and b"matplotlib version" not in saved[0]
        assert f"biasprobe {__version__}".encode() in saved[0]
        assert not re.search(rb"CreationDate|ModDate|<dc:date>", saved[0]), fmt
    root = Path(__file__).resolve().parents[2]
    callers = [path.relative_to(root).as_posix() for folder in ("biasprobe", "cli") for path in (root / folder).rglob("*.py")
               if ".savefig(" in path.read_text()]
    assert callers == ["biasprobe/reports/folder.py"], callers  # the one place figures are written


def test_a_constrained_layout_is_saved_to_the_same_bytes_every_time(tmp_path):
    """Constrained layout lands a millionth of a point apart from one process to the next (its solver's
    constraints come in an order set by memory addresses), which Fig. 4's PDF showed on every other run
    (issue 27): a saved figure's positions are rounded to LAYOUT_DIGITS decimals, and stay there."""
    import glob
    from pathlib import Path

    import numpy as np

    import biasprobe as bp
    from biasprobe.figures.jacobian import jacobian_figure
    from biasprobe.reports.folder import LAYOUT_DIGITS, save_figure

    stores = Path(__file__).resolve().parents[2] / "reports" / "paper" / "stores"
    dataset = bp.open(sorted(glob.glob(str(stores / "jacobian-unet-bf-n10-s1-*.zarr.zip")))[0])
    saved = set()
    for n in range(3):
        figure = jacobian_figure(dataset)  # subfigures, colour bar, constrained layout
        saved.add(save_figure(figure, tmp_path / f"{n}.pdf", bbox_inches="tight").read_bytes())
        assert figure.get_layout_engine() is None or type(figure.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"
        for sub in figure.subfigs:
            points = sub.bbox_relative.get_points()
            np.testing.assert_allclose(points, np.round(points, LAYOUT_DIGITS), rtol=0, atol=1e-12)
    assert len(saved) == 1
