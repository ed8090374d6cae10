"""``biasprobe report paper``: the page of the paper's items over a zoo, assembled from their stores.

:func:`paper_report` finds the zoo's models for every cell of every item
(:mod:`~biasprobe.reports.paper.catalogue`), finds their stores in the store cache
(:class:`~biasprobe.reports.cache.StoreCache`: the report folder's ``stores/``, then the stores shipped
in the repository's ``reports/paper/stores``, read-only) or computes the missing ones
(:func:`~biasprobe.reports.paper.compute.compute`), and writes the page: how far the zoo is trained,
the claims (:func:`~biasprobe.reports.claims.check_claims`), then each item drawn and tabulated from its
stores alone (:mod:`~biasprobe.reports.paper.draw`), with the cells the zoo lacks named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import xarray as xr

from biasprobe.errors import InputError
from biasprobe.progress import note, task
from biasprobe.reports.cache import STORES, StoreCache
from biasprobe.reports.claims import check_claims
from biasprobe.reports.folder import ReportFolder
from biasprobe.reports.memorizers import memorizer_sigma
from biasprobe.reports.page import Block, Heading, Picture, Table, Text, html_page, markdown
from biasprobe.reports.paper.catalogue import PAPER, PAPER_V3, Item
from biasprobe.reports.paper.compute import compute, require_weights, trained_at
from biasprobe.reports.paper.draw import DRAWINGS, TABLES
from biasprobe.reports.paper.settings import DERIVED, SURVEY, Settings
from biasprobe.reports.zoo import (
    AT_MEMORIZER_SIGMA,
    IDEAL,
    SURVEY_AT_MEMORIZER_SIGMA,
    TrainedSoFar,
    ZooModel,
    Zoos,
    read_zoo,
    zoo_sources,
    zoo_training,
)
from biasprobe.store import SINGLE_FILE_SUFFIX

SHIPPED_CACHE = Path(__file__).resolve().parents[3] / "reports" / "paper" / STORES
"""The stores committed with the repository's paper report: a read-only cache of every report folder."""

AT_SIGMA = (AT_MEMORIZER_SIGMA, SURVEY_AT_MEMORIZER_SIGMA)
"""The kinds computed at the memorizer σ, once the ideal-memorizer stores give it."""

Stores = dict[tuple[str, str], xr.Dataset]
"""A run's stores by (kind, model name); kind :data:`~biasprobe.reports.zoo.AT_MEMORIZER_SIGMA` for the
training-span stores at the memorizer σ."""


