"""The divergence guard calibrated on known answers: the committed zoo's training records.

Each record's loss curve (means over 17-100 steps: coarser than the guard's 50-step reads for most points,
finer for some) is fed to :class:`biasprobe.training.loop.DivergenceGuard` point by point. No healthy run
(every landed model of zoo v1 and v2) may be called diverged; the local DiT that diverged in zoo v2's
round 2 (its record in reports/zoo/rounds.tar.xz) must be, at the first rise.
"""

import json
import tarfile
from pathlib import Path

import pytest

import biasprobe as bp
from biasprobe.training import loop

ROOT = Path(__file__).resolve().parents[2]


def first_divergence(curve: list[list[float]], warm_restarts=()) -> int | None:
    """The step of the first point the guard calls diverged, or None; the guard starts afresh after each warm
    restart, as a warm-restarted run does."""
    guard, restarts = loop.DivergenceGuard([]), sorted(warm_restarts)
    for step, mean in curve:
        if restarts and step > restarts[0]:
            guard, restarts = loop.DivergenceGuard([]), [r for r in restarts if r >= step]
        try:
            guard.check([mean] * loop.LOSS_READ_EVERY, step, "model", 0)
        except bp.TrainingDiverged:
            return step
    return None


HEALTHY = sorted([*ROOT.glob("data/zoo/*.train.json"), *ROOT.glob("data/zoo/v2*/*.train.json")])


def test_the_zoo_has_records_to_calibrate_on():
    assert len(HEALTHY) >= 38  # 36 of zoo v1, 2 of zoo v2 (2026-12-07)


@pytest.mark.parametrize("record", HEALTHY, ids=lambda path: str(path.relative_to(ROOT / "data/zoo")))
def test_no_healthy_run_of_the_zoo_is_called_diverged(record):
    record = json.loads(record.read_text())
    assert first_divergence(record["loss_curve"], record.get("warm_restarts", [])) is None


def test_the_local_dit_that_diverged_in_zoo_v2_round_2_is_called_diverged_at_its_first_rise():
    with tarfile.open(ROOT / "reports/zoo/rounds.tar.xz") as archive:
        record = json.load(archive.extractfile("v2b/dit-local-n1000.train.json"))
    assert record["final_loss"] > 0.9  # the network's output had gone to zero
    assert first_divergence(record["loss_curve"], record["warm_restarts"]) == 13820  # 0.130 after 0.029 at the lowest
