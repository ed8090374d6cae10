"""Comparing two checkpoints: the pairwise quantities have known answers for identical models."""

import json

import numpy as np
import pytest
import torch

import biasprobe as bp

from tests.conftest import run_cli, tiny_checkpoint


def test_a_model_compared_with_itself(tmp_path):
    d = bp.load(tiny_checkpoint(tmp_path / "a.pt", "dit"))
    other = bp.load(tiny_checkpoint(tmp_path / "b.pt", "dit", seed=1))
    g = torch.Generator().manual_seed(0)
    test, train = torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 1, 8, 8, generator=g)
    options = {"samples": 2, "sampler_steps": 5, "top_k": 8, "gap_sigmas": [0.1, 0.3]}
    same = bp.compare(d, d, test, (train, train), **options)
    assert float(same.eigenspace_overlap) == np.float32(1.0) or abs(float(same.eigenspace_overlap) - 1) < 1e-4
    np.testing.assert_allclose(same.sample_similarity.values, 1.0, atol=1e-9)
    np.testing.assert_allclose(same.gap.sel(checkpoint="A"), same.gap.sel(checkpoint="B"))
    assert same.mean_distance.dims == ("checkpoint", "layer")
    different = bp.compare(d, other, test, (train, train), **options)
    assert float(different.eigenspace_overlap) < 0.99
    assert different.attrs["checkpoint_b"].endswith("b.pt") and len(different.attrs["checkpoint_b_sha256"]) == 64
    # compared from stored results of each analysis: the same numbers, nothing recomputed
    from biasprobe.analyses.comparison import compare_results

    spectra = compare_results(*(bp.jacobian(m, test[:1], [0.1], top_k=8) for m in (d, other)))
    np.testing.assert_allclose(spectra.eigenvalue.values, different.eigenvalue.values)
    np.testing.assert_allclose(float(spectra.eigenspace_overlap), float(different.eigenspace_overlap))
    attention = compare_results(*(bp.locality(m, test, [0.1]) for m in (d, other)))
    np.testing.assert_allclose(attention.mean_distance.values, different.mean_distance.values)
    assert attention.attrs["compared"] == "locality" and attention.attrs["checkpoint_b"].endswith("b.pt")
    with pytest.raises(bp.InputError, match="two results of one analysis"):
        compare_results(bp.jacobian(d, test[:1], [0.1], top_k=8), bp.locality(d, test, [0.1]))


def test_compare_cli_writes_a_store_and_a_sheet(tmp_path):
    images = (np.random.default_rng(0).random((30, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "set.npz", train=images[:20], test=images[20:])
    for name, subset in (("a.pt", "s1"), ("b.pt", "s2")):
        result = run_cli("train", "dit", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--subset",
                         subset, "--n-train", "8", "--steps", "2", "--batch", "4", "--image-size", "8", "-o", tmp_path / name)
        assert result.returncode == 0, result.stderr
    common = ("compare", tmp_path / "a.pt", tmp_path / "b.pt", "--samples", "2", "--sampler-steps", "5",
              "--top-k", "8")
    result = run_cli(*common, "--per-split", "5", "--out", tmp_path / "cmp.zarr", "--figure", tmp_path / "figures" / "cmp.png")
    assert result.returncode == 0, result.stderr
    stored = bp.open(tmp_path / "cmp.zarr")
    assert list(stored.checkpoint.values) == ["A", "B"] and "sample_similarity" in stored
    assert (tmp_path / "figures" / "cmp.png").stat().st_size > 10_000
    old = run_cli(*common, "--out", tmp_path / "cmp", "--k", "5")  # the old folder --out and --k, deprecated
    assert old.returncode == 0 and "--out FOLDER is deprecated" in old.stderr and "--k is deprecated" in old.stderr
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    assert bp.open(tmp_path / "cmp" / "comparison.zarr").eigenspace_overlap == stored.eigenspace_overlap
    data = json.loads(run_cli(*common, "--per-split", "5", "--out", tmp_path / "cmp2.zarr", "--json").stdout)
    assert data["eigenspace_overlap"] == float(stored.eigenspace_overlap)  # same seeds, same numbers
    measures = {record["measure"]: record for record in data["measures"]}
    assert measures["average_gap"]["A"] == float(stored.average_gap.sel(checkpoint="A"))
    assert "mean_distance" in measures and data["written"][0].endswith("cmp2.zarr")
