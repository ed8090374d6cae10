"""Atomic zarr stores with provenance."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import biasprobe as bp
from biasprobe.store import provenance


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
import numpy as np, xarray as xr, zarr
import biasprobe as bp
stage = sys.argv[2]
if stage == "during-write":
    real = xr.Dataset.to_zarr
    def half_write(self, store, **kw):
        real(xr.Dataset({"a": ("x", np.zeros(3))}), store, **kw)     # something is on disk...
        os.kill(os.getpid(), signal.SIGKILL)                          # ...then the process dies
    xr.Dataset.to_zarr = half_write
else:  # killed after the data is written, before the completion mark
    real = zarr.open_group
    def open_then_die(store, mode="a", **kw):
        if mode == "r+":                                              # the completion mark
            os.kill(os.getpid(), signal.SIGKILL)
        return real(store, mode=mode, **kw)
    zarr.open_group = open_then_die
ds = xr.Dataset({"eigenvalue": ("rank", np.full(5, 9.0))})
bp.save(ds, sys.argv[1])
"""


@pytest.mark.parametrize("stage", ["during-write", "before-mark"])
@pytest.mark.parametrize("existing", [False, True])
def test_killed_writer_leaves_old_store_or_none(tmp_path, stage, existing):
    target = tmp_path / "r.zarr"
    if existing:
        bp.save(make_dataset(1.0), target)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(target), stage])
    assert result.returncode == -9  # really killed
    if existing:
        assert float(bp.open(target).eigenvalue.max()) == 1.0  # the old store, intact
    else:
        assert not target.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "r.zarr"]
    assert leftovers, "the killed writer should have left its hidden temporary folder"
    for leftover in leftovers:
        with pytest.raises(bp.InputError, match="incomplete|no biasprobe store"):
            bp.open(leftover)


def test_open_missing_store_and_refuse_overwriting_a_non_store(tmp_path):
    with pytest.raises(bp.InputError, match="no biasprobe store"):
        bp.open(tmp_path / "nothing.zarr")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("precious")
    with pytest.raises(bp.InputError, match="not a zarr store"):
        bp.save(make_dataset(), tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "precious"
