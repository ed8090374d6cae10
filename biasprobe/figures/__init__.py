"""Figures: one module per analysis, each drawing from stores alone."""
