"""The rules every figure function follows: σ by value, labels from attrs, a root Figure returned."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import biasprobe as bp
from biasprobe.figures import generalization, jacobian, locality
from biasprobe.figures.base import at_sigma, label

from .conftest import tiny_checkpoint


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    unet = bp.load(tiny_checkpoint(folder / "bf.pt", "unet-bf"))
    dit = bp.load(tiny_checkpoint(folder / "dit.pt", "dit", windows=[3, None, None, None]))
    return {
        "jacobian": bp.jacobian(unet, images[:1], sigmas=[0.05, 0.2]),
        "gap": bp.gap(unet, images, images.flip(-1), sigmas=[0.05, 0.2]),
        "locality": bp.locality(dit, images, sigmas=[0.05, 0.2], save_maps=True),
    }


def test_sigma_is_a_value_everywhere_with_the_nearest_stored_level(stores):
    for dataset in stores.values():
        assert float(at_sigma(dataset, 0.2).sigma) == pytest.approx(0.2)
        assert float(at_sigma(dataset, 0.2005).sigma) == pytest.approx(0.2)  # within 1 %
        assert float(at_sigma(dataset, None).sigma) == pytest.approx(0.05)
        with pytest.raises(bp.InputError, match="no noise level sigma=0.1 in this store; it has 0.05, 0.2"):
            at_sigma(dataset, 0.1)
    j = stores["jacobian"]
    drawn = jacobian.eigenvector_figure(j, sigma=0.2)
    assert drawn._suptitle.get_text().endswith("σ = 0.2")
    assert "σ = 0.2" in locality.attention_maps_figure(stores["locality"], sigma=0.2)._suptitle.get_text()


def test_an_int_sigma_in_a_jacobian_figure_is_the_old_index_with_a_deprecation(stores):
    j = stores["jacobian"]
    with pytest.warns(DeprecationWarning, match=r"eigenvector_figure\(sigma=1\) reads an int as the old index.*0\.2"):
        old = jacobian.eigenvector_figure(j, sigma=1)
    assert old._suptitle.get_text() == jacobian.eigenvector_figure(j, sigma=0.2)._suptitle.get_text()
    with pytest.warns(DeprecationWarning):
        jacobian.side_by_side_figure({"a": j}, sigma=1)


def test_axis_and_colour_bar_labels_come_from_the_attrs(stores):
    j, gap, loc = stores["jacobian"], stores["gap"], stores["locality"]
    assert label(gap.mean_psnr) == "mean output PSNR (dB)" and label(gap.sigma) == "noise level σ ([0, 1] scale)"
    assert label(j["rank"]) == j["rank"].attrs["long_name"]  # no units: the long name alone
    assert label(loc["head"]) == "attention head"
    drawn = generalization.gap_figure(gap)
    labels = {axis.get_xlabel() for axis in drawn.axes} | {axis.get_ylabel() for axis in drawn.axes}
    assert {label(gap.mean_psnr), label(gap.gap)} <= labels
    assert label(gap.t) in labels or label(gap.sigma) in labels
    renamed = gap.assign(mean_psnr=gap.mean_psnr.assign_attrs(long_name="PSNR of D(y)", units="decibel"))
    assert "PSNR of D(y) (decibel)" in {axis.get_ylabel() for axis in generalization.gap_figure(renamed).axes}
    heads = locality.heads_figure(loc, "entropy")
    assert {axis.get_ylabel() for axis in heads.axes} >= {label(loc.layer), label(loc.entropy)}  # the colour bar's too
    assert label(loc["head"]) in {axis.get_xlabel() for axis in heads.axes}
    maps = locality.attention_maps_figure(loc)
    assert any(axis.get_ylabel().startswith(label(loc.attention_map)) for axis in maps.axes)
    spectrum = jacobian.spectrum_figure(j)
    assert (spectrum.axes[0].get_xlabel(), spectrum.axes[0].get_ylabel()) == (label(j["index"]), label(j.spectrum))


def test_every_figure_function_returns_its_root_figure(stores):
    j, gap, loc = stores["jacobian"], stores["gap"], stores["locality"]
    calls = [
        lambda figure: jacobian.eigenvector_figure(j, figure=figure),
        lambda figure: jacobian.spectrum_figure(j, figure=figure),
        lambda figure: jacobian.harmonic_figure(j, figure=figure),
        lambda figure: generalization.gap_figure(gap, figure=figure),
        lambda figure: locality.attention_maps_figure(loc, figure=figure),
        lambda figure: locality.locality_profile_figure(loc, figure=figure),
        lambda figure: locality.heads_figure(loc, figure=figure),
    ]
    for draw in calls:
        alone = draw(None)
        assert type(alone) is Figure
        parent = Figure()
        inside = draw(parent.subfigures(1, 2)[1])
        assert inside is parent
    for whole in (jacobian.jacobian_figure(j), locality.locality_figure(loc), jacobian.side_by_side_figure([j])):
        assert type(whole) is Figure
    assert np.isfinite(j.eigenvalue.values).all()
