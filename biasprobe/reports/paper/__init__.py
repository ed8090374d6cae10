"""The ``paper`` recipe: An et al.'s figures and tables, and Kadkhodaie et al.'s two-model figure, over a zoo.

A recipe is data: a list of :class:`~biasprobe.reports.paper.catalogue.Item` (a figure or table of the
paper), each naming the models it needs as cells (family, attention variant, N, subset), the analysis it
reads, and the names of its drawing and table. Its parts:

- :mod:`~biasprobe.reports.paper.settings`: the analysis parameters (:class:`Settings`), part of every
  cached store's key;
- :mod:`~biasprobe.reports.paper.catalogue`: the items (:data:`PAPER`);
- :mod:`~biasprobe.reports.paper.compute`: how the recipe runs a registered analysis on a zoo model;
- :mod:`~biasprobe.reports.paper.tables` and :mod:`~biasprobe.reports.paper.draw`: the items' tables and
  drawings, from their stores alone (the figures themselves are in :mod:`biasprobe.figures`);
- :mod:`~biasprobe.reports.paper.report`: :func:`paper_report`, which finds or computes the stores
  (:class:`~biasprobe.reports.cache.StoreCache`) and assembles the page, and :func:`paper_stores`, which finds or
  computes the stores of some of the zoo's models only (a zoo's stores in parts, e.g. on a GPU machine).

An item whose cells the zoo lacks says so plainly, by name; an item with none of its models is not drawn
at all. Nothing is faked: every number on the page comes from a store. The zoo's models and manifest are
read by :mod:`biasprobe.reports.zoo`; the claims by :mod:`biasprobe.reports.claims`. docs/reports.md
describes the items, the settings and the rules.
"""

from biasprobe.reports.paper.catalogue import PAPER, Item, paper_items
from biasprobe.reports.paper.compute import RECIPE_INPUTS, compute
from biasprobe.reports.paper.report import SHIPPED_CACHE, paper_report, paper_stores
from biasprobe.reports.paper.settings import DERIVED, DERIVED_OPTIONS, Settings

__all__ = ["DERIVED", "DERIVED_OPTIONS", "PAPER", "RECIPE_INPUTS", "SHIPPED_CACHE", "Item", "Settings", "compute",
           "paper_items", "paper_report", "paper_stores"]