def paper_report(
    zoo: Zoos = "data/zoo",
    out: str | os.PathLike = "reports/paper",
    *,
    recompute: bool = False,
    device: str | None = None,
    settings: Settings | None = None,
    items: Sequence[Item] | None = None,
    caches: Sequence[str | os.PathLike] | None = None,
    progress: bool = False,
    on_file: Callable[[Path], None] | None = None,
):
    """Render the paper's items from the zoo at ``zoo`` into ``out`` (figures, index.md, index.html).

    ``zoo`` may be several folders in order of precedence (e.g. ``("data/zoo/v2", "data/zoo")``): each family's
    models come from the first that has the family (:func:`~biasprobe.reports.zoo.read_zoo`), and the page
    names the zoo of each family and model.

    Stores are found by checkpoint sha256 and :class:`Settings` in ``out/stores`` and then in the read-only
    ``caches`` (default: the repository's committed ``reports/paper/stores``, when there is one), which are
    never written; missing ones are computed into ``out/stores``. ``recompute`` recomputes every store from
    its checkpoint. With ``progress``, the first line says how many stores are cached and how many will be
    computed, and each computed store is named. A run of every item removes the stores of ``out/stores`` it
    did not use (of checkpoints since retrained, or of other settings); a run of some items keeps them.
    ``settings`` of version 3 (:data:`~biasprobe.reports.paper.settings.V3`) render science v3's page: its items
    (:data:`~biasprobe.reports.paper.catalogue.PAPER_V3` unless ``items`` are given) and claims (the v3 rules,
    each beside the v2 rule's outcome and why it changed). Returns the :class:`~biasprobe.reports.stores.Report`.
    """
    from biasprobe import __version__
    from biasprobe.reports.stores import Report

    settings, items = _chosen(settings, items)
    models = read_zoo(zoo)
    folder = ReportFolder(out, on_file)
    folder.check([f"{item.key}.{fmt}" for item in items for fmt in ("png", "pdf")] + ["index.md", "index.html"])
    _refuse_dropping_items(folder, items)
    folder.note(items=[item.key for item in items])
    found = _found(items, models)
    cache = StoreCache(folder, _default_caches(caches), recompute=recompute)
    stores = _fill_stores(_work(items, found), cache, settings, device, progress)
    blocks: list[Block] = [
        Heading("An et al. (2410.21273) and Kadkhodaie et al. (ICLR 2024), regenerated", 1),
        Text(f"Rendered by `biasprobe report paper` (biasprobe {__version__}) from {_zoo_words(models)} "
             f"({len(models)} models); every figure is drawn from the stores in `stores/`"
             + (f" and in the read-only cache `{', '.join(map(str, cache.read_only))}`" if cache.found_read_only else "")
             + f", cached by checkpoint sha256 and parameters ({json.dumps(settings.described())}). FID is not measured "
             "(no Inception weights offline); the generalization gap and the memorized share stand in for it."
             + _departures(models)),
    ]
    blocks += _training_blocks(zoo_training(zoo))
    blocks += _claims_blocks_v3(models, stores, settings) if settings.version >= 3 else _claims_blocks(models, stores)
    for item in items:
        blocks += _item_blocks(item, found[item.key], stores, folder)
    index = folder.write_text("index.md", markdown(blocks))
    html = folder.write_text("index.html", html_page(blocks, "biasprobe report paper"))
    if {item.key for item in items} >= {item.key for item in PAPER}:  # every store a full page needs was used
        folder.prune_stores()
    folder.finish()
    return Report(index, html, [folder.path / name for name in folder.files])


