"""Reports over stores: figures (PNG and PDF) and index pages (Markdown and HTML), and named recipes.

- :func:`report` renders any stores biasprobe writes, each by its ``analysis`` attr;
- :mod:`biasprobe.reports.paper` is the recipe of An et al.'s figures over a checkpoint zoo.
"""

from biasprobe.reports import stores
from biasprobe.reports.stores import Report, StoreFigure, report


def __getattr__(name: str):
    if name in ("FIGURES", "NUMBERS", "TOGETHER"):  # views of the analysis registry, read when asked for
        return getattr(stores, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FIGURES", "NUMBERS", "TOGETHER", "Report", "StoreFigure", "report"]
