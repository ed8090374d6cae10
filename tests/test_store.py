"""Atomic zarr stores with provenance."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import biasprobe as bp
from biasprobe.store import STORE_VERSION, provenance


def make_dataset(value: float = 1.0) -> xr.Dataset:
    data = np.full((3, 4), value)
    return xr.Dataset(
        {"eigenvalue": (("sigma", "rank"), data)},
        coords={"sigma": [0.05, 0.1, 0.2], "rank": np.arange(4)},
        attrs=provenance(seed=3, device="cpu", command="test"),
    )


def test_round_trip_keeps_data_coords_and_provenance(tmp_path):
    ds = make_dataset(2.5)
    ds.sigma.attrs["units"] = "[0, 1] image scale"
    bp.save(ds, tmp_path / "r.zarr")
    back = bp.open(tmp_path / "r.zarr")
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.sigma.attrs["units"] == "[0, 1] image scale"
    for key in ("biasprobe_version", "command", "created", "seed", "device"):
        assert key in back.attrs
    assert back.attrs["seed"] == 3
    assert "biasprobe_complete" not in back.attrs


def test_saving_again_replaces_the_store(tmp_path):
    bp.save(make_dataset(1.0), tmp_path / "r.zarr")
    bp.save(make_dataset(7.0), tmp_path / "r.zarr")
    assert float(bp.open(tmp_path / "r.zarr").eigenvalue.max()) == 7.0
    assert [p.name for p in tmp_path.iterdir()] == ["r.zarr"]


KILLED_WRITER = """
import os, signal, sys
import numpy as np, xarray as xr
import biasprobe as bp
from biasprobe import store
stage = sys.argv[2]
if stage == "during-write":
    real = xr.Dataset.to_zarr
    def half_write(self, target, **kw):
        real(xr.Dataset({"a": ("x", np.zeros(3))}), target, **kw)    # something is on disk...
        os.kill(os.getpid(), signal.SIGKILL)                          # ...then the process dies
    xr.Dataset.to_zarr = half_write
else:  # killed right after the named step of the save
    def die(name):
        if name == stage:
            os.kill(os.getpid(), signal.SIGKILL)
    store._step = die
