"""Reports over stores: figures (PNG and PDF) and index pages (Markdown and HTML), and named recipes.

- :func:`report` renders any stores biasprobe writes, each by its ``analysis`` attr;
- :mod:`biasprobe.reports.paper` is the recipe of An et al.'s figures over a checkpoint zoo.
"""

from biasprobe.reports.stores import FIGURES, NUMBERS, TOGETHER, Report, StoreFigure, register, report

__all__ = ["FIGURES", "NUMBERS", "TOGETHER", "Report", "StoreFigure", "register", "report"]
