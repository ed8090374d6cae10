"""The paper recipe on a tiny zoo: it draws what the zoo has, names what it lacks, and caches its stores."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import xarray as xr

import biasprobe as bp
from biasprobe.denoiser import file_sha256
from biasprobe.reports.paper import PAPER, Settings, paper_report
from biasprobe.reports.zoo import VARIANTS, read_zoo

from tests.conftest import run_cli, tiny_checkpoint

SETTINGS = Settings(k=4, locality_images=2, samples=2, sampler_steps=3, memorizer_sigmas=(0.3, 1.0))


def make_zoo(folder):
    """Tiny 8×8 models on the synthetic c-alpha set: DiTs global and local at N = 10, bias-free UNet twins.

    How far each is trained: dit-n10 half-way and still falling (judged in the manifest), dit-local-n10
    finished and flat (judged from its record's loss curve), unet-bf-n10-s1 flat (manifest), unet-bf-n10-s2
    without a curve."""
    folder.mkdir()
    local = list(VARIANTS["local"])
    specs = [("dit-n10", "dit", {"depth": 6}, "s1"), ("dit-local-n10", "dit", {"depth": 6, "windows": local}, "s1"),
             ("unet-bf-n10-s1", "unet-bf", {}, "s1"), ("unet-bf-n10-s2", "unet-bf", {}, "s2")]
    trained = {"dit-n10": {"steps": 6000, "steps_done": 3000, "loss_change_last_20pct": -0.05,
                           "loss_change_se": 0.01, "plateau": False},
               "unet-bf-n10-s1": {"steps": 6000, "steps_done": 6000, "loss_change_last_20pct": 0.001,
                                  "loss_change_se": 0.002, "plateau": True}}
    steps = range(30, 6001, 30)
    record = {"name": "dit-local-n10", "steps": 6000, "steps_done": 6000, "warm_restarts": [],
              "loss_curve": [[s, 0.03 * (1 + 0.002 * (-1) ** (s // 30))] for s in steps]}  # flat
    (folder / "dit-local-n10.train.json").write_text(json.dumps(record))
    entries = []
    for seed, (name, family, config, subset) in enumerate(specs):
        path = tiny_checkpoint(folder / f"{name}.pt", family, seed=seed, **config)
        entries.append({"name": name, "file": path.name, "family": family, "config": config, "data": "c-alpha",
                        "n_train": 10, "subset": subset, "seed": 0, "sha256": file_sha256(path),
                        **trained.get(name, {})})
    (folder / "manifest.json").write_text(json.dumps({"checkpoints": entries}))
    return folder


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    zoo = make_zoo(root / "zoo")
    result = paper_report(zoo, root / "out", settings=SETTINGS, device="cpu")
    return zoo, root / "out", result


def test_the_zoo_variants_are_read_from_the_manifest(rendered):
    zoo, _, _ = rendered
    variants = {model.name: model.variant for model in read_zoo(zoo)}
    assert variants == {"dit-n10": "global", "dit-local-n10": "local", "unet-bf-n10-s1": "global",
                        "unet-bf-n10-s2": "global"}


def test_it_draws_what_the_zoo_has_and_names_what_it_lacks(rendered):
    _, out, result = rendered
    page = result.index.read_text()
    for item in PAPER:
        assert item.title in page
    for key in ("fig1", "fig2", "fig3", "fig4", "fig6", "twins"):  # the zoo has some of their models
        assert (out / f"{key}.png").exists() and (out / f"{key}.pdf").exists()
    for key in ("table2", "table3"):  # no model at the mid-range N = 10²
        assert not (out / f"{key}.png").exists()
    assert "**Not drawn: the zoo lacks** DiT N=100 (s1, 3 seeds)" in page
    assert "**Partial: the zoo lacks** DDPM UNet N=10 (s1)" in page  # fig2 without DDPM UNets
    assert "**Partial: the zoo lacks** DDPM UNet largest N (s1)" in page  # fig1 without a DDPM UNet
    assert "<strong>Partial: the zoo lacks</strong>" in result.html.read_text()
    claims = page[page.index("## Claims"):page.index(PAPER[0].title)]
    assert "**not tested**" in claims and "Rules:" in claims  # the tiny zoo has no DDPM UNet, no N = 10² …
    stores = sorted(p.name.split("-")[0] for p in (out / "stores").glob("*.zarr.zip"))
    assert stores == (["gap"] * 2 + ["ideal"] * 4 + ["jacobian"] * 8 + ["locality"] + ["memorization"] * 4
                      + ["training"] * 8)  # shared cells once; jacobian and training-span at two σ
    memorizers = page[page.index(PAPER[-1].title):]
    assert "| DiT local N=10 | " in memorizers and "| bias-free UNet N=10 S2 | " in memorizers
    assert "in span: not tested" in memorizers  # every model is N = 10: no larger-N contrast
    assert "**Partial: the zoo lacks** DDPM UNet N=10 (s1; memorization); DDPM UNet N=10 (s1)" in memorizers


def test_the_memorizers_are_measured_again_at_the_memorizer_sigma(rendered, tmp_path):
    """The memorizer σ is chosen from the ideal-memorizer stores by the rule; every N = 10 model gets a second
    training-span store there (keyed as a report at that σ would key it, the σ = 0.1 stores' keys unchanged), a
    second row, the ideal memorizer a reference row at each σ, and the claims a line with both outcomes."""
    from biasprobe.reports.claims import memorizer_sigma

    zoo, out, result = rendered
    ideals = [bp.open(path) for path in sorted((out / "stores").glob("ideal-memorizer-*.zarr.zip"))]
    assert len(ideals) == 4 and all(list(ideal.sigma.values) == [0.1, 0.3, 1.0] for ideal in ideals)
    sigma = memorizer_sigma(ideals, SETTINGS.memorizer_sigmas)
    assert sigma in SETTINGS.memorizer_sigmas
    for model in read_zoo(zoo):
        for settings in (SETTINGS, replace(SETTINGS, sigma=sigma)):
            for kind in ("jacobian", "training-span"):
                store = bp.open(out / "stores" / f"{kind}-{model.name}-{settings.key(kind, model)}.zarr.zip")
                assert float(store.sigma[0]) == settings.sigma
    page = result.index.read_text()
    memorizers = page[page.index(PAPER[-1].title):]
    for training in ("S1", "S2"):
        for level in (0.1, sigma):
            assert f"| ideal memorizer ({training}'s 10 images) | {level:g} | — |" in memorizers
    for label in ("DiT N=10", "DiT local N=10", "bias-free UNet N=10 S1", "bias-free UNet N=10 S2"):
        assert f"| {label} | 0.1 | " in memorizers and f"| {label} | {sigma:g} | " in memorizers
    claim = next(line for line in page.splitlines() if "… and at the memorizer σ" in line and "|" in line)
    assert f"σ = 0.1: not tested (the line above); σ = {sigma:g}: not tested (DiT N=10: share" in claim
    from biasprobe.reports.paper.tables import trained_sigma_max

    trained = lambda schedule: trained_sigma_max(xr.Dataset(attrs={"architecture": json.dumps(
        {"schedule": schedule, "training": {"sigma_max": 0.5}})}))
    assert trained(None) == 0.5 and trained({"kind": "linear"}) is None  # a scheduled model: trained at every step
    alone = bp.report([next((out / "stores").glob("ideal-memorizer-dit-n10-*.zarr.zip"))], tmp_path / "alone")
    assert f"σ = {sigma:g}: mean max wᵢ; top 10 in training / held-out span" in alone.index.read_text()


def test_the_page_says_how_far_each_model_is_trained_and_which_are_not_on_a_plateau(rendered):
    _, _, result = rendered
    page = result.index.read_text()
    section = page[page.index("## How far the zoo is trained"):page.index("## Claims")]
    assert "**Not on a plateau: 1 of the zoo's 4 models** (dit-n10)." in section
    assert "Not judged (no loss curve, or one too short): unet-bf-n10-s2." in section and "1 of the 4 models have not done their recipe's steps yet" in section
    assert "| dit-n10 | 3000 / 6000 | -5.0 % ± 1.0 % | **no** |" in section
    assert "| unet-bf-n10-s1 | 6000 / 6000 | +0.1 % ± 0.2 % | yes |" in section
    assert "| unet-bf-n10-s2 | — / — | — | not judged |" in section
    flat = next(line for line in section.splitlines() if line.startswith("| dit-local-n10 "))
    assert flat.startswith("| dit-local-n10 | 6000 / 6000 | +0.0 %") and flat.endswith("| yes |")  # from its record
    html = result.html.read_text()
    assert "<h2>How far the zoo is trained</h2>" in html and "<strong>Not on a plateau: 1 of the zoo" in html


def test_only_into_a_folder_holding_the_full_report_is_refused_and_nothing_is_touched(rendered):
    zoo, out, _ = rendered
    before = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    with pytest.raises(bp.InputError, match="holds a paper report with fig1, fig2, fig3, fig6, table2, table3, twins, memorizers too"):
        paper_report(zoo, out, settings=SETTINGS, device="cpu", items=[i for i in PAPER if i.key == "fig4"])
    result = run_cli("report", "paper", "--zoo", zoo, "--out", out, "--only", "fig4")
    assert result.returncode == 1 and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert "choose another --out folder for fig4, or render every item there (leave out --only)" in result.stderr
    assert {path: path.stat().st_mtime_ns for path in out.iterdir()} == before


def test_stores_are_reused_unless_recompute_and_recomputing_gives_the_same_numbers(rendered, tmp_path):
    zoo, _, _ = rendered
    fig4 = [i for i in PAPER if i.key == "fig4"]
    out = tmp_path / "fig4"
    paper_report(zoo, out, settings=SETTINGS, device="cpu", items=fig4)
    store = next((out / "stores").glob("locality-dit-n10-*.zarr.zip"))
    stamp = store.stat().st_mtime_ns
    before = bp.open(store)
    paper_report(zoo, out, settings=SETTINGS, device="cpu", items=fig4)  # the same items again: allowed
    assert store.stat().st_mtime_ns == stamp
    paper_report(zoo, out, settings=SETTINGS, device="cpu", items=fig4, recompute=True)
    assert store.stat().st_mtime_ns != stamp
    xr.testing.assert_allclose(bp.open(store).mean_distance, before.mean_distance)
    paper_report(zoo, out, settings=SETTINGS, device="cpu", items=[i for i in PAPER if i.key in ("fig4", "table3")])
    assert json.loads((out / ".biasprobe-report.json").read_text())["items"] == ["fig4", "table3"]
    with pytest.raises(bp.InputError, match="with fig4 too"):  # a subset that leaves fig4 out
        paper_report(zoo, out, settings=SETTINGS, device="cpu", items=[i for i in PAPER if i.key == "table3"])


def test_a_full_run_removes_the_stores_of_a_retrained_checkpoint(rendered, tmp_path):
    import shutil

    zoo, out, _ = rendered
    zoo, out = shutil.copytree(zoo, tmp_path / "zoo"), shutil.copytree(out, tmp_path / "out")
    old = sorted(path.name for path in (out / "stores").glob("*-dit-n10-*.zarr.zip"))
    assert old
    retrained = tiny_checkpoint(zoo / "dit-n10.pt", "dit", seed=7, depth=6)  # same name, new weights
    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["checkpoints"][0]["sha256"] = file_sha256(retrained)
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    fig4 = [i for i in PAPER if i.key == "fig4"]
    paper_report(zoo, tmp_path / "fig4", settings=SETTINGS, device="cpu", items=fig4)  # elsewhere: nothing pruned here
    assert all((out / "stores" / name).exists() for name in old)
    paper_report(zoo, out, settings=SETTINGS, device="cpu")
    new = sorted(path.name for path in (out / "stores").glob("*-dit-n10-*.zarr.zip"))
    assert len(new) == len(old) and not set(new) & set(old)
    assert list((out / "stores").glob("jacobian-unet-bf-n10-s2-*.zarr.zip"))  # only a training-span store reads it: kept
    assert set(json.loads((out / ".biasprobe-report.json").read_text())["stores"]) == {
        f"stores/{path.name}" for path in (out / "stores").iterdir()}


def test_a_cache_of_folder_stores_is_packed_into_single_files_and_gives_the_same_page(rendered, tmp_path,
                                                                                   monkeypatch):
    """A cache written before stores were single files (stores/NAME.zarr folders): a full run packs each store
    it uses into stores/NAME.zarr.zip without computing it again, removes the folders, and writes the same page."""
    import shutil

    zoo, out, result = rendered
    out = shutil.copytree(out, tmp_path / "out")
    for packed in (out / "stores").glob("*.zarr.zip"):  # the same stores, in the folder form
        bp.save(bp.open(packed), packed.with_name(packed.name.removesuffix(".zip")))
        packed.unlink()
    mark = json.loads((out / ".biasprobe-report.json").read_text())
    mark["stores"] = [name.removesuffix(".zip") for name in mark["stores"]]
    (out / ".biasprobe-report.json").write_text(json.dumps(mark))
    folders = sorted(path.name for path in (out / "stores").iterdir())
    assert folders and all(name.endswith(".zarr") and (out / "stores" / name).is_dir() for name in folders)

    def computed(kind, *args, **kwargs):
        raise AssertionError(f"{kind} was computed again")

    monkeypatch.setattr("biasprobe.reports.paper.report.compute", computed)
    again = paper_report(zoo, out, settings=SETTINGS, device="cpu")
    assert sorted(path.name for path in (out / "stores").iterdir()) == [f"{name}.zip" for name in folders]
    assert all((out / "stores" / f"{name}.zip").is_file() for name in folders)
    assert again.index.read_text() == result.index.read_text()


def test_memorizers_are_checked_against_a_larger_n_model_of_their_family(tmp_path):
    """A DiT on 40 images is the N = 10 DiTs' contrast; its training-span store is derived from its Jacobian."""
    zoo = make_zoo(tmp_path / "zoo")
    manifest = json.loads((zoo / "manifest.json").read_text())
    path = tiny_checkpoint(zoo / "dit-n40.pt", "dit", seed=7, depth=6)
    manifest["checkpoints"].append({"name": "dit-n40", "file": path.name, "family": "dit", "config": {"depth": 6},
                                    "data": "c-alpha", "n_train": 40, "subset": "s1", "sha256": file_sha256(path)})
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    item = [i for i in PAPER if i.key == "memorizers"]
    page = paper_report(zoo, tmp_path / "out", settings=SETTINGS, device="cpu", items=item).index.read_text()
    assert (tmp_path / "out" / "memorizers.png").exists()
    row = next(line for line in page.splitlines() if line.startswith("| DiT N=10 | "))
    assert "(N=40)" in row and row.count("—") == 0  # every number of the check is there
    assert {p.name.rsplit("-", 1)[0] for p in (tmp_path / "out" / "stores").glob("*-dit-n40-*.zarr.zip")} == {
        "jacobian-dit-n40", "training-span-dit-n40"}
    span = bp.open(next((tmp_path / "out" / "stores").glob("training-span-dit-n40-*.zarr.zip")))
    assert span.attrs["checkpoint_sha256"] == manifest["checkpoints"][-1]["sha256"] and span.attrs["centred"] == 1
    alone = bp.report([next((tmp_path / "out" / "stores").glob("training-span-dit-n40-*.zarr.zip"))], tmp_path / "alone")
    assert (tmp_path / "alone" / f"training-span-dit-n40-{span.attrs['recipe_key']}.span.png").exists()
    assert "mean ‖P e_j‖² over the top 10 of ∂D/∂y, training / held-out span" in alone.index.read_text()
    claim = next(line for line in page.splitlines() if "Memorizers reproduce training images" in line and "|" in line)
    assert "**not tested**" not in claim and "DiT N=10: share" in claim


def test_a_checkpoint_that_does_not_match_its_manifest_is_refused(tmp_path):
    zoo = make_zoo(tmp_path / "zoo")
    manifest = json.loads((zoo / "manifest.json").read_text())
    manifest["checkpoints"][0]["sha256"] = "0" * 64
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bp.InputError, match="does not match the sha256"):
        paper_report(zoo, tmp_path / "out", settings=SETTINGS, device="cpu", items=[i for i in PAPER if i.key == "fig4"])


def test_weights_that_left_the_tree_are_read_through_their_stores_and_named_when_a_store_needs_them(rendered,
                                                                                                      tmp_path):
    import shutil

    zoo, out, _ = rendered
    zoo, out = shutil.copytree(zoo, tmp_path / "zoo"), shutil.copytree(out, tmp_path / "out")
    fig4 = [i for i in PAPER if i.key == "fig4"]
    paper_report(zoo, tmp_path / "fig4", settings=SETTINGS, device="cpu", items=fig4)
    (zoo / "dit-n10.pt").unlink()  # the weights leave; the manifest entry and the cached store stay
    paper_report(zoo, tmp_path / "fig4", settings=SETTINGS, device="cpu", items=fig4)  # drawn from the store
    with pytest.raises(bp.InputError, match=r"dit-n10\) is not in the working tree .*git log --diff-filter=D"):
        paper_report(zoo, tmp_path / "fig4", settings=SETTINGS, device="cpu", items=fig4, recompute=True)
    (zoo / "dit-local-n10.pt").unlink()  # every missing file is named at once, before any store is computed
    fig6 = [i for i in PAPER if i.key == "fig6"]  # the gap of both DiTs
    with pytest.raises(bp.InputError, match=r"dit-local-n10\) \(and 1 more: dit-n10\) is not in the working tree"):
        paper_report(zoo, tmp_path / "fig6", settings=SETTINGS, device="cpu", items=fig6, recompute=True)
    assert not (tmp_path / "fig6" / "stores").exists() or not any((tmp_path / "fig6" / "stores").iterdir())


def test_a_store_decided_unneeded_does_not_ask_for_its_weights(rendered, tmp_path, monkeypatch):
    """No memorizer σ (none of the grid passes): the stores at it are not measured, so their weights are not needed."""
    import shutil

    from biasprobe.reports.paper import report

    zoo, out, _ = rendered
    zoo, out = shutil.copytree(zoo, tmp_path / "zoo"), shutil.copytree(out, tmp_path / "out")
    (zoo / "dit-local-n10.pt").unlink()
    monkeypatch.setattr(report, "_memorizer_sigma", lambda stores, settings: None)
    paper_report(zoo, tmp_path / "memorizers", settings=SETTINGS, device="cpu", caches=[out / "stores"],
                 items=[i for i in PAPER if i.key == "memorizers"])


def test_the_page_names_a_zoo_whose_dits_normalise_queries_and_keys(rendered, tmp_path):
    import shutil

    zoo, out, result = rendered
    assert "qk_norm" not in (out / "index.md").read_text()
    zoo, out = shutil.copytree(zoo, tmp_path / "zoo"), shutil.copytree(out, tmp_path / "out")
    manifest = json.loads((zoo / "manifest.json").read_text())
    for entry in manifest["checkpoints"]:
        if entry["family"] == "dit":
            entry["config"]["qk_norm"] = True  # as a revised zoo v2 DiT's config says
    (zoo / "manifest.json").write_text(json.dumps(manifest))
    assert {m.qk_norm for m in read_zoo(zoo) if m.family == "dit"} == {True}
    page = paper_report(zoo, out, settings=SETTINGS, device="cpu").index.read_text()
    assert f"The DiTs of `{zoo}` normalise each head's queries and keys (`qk_norm`" in page


def test_cli_without_a_zoo_says_what_to_do(tmp_path):
    result = run_cli("report", "paper", "--zoo", tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.returncode == 1 and "no zoo manifest" in result.stderr and "Traceback" not in result.stderr


def test_only_picks_items_by_key_and_refuses_unknown_ones(tmp_path):
    from biasprobe.reports.paper import paper_items

    assert [item.key for item in paper_items(["fig6", "fig2"])] == ["fig2", "fig6"]
    result = run_cli("report", "paper", "--zoo", tmp_path, "--only", "fig5")
    assert result.returncode == 1 and "--only takes fig1, fig2" in result.stderr



def test_a_committed_store_of_the_paper_report_recomputes_on_the_cpu():
    """The committed reports/paper stores are current: one small cell recomputed here matches its store."""
    from pathlib import Path

    from biasprobe.reports.paper import compute

    root = Path(__file__).resolve().parents[2]
    model = next(m for m in read_zoo(root / "data" / "zoo") if m.name == "unet-bf-n10-s1")
    key = Settings().key("memorization", model)
    committed = bp.open(root / "reports" / "paper" / "stores" / f"memorization-{model.name}-{key}.zarr.zip")
    recomputed = compute("memorization", model, Settings(), device="cpu")
    xr.testing.assert_allclose(recomputed.sample_image, committed.sample_image, atol=1e-4)
    xr.testing.assert_equal(recomputed.nearest_index, committed.nearest_index)
    assert committed.attrs["checkpoint_sha256"] == model.sha256


def test_the_committed_page_tracks_its_pngs_and_pages_and_leaves_its_pdfs_to_the_render():
    """Of the files the committed page's mark lists (what `biasprobe report paper` writes there), the PNGs and
    index pages are tracked; the PDFs are ignored by git (written by a render, never committed: issue 24), so
    a fresh clone's render leaves `git status` clean."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = json.loads((root / "reports" / "paper" / ".biasprobe-report.json").read_text())["files"]
    pdfs = [name for name in files if name.endswith(".pdf")]
    assert pdfs and {"index.md", "index.html"} <= set(files)
    paths = [f"reports/paper/{name}" for name in files]
    tracked = set(subprocess.run(["git", "ls-files", "--", *paths], cwd=root, capture_output=True, text=True,
                                 check=True).stdout.split())
    assert tracked == {path for path in paths if not path.endswith(".pdf")}
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--", *paths], cwd=root, capture_output=True,
                             text=True, check=False).stdout.split()
    assert sorted(ignored) == sorted(f"reports/paper/{name}" for name in pdfs)
    page = (root / "reports" / "paper" / "index.md").read_text()
    assert all(f"]({name})" in page for name in pdfs)  # the page links each PDF the render writes


def test_the_page_does_not_depend_on_what_was_cached(tmp_path):
    """A derived store's source (the jacobian store a training-span store reads) is not among the stores the
    claims see: a run that computes it and a run that finds everything cached write the same page."""
    zoo = make_zoo(tmp_path / "zoo")
    memorizers = [i for i in PAPER if i.key == "memorizers"]
    paper_report(zoo, tmp_path / "out", settings=SETTINGS, device="cpu", items=memorizers)
    first = (tmp_path / "out" / "index.md").read_text()
    paper_report(zoo, tmp_path / "out", settings=SETTINGS, device="cpu", items=memorizers)
    assert (tmp_path / "out" / "index.md").read_text() == first


def test_out_elsewhere_reuses_the_read_only_cache_computes_nothing_and_writes_nothing_there(rendered, tmp_path,
                                                                                           monkeypatch, capsys):
    """The committed stores are a read-only cache of every report folder: a report into another folder finds
    every store there by its key (the first line says so), computes none, and leaves the cache untouched."""
    import re

    zoo, out, result = rendered
    shipped = out / "stores"
    before = {path.name: path.stat().st_mtime_ns for path in shipped.iterdir()}
    mark = (out / ".biasprobe-report.json").read_text()

    def computed(kind, *args, **kwargs):
        raise AssertionError(f"{kind} was computed again")

    monkeypatch.setattr("biasprobe.reports.paper.report.compute", computed)
    monkeypatch.setattr("biasprobe.reports.paper.report.SHIPPED_CACHE", shipped)  # the default read-only cache
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    again = paper_report(zoo, elsewhere, settings=SETTINGS, device="cpu", progress=True)
    first = capsys.readouterr().err.splitlines()[0]
    count = re.fullmatch(rf"paper stores: (\d+) of (\d+) cached \((\d+) in the read-only cache {re.escape(str(shipped))}\), "
                         r"0 to compute", first)
    assert count and count[1] == count[2] == count[3] and int(count[1]) > 20
    assert not (elsewhere / "stores").exists()
    assert {path.name: path.stat().st_mtime_ns for path in shipped.iterdir()} == before
    assert (out / ".biasprobe-report.json").read_text() == mark
    said = f"drawn from the stores in `stores/` and in the read-only cache `{shipped}`,"
    assert said in again.index.read_text()
    assert again.index.read_text().replace(said, "drawn from the stores in `stores/`,") == result.index.read_text()


def test_a_store_missing_from_the_caches_is_computed_into_the_report_folder_and_named(rendered, tmp_path, capsys):
    import shutil

    zoo, out, _ = rendered
    cache = shutil.copytree(out / "stores", tmp_path / "cache")
    missing = next(cache.glob("locality-dit-n10-*.zarr.zip"))
    missing.unlink()
    kept = sorted(path.name for path in cache.iterdir())
    fig4 = [i for i in PAPER if i.key == "fig4"]
    capsys.readouterr()
    paper_report(zoo, tmp_path / "elsewhere", settings=SETTINGS, device="cpu", items=fig4, caches=[cache],
                 progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "paper stores: 0 of 1 cached, 1 to compute"
    assert "computing store 1/1: locality of dit-n10" in lines
    assert any("attention of 2 images at 1 σ" in line for line in lines)  # the analysis's own progress, below
    assert (tmp_path / "elsewhere" / "stores" / missing.name).is_file()
    assert sorted(path.name for path in cache.iterdir()) == kept


def test_the_v2_store_keys_are_kept_and_v3_keys_differ():
    """Science v3 added Settings fields; every committed (v2) store is still found under the key Settings() gives,
    and V3 keys every kind anew (so no v2 store is ever read as a v3 one)."""
    from pathlib import Path

    from biasprobe.reports.paper.settings import DERIVED, SURVEY, V3
    from biasprobe.reports.zoo import IDEAL

    root = Path(__file__).resolve().parents[2]
    zoo = read_zoo(root / "data" / "zoo")
    kinds = ("gap", "jacobian", "locality", "memorization", "training-span", IDEAL, *DERIVED)
    current = {Settings(sigma=s).key(kind, m) for s in (0.1, *Settings().memorizer_sigmas) for kind in kinds for m in zoo}
    committed = [path.name.removesuffix(".zarr.zip").rsplit("-", 1)[1]
                 for path in (root / "reports" / "paper" / "stores").glob("*.zarr.zip")]
    assert committed and set(committed) <= current
    assert "version" not in Settings().described() and V3.described()["version"] == 3
    for kind in (*kinds, SURVEY):
        assert V3.key(kind, zoo[0]) != Settings().key(kind, zoo[0])


def test_the_v3_survey_runs_on_a_zoo_model_within_its_training_range(tmp_path):
    """compute("gahb-survey") under V3's rules (test and training images × σ × draws) on a tiny bias-free UNet
    trained at σ ≤ 1: the σ above its range are left out."""
    from biasprobe.reports.paper import compute
    from biasprobe.reports.paper.settings import SURVEY, V3

    zoo = make_zoo(tmp_path / "zoo")
    model = next(m for m in read_zoo(zoo) if m.name == "unet-bf-n10-s1")
    settings = replace(V3, k=4, held_out=14, survey_images=2, survey_sigmas=(0.1, 0.5, 2.0))
    survey = compute(SURVEY, model, settings, device="cpu")
    trained = bp.load(model.path).source.training.get("sigma_max")
    expected = [s for s in (0.1, 0.5, 2.0) if trained is None or s <= trained]
    assert list(survey.sigma.values) == pytest.approx(expected)
    assert list(survey.split.values) == ["test", "test", "train", "train"] and survey.sizes["draw"] == 2
    assert survey.attrs["recipe_key"] == settings.key(SURVEY, model) and "train_span_fraction" in survey


def test_the_survey_sigmas_stay_within_each_models_training_range():
    """The zoo's bias-free UNets were trained at σ ≤ 1 (their records' sigma_max): σ = 2 and 8 are left out; a
    scheduled model was trained at every step and keeps every σ."""
    from pathlib import Path

    from biasprobe.reports.paper.compute import trained_sigmas

    zoo = Path(__file__).resolve().parents[2] / "data" / "zoo"
    blind, scheduled = bp.load(zoo / "unet-bf-n10-s1.safetensors"), bp.load(zoo / "dit-n10.safetensors")
    assert trained_sigmas(blind, (0.05, 1.0, 2.0, 8.0)) == [0.05, 1.0]
    assert trained_sigmas(scheduled, (0.05, 1.0, 2.0, 8.0)) == [0.05, 1.0, 2.0, 8.0]


def test_the_science_v3_page_renders_on_the_tiny_zoo(tmp_path):
    """V3 settings render v3's items and claims table: Figs. 1 and 3 from surveys (at the memorizer σ too), each
    claim's v3 outcome beside its v2 outcome and the reason; what the tiny zoo lacks is not tested."""
    from biasprobe.reports.paper.settings import V3

    zoo = make_zoo(tmp_path / "zoo")
    settings = replace(V3, k=4, locality_images=2, samples=2, sampler_steps=3, memorizer_sigmas=(0.3, 1.0),
                       survey_images=2, survey_sigmas=(0.05, 0.2, 1.0), held_out=16)
    result = paper_report(zoo, tmp_path / "out", settings=settings, device="cpu")
    page = result.markdown.read_text() if hasattr(result, "markdown") else (tmp_path / "out" / "index.md").read_text()
    assert "## Claims (science v3)" in page and "| v3 outcome | v2 outcome | why the rule changed |" in page
    assert "science v3: GAHB surveys" in page and "GAHB call (harmonic share; 95 % interval)" in page
    assert "at the memorizer σ = " in page  # Fig. 3's surveys at the memorizer σ are drawn and tabulated
    claims = page.split("## Claims (science v3)")[1].split("\n## ")[0]
    assert "**not tested**" in claims and "held (both families)" in claims  # v2's outcome beside v3's
    stores = list((tmp_path / "out" / "stores").glob("gahb-survey-*.zarr*"))
    assert len(stores) >= 4  # surveys of the tiny zoo's models, at the grid and at the memorizer σ
    assert (tmp_path / "out" / "fig1.png").exists()
    # with every store cached, weights that left the tree are not asked for (the surveys at the memorizer σ too)
    for name in ("dit-n10", "dit-local-n10", "unet-bf-n10-s2"):
        (zoo / f"{name}.pt").unlink()
    paper_report(zoo, tmp_path / "out", settings=settings, device="cpu")


def test_fig4_under_v3_draws_each_cells_distance_per_layer_with_error_bars(tmp_path):
    """The per-layer panel: one line per cell, error bars of the seeds' s.d. (several seeds) or the images' s.e."""
    import torch

    from biasprobe.figures.locality import attention_and_layers_figure

    def store(seed):
        denoiser = bp.load(tiny_checkpoint(tmp_path / f"dit{seed}.pt", "dit", seed=seed, depth=3))
        images = torch.rand(3, *denoiser.image_shape, generator=torch.Generator().manual_seed(seed))
        return bp.locality(denoiser, images, [0.1], save_maps=True)

    stores = [store(seed) for seed in (0, 1, 2)]
    figure = attention_and_layers_figure({"one seed": stores[:1], "three seeds": stores})
    axis = figure.axes[-1]
    assert axis.get_ylabel().startswith("mean attention distance")
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert labels == ["one seed (1 seed: ± s.e. over images)", "three seeds (3 seeds: ± s.d.)"]
    bars = [c for c in axis.containers]
    assert len(bars) == 2 and len(bars[0].lines[2][0].get_segments()) == stores[0].sizes["layer"]


def test_several_zoos_give_each_family_whole_from_the_first_that_has_it(tmp_path):
    from biasprobe.reports.zoo import read_zoo, zoo_sources, zoo_training
    from biasprobe.sweeps.manifest import read_manifest

    root = Path(__file__).resolve().parents[2]
    v1, v2 = root / "data" / "zoo", root / "data" / "zoo" / "v2.0"  # zoo v2's first recipe (its DiTs superseded)
    models = read_zoo([v2, v1])
    dits = [m for m in models if m.family == "dit"]
    assert dits and {m.zoo for m in dits} == {v2}  # zoo v1's DiTs (width 64) are not mixed in
    assert {m.name for m in dits} == {e.name for e in read_manifest(v2) if e.family == "dit"}
    assert {m.zoo for m in models if m.family != "dit"} == {v1}
    assert {m.family for m in models} == {m.family for m in read_zoo(v1)}
    assert list(zoo_sources(models)) == [v2, v1] and zoo_sources(models)[v2] == ["DiT"]
    assert [(s.zoo, s.name) for s in zoo_training([v2, v1])] == [(m.zoo, m.name) for m in models]
    assert read_zoo(v1) == read_zoo([v1])
    with pytest.raises(bp.InputError, match="given twice"):
        read_zoo([v1, root / "data" / ".." / "data" / "zoo"])
    with pytest.raises(bp.InputError, match="no zoo manifest"):
        read_zoo([v2, tmp_path])


def test_science_v3_gap_items_ask_for_zoo_v2s_n_300_after_each_cell_at_100_and_v2_does_not():
    """Figs. 2 and 6 and Tables 2 and 3 (whose claims judge the N the gaps pick, 10² or 300) under v3."""
    from biasprobe.reports.paper.catalogue import PAPER_V3
    from biasprobe.reports.zoo import TRANSITION_N

    checked = set()
    for v2, v3 in zip(PAPER, PAPER_V3):
        if v2.analysis != "gap":
            continue
        checked.add(v2.key)
        assert TRANSITION_N not in {c.n for c in v2.cells}
        extra = [c for c in v3.cells if c.n == TRANSITION_N]
        assert len(extra) == len([c for c in v2.cells if c.n == 100]) > 0
        for cell in extra:
            before = v3.cells[v3.cells.index(cell) - 1]
            assert (before.family, before.variant, before.n) == (cell.family, cell.variant, 100)
    assert checked == {"fig2", "fig6", "table2", "table3"}


def test_stores_computed_in_parts_elsewhere_give_the_same_page_without_computing_again(rendered, tmp_path,
                                                                                     monkeypatch):
    """paper_stores computes some models' stores (and only theirs, with the ideal stores the memorizer σ needs);
    copied into a report folder's stores/, the page takes them as its own (adopted into its mark) and computes
    nothing again; a copied file that is not the store of its name is never written over."""
    import shutil

    from biasprobe.reports.paper import paper_stores

    zoo, out, result = rendered
    parts = [paper_stores(zoo, tmp_path / f"part{i}", names, settings=SETTINGS, device="cpu")
             for i, names in enumerate((["dit-n10", "unet-bf-n10-s1"], ["dit-local-n10", "unet-bf-n10-s2"]))]
    assert all("-dit-n10-" in path.name or "-unet-bf-n10-s1-" in path.name for path in parts[0])
    assert {path.name for path in parts[0]} | {path.name for path in parts[1]} == {
        path.name for path in (out / "stores").iterdir()}  # the two parts are the page's stores, no more
    assert not list((tmp_path / "part0").glob("*.md"))  # no page
    page = shutil.copytree(out, tmp_path / "page")
    shutil.rmtree(page / "stores")
    (page / "stores").mkdir()
    for path in parts[0] + parts[1]:
        shutil.copy(path, page / "stores" / path.name)

    def computed(kind, *args, **kwargs):
        raise AssertionError(f"{kind} was computed again")

    monkeypatch.setattr("biasprobe.reports.paper.report.compute", computed)
    again = paper_report(zoo, page, settings=SETTINGS, device="cpu")
    assert again.index.read_text() == result.index.read_text()
    assert set(json.loads((page / ".biasprobe-report.json").read_text())["stores"]) == {
        f"stores/{path.name}" for path in (page / "stores").iterdir()}
    monkeypatch.undo()
    fresh = shutil.copytree(out, tmp_path / "fresh")
    shutil.rmtree(fresh / "stores")
    (fresh / "stores").mkdir()
    mark = json.loads((fresh / ".biasprobe-report.json").read_text())
    (fresh / ".biasprobe-report.json").write_text(json.dumps({**mark, "stores": []}))
    foreign = fresh / "stores" / parts[0][0].name
    foreign.write_text("not a store")  # a user's file under a store's name
    with pytest.raises(bp.InputError, match="was not written by biasprobe report"):
        paper_report(zoo, fresh, settings=SETTINGS, device="cpu")
    assert foreign.read_text() == "not a store"
    with pytest.raises(bp.InputError, match="no model 'dit-n99'"):
        paper_stores(zoo, tmp_path / "part2", ["dit-n99"], settings=SETTINGS)
    cli = run_cli("report", "paper", "--zoo", zoo, "--out", tmp_path / "part3", "--models", "dit-n99")
    assert cli.returncode == 1 and "Traceback" not in cli.stderr and "--models takes names" in cli.stderr