ds = xr.Dataset({"eigenvalue": ("rank", np.full(5, 9.0))})
bp.save(ds, sys.argv[1])
"""

STAGES = ["during-write", "written", "marked", "moved-old", "moved-new", "removed-old"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("existing", [False, True])
def test_killed_writer_leaves_old_store_or_new_and_next_run_cleans_up(tmp_path, stage, existing):
    """A SIGKILL after each step of a save, including between the two renames: the next open finds
    the old store or the new one (never none when one existed), and no hidden leftovers remain."""
    target = tmp_path / "r.zarr"
    if existing:
        bp.save(make_dataset(1.0), target)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(target), stage],
                            check=False)
    assert result.returncode == -9  # really killed
    # where the complete new store can be installed, it is; else the old one stays
    finished = stage in ("moved-old", "moved-new", "removed-old") or (stage == "marked" and not existing)
    if existing or finished:
        values = set(bp.open(target).eigenvalue.values.ravel())
        assert values == ({9.0} if finished else {1.0})
    else:
        with pytest.raises(bp.InputError, match="no biasprobe store"):
            bp.open(target)
    assert [p.name for p in tmp_path.iterdir() if p.name != "r.zarr"] == []  # leftovers recovered or removed
    bp.save(make_dataset(3.0), target)  # and the path works as usual afterwards
    assert float(bp.open(target).eigenvalue.max()) == 3.0


def test_open_missing_store_and_refuse_overwriting_a_non_store(tmp_path):
    with pytest.raises(bp.InputError, match="no biasprobe store"):
        bp.open(tmp_path / "nothing.zarr")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    with pytest.raises(bp.InputError, match="biasprobe did not write"):
        bp.save(make_dataset(), tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "precious"
    (tmp_path / "file.zarr").write_text("mine")
    with pytest.raises(bp.InputError, match="not a store folder"):
        bp.save(make_dataset(), tmp_path / "file.zarr")
    assert (tmp_path / "file.zarr").read_text() == "mine"


def test_a_foreign_zarr_store_is_kept_unless_overwrite(tmp_path):
    foreign = tmp_path / "theirs.zarr"
    xr.Dataset({"mine": ("x", np.arange(4.0))}).to_zarr(foreign, zarr_format=3)
    (foreign / "notes.txt").write_text("precious")
    with pytest.raises(bp.InputError, match="biasprobe did not write"):
        bp.save(make_dataset(), foreign)
    assert (foreign / "notes.txt").read_text() == "precious"
    with pytest.raises(bp.InputError, match="not a biasprobe store"):
        bp.open(foreign)
    bp.save(make_dataset(5.0), foreign, overwrite=True)
    assert float(bp.open(foreign).eigenvalue.max()) == 5.0
    (tmp_path / "empty.zarr").mkdir()  # an empty folder holds nothing to lose
    bp.save(make_dataset(), tmp_path / "empty.zarr")


def _set_root_attribute(path, key, value):
    import json

    metadata = json.loads((path / "zarr.json").read_text())
    metadata["attributes"][key] = value
    metadata.pop("consolidated_metadata", None)
    (path / "zarr.json").write_text(json.dumps(metadata))


def test_newer_or_damaged_store_versions_are_refused(tmp_path):
    target = tmp_path / "r.zarr"
    bp.save(make_dataset(), target)
    _set_root_attribute(target, "biasprobe_store_version", STORE_VERSION + 1)
    with pytest.raises(bp.InputError, match="newer biasprobe.*upgrade"):
        bp.open(target)
    _set_root_attribute(target, "biasprobe_store_version", "1")
    with pytest.raises(bp.InputError, match="not a whole number"):
        bp.open(target)


def test_deleted_chunks_are_detected(tmp_path):
    target = tmp_path / "r.zarr"
    bp.save(make_dataset(2.0), target)
    chunks = [p for p in (target / "eigenvalue").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert chunks
    chunks[0].unlink()
    with pytest.raises(bp.InputError, match="missing 1 chunk files"):
        bp.open(target)


def test_plain_xarray_opens_stores_without_warnings(tmp_path):
    import warnings

    bp.save(make_dataset(2.0), tmp_path / "r.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with xr.open_zarr(tmp_path / "r.zarr") as opened:
            assert float(opened.eigenvalue.max()) == 2.0


# ------------------------------------------------------------------------- the completion mark's place


def test_plain_xarray_shows_no_completion_mark_and_biasprobe_reads_the_store_as_complete(tmp_path):
    import zarr

    from biasprobe.store import check_store, is_marked_complete

    bp.save(make_dataset(2.0), tmp_path / "r.zarr")
    bp.save(make_dataset(2.0), tmp_path / "r.zarr.zip")
    with xr.open_zarr(tmp_path / "r.zarr") as folder, \
            xr.open_zarr(zarr.storage.ZipStore(tmp_path / "r.zarr.zip", mode="r")) as single:
        for plain in (folder, single):
            assert not any(key.startswith("biasprobe_complete") for key in plain.attrs)
            assert plain.attrs["biasprobe_store_version"] == STORE_VERSION == 2 and plain.attrs["seed"] == 3
            assert list(plain.data_vars) == ["eigenvalue"]
    for path in (tmp_path / "r.zarr", tmp_path / "r.zarr.zip"):
        assert is_marked_complete(path)
        check_store(path)  # the chunk counts the mark lists are all there
        assert float(bp.open(path).eigenvalue.max()) == 2.0
    mark = zarr.open_group(tmp_path / "r.zarr", mode="r")["_biasprobe"].attrs["complete"]
    assert mark == {"eigenvalue": 1, "sigma": 1, "rank": 1}


def test_a_store_without_its_mark_is_refused_as_incomplete(tmp_path):
    import shutil

    target = tmp_path / "r.zarr"
    bp.save(make_dataset(), target)
    _set_root_attribute(target, "biasprobe_complete", {"eigenvalue": 1})  # a root mark is not version 2's
    shutil.rmtree(target / "_biasprobe")
    with pytest.raises(bp.InputError, match="incomplete store"):
        bp.open(target)


def _write_version_1(dataset: xr.Dataset, path, *, versioned: bool = True, complete: bool = True):
    """A folder store as biasprobe wrote store version 1: the mark (and the version) in the root attributes."""
    import zarr

    from biasprobe.store import _chunk_counts

    dataset.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    attributes = {"biasprobe_complete": _chunk_counts(path)} if complete else {}
    if versioned:
        attributes["biasprobe_store_version"] = 1
    zarr.open_group(path, mode="r+").attrs.update(attributes)
    zarr.consolidate_metadata(path, zarr_format=3)


@pytest.mark.filterwarnings("ignore:.*[Cc]onsolidated metadata")
@pytest.mark.parametrize("versioned", [True, False], ids=["version-1", "before-the-version"])
def test_version_1_stores_are_read_and_checked_as_before(tmp_path, versioned):
    from biasprobe.store import is_marked_complete, pack

    old = tmp_path / "old.zarr"
    _write_version_1(make_dataset(5.0), old, versioned=versioned)
    assert is_marked_complete(old)
    back = bp.open(old)
    assert float(back.eigenvalue.max()) == 5.0 and "biasprobe_complete" not in back.attrs
    xr.testing.assert_identical(bp.open(pack(old)), back)  # packed byte for byte: still version 1, still read
    bp.save(xr.open_zarr(old).load(), tmp_path / "again.zarr")  # read with plain xarray, written as version 2
    assert "biasprobe_complete" not in xr.open_zarr(tmp_path / "again.zarr").attrs
    next(p for p in (old / "eigenvalue").rglob("*") if p.is_file() and p.name != "zarr.json").unlink()
    with pytest.raises(bp.InputError, match="missing 1 chunk files"):
        bp.open(old)
    _write_version_1(make_dataset(), tmp_path / "cut.zarr", versioned=versioned, complete=False)
    assert not is_marked_complete(tmp_path / "cut.zarr")
    with pytest.raises(bp.InputError, match="incomplete store" if versioned else "not a biasprobe store"):
        bp.open(tmp_path / "cut.zarr")


def test_the_committed_paper_stores_are_version_1_and_read_as_complete():
    import json
    import zipfile
    from pathlib import Path

    from biasprobe.store import check_store, is_marked_complete

    stores = sorted((Path(__file__).parent.parent / "reports" / "paper" / "stores").glob("*.zarr.zip"))
    assert stores
    for path in stores:
        with zipfile.ZipFile(path) as archive:
            attributes = json.loads(archive.read("zarr.json"))["attributes"]
            assert "_biasprobe/zarr.json" not in archive.namelist()
        assert attributes["biasprobe_store_version"] == 1 and attributes["biasprobe_complete"]
        assert is_marked_complete(path)
        check_store(path)
    assert bp.open(stores[0]).attrs["recipe_key"] in stores[0].name


CONCURRENT_WRITER = """
import sys
import numpy as np, xarray as xr
import biasprobe as bp
value = float(sys.argv[2])
for _ in range(int(sys.argv[3])):
    bp.save(xr.Dataset({"eigenvalue": ("rank", np.full(5, value))}), sys.argv[1])