def paper_stores(
    zoo: Zoos,
    out: str | os.PathLike,
    models: Sequence[str],
    *,
    recompute: bool = False,
    device: str | None = None,
    settings: Settings | None = None,
    items: Sequence[Item] | None = None,
    caches: Sequence[str | os.PathLike] | None = None,
    progress: bool = False,
    on_file: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Find or compute the stores that :func:`paper_report` would read for the zoo models named in ``models`` only, into
    ``out``'s ``stores/``, and write no page: a zoo's stores in parts, e.g. on a GPU machine that holds some of
    the weights. The stores at the memorizer σ need every ideal-memorizer store of the page (cached, or computed
    from weights that are present). Copied into a report folder's ``stores/``, the files are taken by
    :func:`paper_report` as its own (:class:`~biasprobe.reports.cache.StoreCache`). Arguments as for
    :func:`paper_report`; returns the paths of the named models' stores in ``out``'s ``stores/`` (those found in
    a read-only cache are not copied)."""
    settings, items = _chosen(settings, items)
    zoo_models = read_zoo(zoo)
    known = {model.name for model in zoo_models}
    unknown = [name for name in models if name not in known]
    if unknown or not models:
        raise InputError((f"the zoo has no model {unknown[0]!r}" if unknown else "no model named") + "; {models} takes "
                         f"names of its manifest, e.g. {', '.join(sorted(known)[:4])}", parameters=["models"])
    found = _found(items, zoo_models)
    work = [(kind, model) for kind, model in _work(items, found) if model.name in models]
    if any(kind in AT_SIGMA for kind, _ in work):  # the memorizer σ comes from every ideal store of the page
        work = [(kind, model) for kind, model in _work(items, found) if kind == IDEAL and model.name not in models] + work
    folder = ReportFolder(out, on_file)  # a page there stays whole: its files and notes are kept, nothing pruned
    folder.note(**{key: value for key, value in folder.previous.items() if key not in ("written_by", "files", "stores")})
    _fill_stores(work, StoreCache(folder, _default_caches(caches), recompute=recompute), settings, device, progress)
    return [folder.path / name for name in sorted(folder.used) if _of_models(name, models)]


def _of_models(name: str, models: Sequence[str]) -> bool:
    """Whether the cached store ``[stores/]ANALYSIS-MODEL-KEY.zarr.zip`` is of one of ``models``."""
    stem = Path(name).name.removesuffix(SINGLE_FILE_SUFFIX).removesuffix(".zarr").rsplit("-", 1)[0]
    return any(stem.endswith(f"-{model}") and len(stem) > len(model) + 1 for model in models)


def _chosen(settings: Settings | None, items: Sequence[Item] | None) -> tuple[Settings, Sequence[Item]]:
    """The settings (default :class:`Settings`) and items (default: every item of the settings' version)."""
    settings = settings or Settings()
    return settings, items if items is not None else PAPER_V3 if settings.version >= 3 else PAPER


def _found(items: Sequence[Item], models: list[ZooModel]) -> dict:
    """Per item key, per cell, the zoo models that fill it."""
    return {item.key: {cell: cell.find(models) for cell in item.cells} for item in items}


def _default_caches(caches: Sequence[str | os.PathLike] | None) -> Sequence[str | os.PathLike]:
    """The read-only caches: ``caches``, by default the repository's committed paper stores when there are."""
    if caches is None:
        return [SHIPPED_CACHE] if SHIPPED_CACHE.is_dir() else []
    return caches


def _work(items: Sequence[Item], found: dict) -> list[tuple[str, ZooModel]]:
    """Every (kind, model) the items' cells found, in the order they must be computed (what a kind needs first)."""
    stage = {**dict.fromkeys(DERIVED, 1), IDEAL: 2, AT_MEMORIZER_SIGMA: 3, SURVEY_AT_MEMORIZER_SIGMA: 3}
    return sorted({(cell.analysis or item.analysis, model) for item in items
                   for cell, models_ in found[item.key].items() for model in models_},
                  key=lambda pair: (stage.get(pair[0], 0), pair[0], pair[1].name))


def _departures(models: list[ZooModel]) -> str:
    """What the zoo's models do that the papers' do not, in words ("" if nothing)."""
    normed = sorted({str(model.zoo) for model in models if model.qk_norm})
    if not normed:
        return ""
    return (f" The DiTs of `{'`, `'.join(normed)}` normalise each head's queries and keys (`qk_norm`, docs/zoo.md), "
            "which the paper's DiT does not: zoo v2's local DiTs diverged without it.")


def _zoo_words(models: list[ZooModel]) -> str:
    """Which zoo each family came from, in words: "the zoo `data/zoo`", or "the zoos `a` (DiT) and `b` (…)"."""
    sources = zoo_sources(models)
    if len(sources) <= 1:
        return f"the zoo `{next(iter(sources), '—')}`"
    parts = [f"`{folder}` ({', '.join(families)})" for folder, families in sources.items()]
    return "the zoos " + ", ".join(parts[:-1]) + " and " + parts[-1]


def _fill_stores(work: list[tuple[str, ZooModel]], cache: StoreCache, settings: Settings, device: str | None,
                 progress: bool) -> Stores:
    """The store of every (kind, model) of ``work`` (in its order: what a kind needs comes first): the cached
    ones first, then the others computed one by one, each named. The stores at the memorizer σ are looked up
    once the ideal-memorizer stores give the σ (:func:`~biasprobe.reports.memorizers.memorizer_sigma`)."""
    got: Stores = {}

    def settings_of(kind: str, model: ZooModel) -> tuple[str, Settings] | None:
        """The analysis and settings of (kind, model); None: the memorizer σ is not known (yet), or the model was
        not trained at it (a survey there is left out)."""
        if kind not in AT_SIGMA:
            return kind, settings
        ideals = [(IDEAL, m.name) for k, m in work if k == IDEAL]
        if not all(pair in got for pair in ideals):
            return None
        sigma = _memorizer_sigma(got, settings)
        if sigma is None:
            return None
        if kind == SURVEY_AT_MEMORIZER_SIGMA:  # a cached store says it was trained there; else its weights say
            at = replace(settings, survey_sigmas=(sigma,))
            cached = cache.where(SURVEY, model.name, at.key(SURVEY, model)) is not None
            return (SURVEY, at) if cached or not model.path.exists() or trained_at(model, sigma) else None
        return "training-span", replace(settings, sigma=sigma)

    def skipped(kind: str, model: ZooModel) -> bool:
        """Whether (kind, model) is decided to need no store (the memorizer σ known, and none or untrained)."""
        return kind in AT_SIGMA and all((IDEAL, m.name) in got for k, m in work if k == IDEAL) \
            and settings_of(kind, model) is None

    def look_up(kind: str, model: ZooModel) -> bool:
        chosen = settings_of(kind, model)
        if chosen is None:
            return False
        analysis, at = chosen
        if analysis in DERIVED:  # its source counts as used even when the derived store is reused
            cache.keep(DERIVED[analysis], model.name, at.key(DERIVED[analysis], model))
        dataset = cache.find(analysis, model.name, at.key(analysis, model))
        if dataset is not None:
            got[kind, model.name] = dataset
        return dataset is not None

    missing = [(kind, model) for kind, model in work if not look_up(kind, model)]
    missing = [(kind, model) for kind, model in missing  # the memorizer σ, known once every ideal store is found
               if kind not in AT_SIGMA or not look_up(kind, model)]
    absent = list(dict.fromkeys(model for kind, model in missing if not model.path.exists() and not skipped(kind, model)))
    if absent:  # before any store is computed: a long run must not fail at its end
        require_weights(absent[0], also=[model.name for model in absent[1:]])
    if progress:
        shipped = f" ({cache.found_read_only} in the read-only cache {', '.join(map(str, cache.read_only))})" \
            if cache.found_read_only else ""
        note(f"paper stores: {len(work) - len(missing)} of {len(work)} cached{shipped}, {len(missing)} to compute"
             + (" (recompute)" if cache.recompute else ""))
    with task("paper stores", len(missing), unit="stores", enabled=progress and bool(missing)) as advance:
        for number, (kind, model) in enumerate(missing, start=1):
            chosen = settings_of(kind, model)
            if chosen is None:  # none of the grid passes, or not trained at it: nothing to measure (the page says so)
                advance()
                continue
            analysis, at = chosen
            if progress:
                sigma = at.survey_sigmas[0] if kind == SURVEY_AT_MEMORIZER_SIGMA else at.sigma
                shown = analysis if kind == analysis else f"{analysis} at σ = {sigma:g}"
                source_here = at == settings and (DERIVED.get(analysis), model.name) in got
                if analysis in DERIVED and not source_here and cache.where(
                        DERIVED[analysis], model.name, at.key(DERIVED[analysis], model)) is None:
                    shown += f" (and the {DERIVED[analysis]} store it is derived from)"
                note(f"computing store {number}/{len(missing)}: {shown} of {model.name}")
                advance(0, status=f"{shown} of {model.name}")
            got[kind, model.name] = _compute_store(analysis, model, at, cache, device,
                                                   got if at == settings else {}, progress)
            advance()
    return {pair: got[pair] for pair in ((kind, model.name) for kind, model in work) if pair in got}


def _compute_store(kind: str, model: ZooModel, settings: Settings, cache: StoreCache, device: str | None,
                   done: Stores, progress: bool = False) -> xr.Dataset:
    """Compute the store of ``kind`` for ``model`` into the cache. A derived kind takes its source store from
    ``done`` (this run's), else from the cache, else computes it (not added to this run's stores: what the
    claims see must not depend on the cache)."""
    source = None
    if kind in DERIVED:
        origin = DERIVED[kind]
        source = done.get((origin, model.name))
        if source is None:
            source = cache.compute(origin, model.name, settings.key(origin, model),
                                   lambda: compute(origin, model, settings, device, progress=progress))
    return cache.compute(kind, model.name, settings.key(kind, model),
                         lambda: compute(kind, model, settings, device, source, progress))


def _item_blocks(item: Item, cells: dict, stores: Stores, folder: ReportFolder) -> list[Block]:
    """An item's heading, the paper's statement, its figure and table from the stores it found, and the cells
    the zoo lacks."""
    have, drawn = {}, set()
    for cell, ms in cells.items():  # a model two cells name (N=10 is the largest) is drawn once
        kind = cell.analysis or item.analysis
        runs = [stores[kind, m.name] for m in ms if (kind, m.name) in stores]
        if runs and (kind, *(m.name for m in ms)) not in drawn:
            drawn.add((kind, *(m.name for m in ms)))
            have[cell] = runs
    missing = [cell for cell, ms in cells.items() if len(ms) < cell.seeds]
    blocks: list[Block] = [Heading(item.title), Text(f"Paper: {item.paper}")]
    figure = DRAWINGS[item.figure](have) if have else None
    if figure is not None:
        names = folder.write_figure(figure, item.key)
        blocks.append(Picture(names["png"], names["pdf"], item.title))
    if have and item.table is not None:
        header, rows = TABLES[item.table](have)
        blocks.append(Table(header, rows))
    if missing:
        status = "Not drawn" if figure is None else "Partial"
        blocks.append(Text(f"**{status}: the zoo lacks** " + "; ".join(
            cell.describe() + (f" (has {len(cells[cell])})" if cells[cell] else "") for cell in missing) + "."))
    return blocks


def _memorizer_sigma(stores: Stores, settings: Settings) -> float | None:
    """The memorizer σ (:func:`biasprobe.reports.memorizers.memorizer_sigma`) from this run's ideal-memorizer stores."""
    return memorizer_sigma([store for (kind, _), store in stores.items() if kind == IDEAL], settings.memorizer_sigmas)


def _refuse_dropping_items(folder: ReportFolder, items: Sequence[Item]) -> None:
    """Refuse to render a subset of the items into a folder holding others (the page and files of those
    would be replaced by the subset's), before anything is written."""
    earlier = set(folder.previous.get("items", []))
    earlier |= {item.key for item in PAPER if f"{item.key}.png" in folder.previous.get("files", [])}
    dropped = [item.key for item in PAPER if item.key in earlier - {item.key for item in items}]
    if dropped:
        keys = ",".join(item.key for item in items)
        raise InputError(f"{folder.path} holds a paper report with {', '.join(dropped)} too, which rendering only "
                         f"{keys} there would remove; choose another " + "{out} folder for " + keys + ", or render "
                         "every item there (leave out {only})", parameters=["out", "only"])


def _percent(value: float | None, se: float | None = None) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.1f} %" + ("" if se is None else f" ± {100 * se:.1f} %")


def _training_blocks(states: list[TrainedSoFar]) -> list[Block]:
    """The table of how far every zoo model is trained, and which are not on a plateau."""
    from biasprobe.training.plateau import LAST, TOLERANCE, Z

    several = len({s.zoo for s in states}) > 1
    rows = [[s.name, *([f"`{s.zoo}`"] if several else []),
             f"{s.steps_done if s.steps_done is not None else '—'} / {s.steps if s.steps is not None else '—'}",
             _percent(s.change, s.change_se), {True: "yes", False: "**no**", None: "not judged"}[s.plateau]]
            for s in states]
    flat = [s.name for s in states if s.plateau]
    not_flat = [s.name for s in states if s.plateau is False]
    unjudged = [s.name for s in states if s.plateau is None]
    short = [s.name for s in states if s.steps_done is not None and s.steps is not None and s.steps_done < s.steps]
    if not_flat and not flat and not unjudged:
        verdict = f"**None of the zoo's {len(states)} models is on a plateau.**"
    elif not_flat:
        verdict = f"**Not on a plateau: {len(not_flat)} of the zoo's {len(states)} models** ({', '.join(not_flat)})."
    elif flat:
        verdict = f"All {len(flat)} judged models of the zoo are on a plateau."
    else:
        verdict = "No model of the zoo has a loss curve long enough to judge whether it is on a plateau."
    if unjudged and (flat or not_flat):
        verdict += f" Not judged (no loss curve, or one too short): {', '.join(unjudged)}."
    if short:
        verdict += f" {len(short)} of the {len(states)} models have not done their recipe's steps yet."
    if not_flat:
        verdict += (" Their losses still fall (or their curves are too noisy to call flat), so every number below is "
                    "that of models trained this far, not of converged ones.")
    last, tolerance = f"{100 * LAST:g} %", f"{100 * TOLERANCE:g} %"
    rule = (f"Loss change: the mean training loss over the last {last} of the steps done against the {last} "
            f"before, ± its standard error from the curve's scatter; a model is on a plateau when |change| + {Z:g} "
            f"s.e. ≤ {tolerance} (`biasprobe.training.plateau`, docs/zoo.md).")
    return [Heading("How far the zoo is trained"), Text(verdict),
            Table(["model", *(["zoo"] if several else []), "steps done / recipe steps",
                   f"loss change over the last {last}", "plateau"], rows),
            Text(rule)]


def _claims_blocks(models: list[ZooModel], stores: Stores) -> list[Block]:
    """The claims table (:mod:`biasprobe.reports.claims`) and the rule behind each outcome."""
    claims = check_claims(models, stores)
    rows = [[c.source, c.statement, c.paper, c.ours, f"**{c.outcome}**"] for c in claims]
    rules = "\n".join(f"{number}. {c.statement}: held if {c.rule}." for number, c in enumerate(claims, start=1))
    return [Heading("Claims"),
            Text("Each claim of the papers, the paper's number, ours (mean ± s.d. over seeds where the zoo has "
                 "several; with the training steps of the models compared, since models trained for different numbers "
                 "of steps are not like for like) and whether it held by the rule listed below the table. The rules "
                 "were fixed before the zoo's numbers were read; a claim without the models or stores it needs is not "
                 "tested."),
            Table(["source", "claim", "paper", "ours", "outcome"], rows),
            Text("Rules:\n\n" + rules)]


def _claims_blocks_v3(models: list[ZooModel], stores: Stores, settings: Settings) -> list[Block]:
    """Science v3's claims table: per claim the v3 rule's outcome beside the v2 rule's (from the page of
    2026-11-30) and why the rule changed (:data:`biasprobe.reports.rules.CHANGES`), then the v3 rules."""
    from biasprobe.reports.attention_claims import attention_gets_local
    from biasprobe.reports.gap_claims import judge_gap_claims
    from biasprobe.reports.rules import CHANGES
    from biasprobe.reports.sample_claims import copies_at_small_n, twins_agree
    from biasprobe.reports.survey_claims import SurveyEvidence, judge_survey_claims

    surveys = {name: store for (kind, name), store in stores.items() if kind == SURVEY}
    at_sigma = {name: store for (kind, name), store in stores.items() if kind == SURVEY_AT_MEMORIZER_SIGMA}
    evidence = SurveyEvidence(models, surveys, at_sigma, _memorizer_sigma(stores, settings))
    gap, survey = judge_gap_claims(models), judge_survey_claims(evidence)
    unchanged = [copies_at_small_n(models, stores), twins_agree(models, stores)]  # v2 rules, intervals beside
    claims = [*gap[:4], survey[0], survey[1], attention_gets_local(models, stores), *gap[4:], survey[2], *unchanged]
    rows = []
    for c in claims:
        _, v2_outcome, why = CHANGES.get(c.key, ("unchanged", "—", "not questioned by the review"))
        rows.append([c.source, c.statement, c.paper, c.ours, f"**{c.outcome}**", v2_outcome, why])
    rules_text = "\n".join(f"{number}. {c.statement}: {c.rule}." for number, c in enumerate(claims, start=1))
    return [Heading("Claims (science v3)"),
            Text("Each claim judged by science v3's rules (docs/methods/claims.md), fixed before its stores were "
                 "computed: every compared number with its standard error, models compared only at equal training "
                 "steps, two numbers told apart beyond 2 standard errors (within them: unresolved). Beside each "
                 "outcome: the outcome of the v2 rule on the page of 2026-11-30 and why the rule changed."),
            Table(["source", "claim", "paper", "ours (v3)", "v3 outcome", "v2 outcome", "why the rule changed"], rows),
            Text("Rules (v3):\n\n" + rules_text)]