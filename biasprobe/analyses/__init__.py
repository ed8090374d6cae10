"""Analyses: one module per method, each following the contract in :mod:`biasprobe.analyses.base`."""