"""


def test_concurrent_writers_never_fail(tmp_path):
    target = tmp_path / "r.zarr"
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(target), str(v), "15"],
                                stderr=subprocess.PIPE, text=True) for v in (1, 2, 3)]
    errors = [w.communicate()[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0], errors
    values = set(bp.open(target).eigenvalue.values.ravel())
    assert len(values) == 1 and values <= {1.0, 2.0, 3.0}
    assert [p.name for p in tmp_path.iterdir()] == ["r.zarr"]


# ------------------------------------------------------------------------------ the single-file form


def test_a_zip_named_store_is_one_file_that_opens_like_the_folder(tmp_path):
    import zarr

    ds = make_dataset(2.5)
    bp.save(ds, tmp_path / "r.zarr")
    bp.save(ds, tmp_path / "r.zarr.zip")
    assert (tmp_path / "r.zarr.zip").is_file()
    folder, single = bp.open(tmp_path / "r.zarr"), bp.open(tmp_path / "r.zarr.zip")
    xr.testing.assert_identical(single, folder)
    assert "biasprobe_complete" not in single.attrs and single.attrs["seed"] == 3
    with xr.open_zarr(zarr.storage.ZipStore(tmp_path / "r.zarr.zip", mode="r")) as plain:  # plain xarray too
        assert float(plain.eigenvalue.max()) == 2.5
    bp.save(make_dataset(7.0), tmp_path / "r.zarr.zip")  # replaced in place
    assert float(bp.open(tmp_path / "r.zarr.zip").eigenvalue.max()) == 7.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr", "r.zarr.zip"]


def test_pack_turns_a_folder_store_into_the_same_store_in_one_file(tmp_path):
    from biasprobe.store import pack

    bp.save(make_dataset(4.0), tmp_path / "r.zarr")
    packed = pack(tmp_path / "r.zarr")
    assert packed == tmp_path / "r.zarr.zip" and (tmp_path / "r.zarr").is_dir()
    xr.testing.assert_identical(bp.open(packed), bp.open(tmp_path / "r.zarr"))
    first = packed.read_bytes()
    pack(tmp_path / "r.zarr")  # the same store gives the same bytes
    assert packed.read_bytes() == first
    with pytest.raises(bp.InputError, match="not a folder store"):
        pack(packed)


def test_a_damaged_or_foreign_single_file_is_refused_and_kept(tmp_path):
    import zipfile

    (tmp_path / "mine.zarr.zip").write_text("precious")
    with pytest.raises(bp.InputError, match="biasprobe did not write"):
        bp.save(make_dataset(), tmp_path / "mine.zarr.zip")
    assert (tmp_path / "mine.zarr.zip").read_text() == "precious"
    with pytest.raises(bp.InputError, match="unreadable"):
        bp.open(tmp_path / "mine.zarr.zip")
    (tmp_path / "dir.zarr.zip").mkdir()
    with pytest.raises(bp.InputError, match="not a store file"):
        bp.save(make_dataset(), tmp_path / "dir.zarr.zip")
    target = tmp_path / "r.zarr.zip"
    bp.save(make_dataset(2.0), target)
    with zipfile.ZipFile(target) as archive:  # a copy that lost one chunk file
        kept = [(info, archive.read(info)) for info in archive.infolist()
                if not (info.filename.startswith("eigenvalue/c") and info.filename.endswith("/0"))]
    with zipfile.ZipFile(target, "w") as archive:
        for info, data in kept:
            archive.writestr(info, data)
    with pytest.raises(bp.InputError, match="missing 1 chunk files"):
        bp.open(target)


@pytest.mark.parametrize("stage", ["during-write", "written", "marked", "packed", "moved-new"])
@pytest.mark.parametrize("existing", [False, True])
def test_killed_writer_of_a_single_file_leaves_the_old_file_or_the_new(tmp_path, stage, existing):
    target = tmp_path / "r.zarr.zip"
    if existing:
        bp.save(make_dataset(1.0), target)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(target), stage],
                            check=False)
    assert result.returncode == -9
    # one rename: before it the old file stays; a whole packed file with none to replace is installed
    finished = stage == "moved-new" or (stage == "packed" and not existing)
    if existing or finished:
        assert set(bp.open(target).eigenvalue.values.ravel()) == ({9.0} if finished else {1.0})
    else:
        with pytest.raises(bp.InputError, match="no biasprobe store"):
            bp.open(target)
    assert [p.name for p in tmp_path.iterdir() if p.name != "r.zarr.zip"] == []
    bp.save(make_dataset(3.0), target)
    assert float(bp.open(target).eigenvalue.max()) == 3.0
