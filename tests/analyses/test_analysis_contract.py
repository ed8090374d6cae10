"""The analysis contract is code: checked when an analysis is defined and on every call."""

import pickle

import pytest
import torch
import xarray as xr

import biasprobe as bp
from biasprobe.analyses.base import ANALYSES, Analysis, analysis, registered
from biasprobe.errors import InputError


def test_every_public_analysis_is_registered_under_its_name():
    for name in ("jacobian", "locality", "gap", "memorization", "compare"):
        assert getattr(bp, name) is ANALYSES[name] is registered(name)
        assert isinstance(ANALYSES[name], Analysis)
        assert ANALYSES[name].__doc__ and ANALYSES[name].__name__ == name
    assert pickle.loads(pickle.dumps(bp.jacobian)) is bp.jacobian  # dask can ship analyses to workers


def test_definitions_that_break_the_contract_are_refused():
    with pytest.raises(TypeError, match="first parameter"):
        Analysis("bad", lambda images, *, seed=0, progress=False: None)
    with pytest.raises(TypeError, match="progress=False"):
        Analysis("bad", lambda denoiser, *, seed=0: None)
    with pytest.raises(TypeError, match="seed=0"):
        Analysis("bad", lambda denoiser, seed=0, *, progress=False: None)
    with pytest.raises(TypeError, match="already registered"):
        analysis("jacobian")(lambda denoiser, *, seed=0, progress=False: None)


def test_calls_check_the_denoiser_and_the_returned_dataset():
    identity = bp.Denoiser.wrap(lambda y, sigma: y, (1, 4, 4))
    with pytest.raises(InputError, match="analyses a biasprobe Denoiser"):
        bp.jacobian(lambda y, s: y, torch.zeros(1, 1, 4, 4), [0.1])
    no_provenance = Analysis("plain", lambda denoiser, *, seed=0, progress=False: xr.Dataset())
    with pytest.raises(TypeError, match="broke its contract"):
        no_provenance(identity)
    result = bp.jacobian(identity, torch.full((1, 1, 4, 4), 0.5), [0.1])
    assert result.attrs["analysis"] == "jacobian" and result.eigenvalue.values.max() == pytest.approx(1.0)
