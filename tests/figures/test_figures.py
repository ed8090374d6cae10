"""The rules every figure function follows: σ by value, labels from attrs, a root Figure returned."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import biasprobe as bp
from biasprobe.figures import generalization, jacobian, locality
from biasprobe.figures.base import at_sigma, label

from tests.conftest import tiny_checkpoint


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


def _extents(figure):
    """Every visible text and legend of ``figure`` with its drawn extent (pixels), after a draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    texts = [t for t in figure.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_window_extent"))
             if t.get_visible() and t.get_text()]
    legends = [a.get_legend() for a in figure.findobj(lambda a: hasattr(a, "get_legend")) if a.get_legend()]
    return renderer, texts, legends


@pytest.fixture
def four_levels(tmp_path):
    denoiser = bp.load(tiny_checkpoint(tmp_path / "m.pt", "unet-bf"))
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return bp.jacobian(denoiser, images, [0.05, 0.1, 0.2, 0.4])


def test_jacobian_figure_shows_the_clean_image_a_colour_scale_and_says_what_s_is(four_levels):
    """Issue 27: the clean image is shown, the eigenvectors have a colour scale, the spectrum's axes say
    what S is."""
    figure = jacobian.jacobian_figure(four_levels)
    titles = [axis.get_title() for axis in figure.axes]
    clean = next((axis for axis in figure.axes if axis.get_title() == "clean x"), None)
    assert clean is not None, titles
    np.testing.assert_allclose(clean.images[0].get_array(), four_levels.clean.isel(image=0, channel=0).values)
    assert any(title.startswith("λ0 = ") for title in titles), titles
    bars = [axis for axis in figure.axes if axis.get_ylabel() == "e_k / max|e_k|"]
    assert len(bars) == 1 and tuple(bars[0].get_ylim()) == (-1.0, 1.0)
    labels = " ".join(axis.get_xlabel() + " " + axis.get_ylabel() for axis in figure.axes)
    assert "S = (J + Jᵀ)/2" in labels and "every computed" not in labels, labels


def test_jacobian_figure_verdict_stays_inside_and_off_the_legends(four_levels, monkeypatch):
    """Issue 27: the verdict lines (four σ, the longest verdict: images split between two categories)
    neither run past the figure's edges nor cover a legend."""
    monkeypatch.setattr(jacobian, "verdict_line", lambda summary, s: "geometry-adaptive harmonic (1 geometry-adaptive "
                        "harmonic, 1 not harmonic)")
    figure = jacobian.jacobian_figure(four_levels)
    renderer, texts, legends = _extents(figure)
    verdicts = [t for t in texts if "ρ " in t.get_text() and "σ = " in t.get_text()]
    assert verdicts and legends
    whole = figure.bbox
    for text in verdicts:
        box = text.get_window_extent(renderer)
        assert whole.x0 - 1 <= box.x0 and box.x1 <= whole.x1 + 1 and box.y1 <= whole.y1 + 1, (box, whole)
        for legend in legends:
            assert not box.overlaps(legend.get_window_extent(renderer)), text.get_text()


def test_comparison_figure_has_units_the_shared_sigma_label_a_clear_legend_and_a_true_caption(tmp_path):
    """Issue 27: the gap axis in dB, σ labelled as in the other figures, the legend off every title, and a
    UNet comparison's caption that does not mention attention."""
    from biasprobe.figures.comparison import comparison_figure

    first = bp.load(tiny_checkpoint(tmp_path / "a.pt", "unet-bf"))
    second = bp.load(tiny_checkpoint(tmp_path / "b.pt", "unet-bf", seed=1))
    pictures = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    dataset = bp.compare(first, second, pictures[:3], (pictures[3:], pictures[3:]), top_k=4, samples=2,
                         sampler_steps=2, gap_sigmas=[0.1, 0.2])
    figure = comparison_figure(dataset)
    gap_axis = next(axis for axis in figure.axes if axis.get_title() == "generalization gap")
    assert gap_axis.get_ylabel().endswith("(dB)") and gap_axis.get_xlabel() == "noise level σ ([0, 1] scale)"
    assert gap_axis.get_xlabel() == label(bp.gap(first, pictures[3:], pictures[:3], [0.1]).sigma)  # as the gap figure
    renderer, texts, legends = _extents(figure)
    titles = [axis.title for axis in figure.axes if axis.get_title()]
    for legend in legends:
        for title in titles:
            assert not legend.get_window_extent(renderer).overlaps(title.get_window_extent(renderer)), title.get_text()
    report = bp.report([bp.save(dataset, tmp_path / "c.zarr")], tmp_path / "report").index.read_text()
    caption = next(line for line in report.splitlines() if line.startswith("Two checkpoints side by side"))
    assert "attention" not in caption and "gap" in caption and "samples" in caption, caption


def test_attention_maps_offer_the_papers_clip_and_unclipped_scales_and_say_which(tmp_path):
    from biasprobe.errors import InputError

    denoiser = bp.load(tiny_checkpoint(tmp_path / "d.pt", "dit", windows=[3, None, None, None]))
    dataset = bp.locality(denoiser, torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)), [0.1],
                          save_maps=True)
    expected = {"clip": ((0, 0.1), "clipped at 0.1 (An et al.)"), "full": ((0, 1), "/ max, unclipped"),
                "log": ((-3, 0), "log₁₀(")}
    for scale, (limits, words) in expected.items():
        figure = locality.attention_maps_figure(dataset, scale=scale)
        maps = [axis for axis in figure.axes if axis.images]
        assert all(axis.images[0].get_clim() == limits for axis in maps), scale
        bar = next(axis for axis in figure.axes if not axis.images and axis.get_ylabel())
        assert words in bar.get_ylabel(), bar.get_ylabel()
        assert locality.SCALES[scale] in figure._suptitle.get_text()
    top = next(axis for axis in locality.attention_maps_figure(dataset, scale="full").axes if axis.images)
    assert float(np.nanmax(top.images[0].get_array())) == 1.0  # the whole range: nothing above it, nothing clipped
    with pytest.raises(InputError, match="scale must be one of clip, full, log"):
        locality.attention_maps_figure(dataset, scale="linear")


def test_gap_bars_carry_the_standard_error_of_images_and_seeds_where_stores_have_it():
    """Stores since science v3 carry average_gap_sem: each bar gets ± combine_seeds' s.e.; older stores none."""
    import numpy as np
    import xarray as xr

    from biasprobe.figures.generalization import average_gap_bars_figure
    from biasprobe.statistics import combine_seeds

    def store(gap, sem=None):
        data = {"average_gap": ((), gap)}
        return xr.Dataset({**data, "average_gap_sem": ((), sem)} if sem is not None else data)

    runs = {"global N=100": [store(1.3, 0.12), store(1.1, 0.1), store(1.5, 0.11)], "local N=100": [store(1.0, 0.12)]}
    axis = average_gap_bars_figure(runs).axes[0]
    errors = [c for c in axis.containers if getattr(c, "errorbar", None) is not None]
    assert len(errors) == 2
    segments = errors[0].errorbar.lines[2][0].get_segments()
    expected = combine_seeds([1.3, 1.1, 1.5], [0.12, 0.1, 0.11]).se
    assert np.isclose(segments[0][1][1] - segments[0][0][1], 2 * expected)
    assert "s.e." in axis.get_ylabel()
    old = average_gap_bars_figure({"global N=100": [store(1.3)]}).axes[0]
    assert all(getattr(c, "errorbar", None) is None for c in old.containers) and old.get_ylabel() == "average gap (dB)"
