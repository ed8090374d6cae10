"""Regenerate the GAHB calibration table of docs/methods/jacobian.md.

The denoisers with known answers of ``tests/gahb_references.py`` (16×16 images, d = 256,
dense Jacobians); each row gives the range over the probe images and σ of every score::

    python tests/benchmarks/calibrate_harmonic.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))


def span(values) -> str:
    """'low – high' over images and σ, to two significant digits below 0.1, else two decimals."""
    low, high = float(values.min()), float(values.max())

    def number(value: float) -> str:
        return f"{value:.0f}" if values.dtype.kind in "iu" else (f"{value:.2g}" if abs(value) < 0.1 else f"{value:.2f}")

    return number(low) if number(low) == number(high) else f"{number(low)} – {number(high)}"


def trend(summary) -> str:
    """The range of the per-image slope d log tr J / d log σ, or 'one σ'."""
    return "one σ" if summary.sizes["sigma"] < 2 else span(summary.dimension_trend)


def memorization(summary) -> str:
    """The range of the memorization score, or 'not given' when the training images were withheld."""
    return span(summary.memorization_score) if "memorization_score" in summary else "not given"


def main() -> None:
    from biasprobe.analyses.harmonic import gahb_summary, verdict_line
    from tests import gahb_references as references

    print("| reference | σ | ρ | PR_Ω | κ | memorization | #λ>½ | d log tr J / d log σ | expected | images per category, per σ |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in references.cases():
        summary = gahb_summary(references.run(case))
        lines = "; ".join(verdict_line(summary, s).split(" (")[1].rstrip(")") for s in range(summary.sizes["sigma"]))
        print(f"| {case.name} | {', '.join(f'{s:g}' for s in case.sigmas)} | {span(summary.harmonicity)} | "
              f"{span(summary.participation)} | {span(summary.confinement_excess)} | "
              f"{memorization(summary)} | {span(summary.count_above_half)} | {trend(summary)} | {case.expected} | "
              f"{lines} |")


if __name__ == "__main__":
    main()
