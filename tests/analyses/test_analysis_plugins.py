"""An analysis is one object in one place: a toy analysis, defined in ONE module of a package that
registers it under the ``biasprobe.analyses`` entry points (as a third party would), shows up in the
public API, in sweeps, in ``biasprobe report`` (store -> figure and key numbers) and in the command
line's summary; a broken plug-in is warned about and skipped."""

import json
import sys
import textwrap

import numpy as np
import pytest
import torch

import biasprobe as bp
from biasprobe.analyses import base

from tests.conftest import tiny_checkpoint

TOY = '''
"""A toy analysis: the mean squared error of the denoiser at each image and noise level."""

import numpy as np
import torch
from matplotlib.figure import Figure

from biasprobe.analyses.base import StoreFigure, Sweep, analysis, base_dataset, noise_seed, prepare, with_provenance
from biasprobe.noise import noisy
from biasprobe.summary import Column, Table, number


def draw(parts):
    figure = Figure(figsize=(3, 2))
    axis = figure.subplots()
    for name, part in parts.items():
        axis.plot(part.sigma, part.squared_error.mean("image"), label=name)
    axis.legend()
    return figure


def numbers(parts):
    return [(f"toy mean squared error, {name}", f"{float(part.squared_error.mean()):.3e}") for name, part in parts.items()]


def summary(parts):
    records = [{"checkpoint": name, "sigma": float(sigma), "error": float(part.squared_error.sel(sigma=sigma).mean())}
               for name, part in parts.items() for sigma in part.sigma.values]
    return [Table("toy", records, [Column("checkpoint", "checkpoint", left=True), Column("sigma", "σ", number("g")),
                                   Column("error", "toy error", number(".3e"))], title="toy errors")]


@analysis("toy", public="toy_error", sweep=Sweep(needs_images=True), numbers=numbers, summary=summary,
          figures=[StoreFigure("toy", "The toy error against σ", draw, per_checkpoint=True)])
def toy(denoiser, images, sigmas=None, timesteps=None, *, seed=0, progress=False):
    """Mean squared error ‖D(y) − x‖²/d at y = x + σz for every image and σ."""
    images, sigma, steps = prepare(denoiser, images, sigmas, timesteps)
    error = np.zeros((len(images), len(sigma)))
    for i in range(len(images)):
        for j, level in enumerate(sigma):
            y = noisy(images[i : i + 1], float(level), noise_seed(seed, i, j))
            with torch.no_grad():
                error[i, j] = float(((denoiser.denoise(y, float(level)) - images[i : i + 1]) ** 2).mean())
    dataset = base_dataset(images, sigma, steps)
    dataset["squared_error"] = (("image", "sigma"), error, {"long_name": "mean squared error", "units": "1"})
    return with_provenance(dataset, denoiser, "toy", seed)
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A package on sys.path whose distribution registers ``toy`` (and a broken plug-in) as entry points."""
    site = tmp_path / "site"
    (site / "toy_biasprobe_plugin").mkdir(parents=True)
    (site / "toy_biasprobe_plugin" / "__init__.py").write_text(textwrap.dedent(TOY))
    info = site / "toy_biasprobe_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-biasprobe-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[biasprobe.analyses]\ntoy = toy_biasprobe_plugin\n"
                                           "broken = toy_biasprobe_plugin_missing\n")
    monkeypatch.syspath_prepend(str(site))
    base.registry.cache_clear()
    yield
    base.ANALYSES.pop("toy", None)
    sys.modules.pop("toy_biasprobe_plugin", None)
    vars(bp).pop("toy_error", None)
    base.registry.cache_clear()


def test_a_toy_analysis_in_one_module_reaches_api_sweep_report_and_cli(plugins, tmp_path, capsys):
    with pytest.warns(RuntimeWarning, match="plug-in broken .* could not be loaded and is skipped"):
        analyses = base.registry()
    assert "toy" in analyses and "broken" not in analyses and "jacobian" in analyses

    # the public API
    assert "toy_error" in bp.__all__ and "toy_error" in dir(bp)
    assert bp.toy_error is base.registered("toy")
    checkpoints = [tiny_checkpoint(tmp_path / f"m{seed}.pt", "unet-bf", seed=seed) for seed in (0, 1)]
    images = torch.rand(2, 1, 8, 8)
    single = bp.toy_error(bp.load(checkpoints[0]), images, [0.1, 0.3])
    assert single.squared_error.shape == (2, 2) and np.isfinite(single.squared_error).all()
    bp.save(single, tmp_path / "m0.toy.zarr")

    # sweeps
    assert "toy" in base.sweepable()
    swept = bp.sweep("toy", checkpoints, tmp_path / "toy.sweep.zarr", images, sigmas=[0.1, 0.3], workers=0,
                     device="cpu")
    from biasprobe.sweeps import select

    alone = select(bp.open(swept), "m0")
    np.testing.assert_allclose(alone.squared_error.values, single.squared_error.values, rtol=1e-6)

    # biasprobe report: the figure of each store and its key numbers
    result = bp.report([tmp_path / "m0.toy.zarr", swept], tmp_path / "report")
    names = {path.name for path in result.files}
    assert {"m0.toy.png", "toy.sweep.toy.png"} <= names
    page = result.index.read_text()
    assert "m0.toy (toy)" in page and "toy mean squared error, m0" in page and "toy mean squared error, m1" in page

    # the command line's summary, as tables and as JSON
    from biasprobe_cli.output import Report

    parts = {"m0": single}
    Report().show(bp.toy_error.summarize(parts))
    shown = capsys.readouterr().out
    assert "toy errors" in shown and "toy error" in shown and "m0" in shown
    as_json = Report(as_json=True)
    as_json.show(bp.toy_error.summarize(parts))
    as_json.finish()
    records = json.loads(capsys.readouterr().out)["toy"]
    assert [r["sigma"] for r in records] == pytest.approx([0.1, 0.3])


def test_without_the_plug_in_the_toy_analysis_is_nowhere():
    base.registry.cache_clear()
    assert "toy" not in base.registry() and "toy_error" not in bp.__all__
    with pytest.raises(AttributeError):
        bp.toy_error  # noqa: B018
