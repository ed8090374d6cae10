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
