"""The training benchmark (tests/benchmarks/bench_training.py) runs on the CPU, where it reports steps/s
and the largest operators only, and its MPS clients see the daemon's GPUs."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import import_benchmark

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    return import_benchmark("bench_training")


def test_the_benchmark_runs_on_the_cpu_and_its_paths_take_the_same_steps(tmp_path):
    """Every path trains the same function: from the same seeds, the loop before the throughput work,
    today's and the step compiled around the network (loss and EMA: ``+step``) give the same first
    losses, the third of which follows two parameter updates."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_training.py"), "--device", "cpu", "--models", "unet-bf-small",
         "--paths", "previous,new,compiled+step", "--batch", "2", "--seconds", "0.2", "--warmup", "1",
         "--profile", "unet-bf-small:new", "--profile-steps", "2", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "training-cpu.json").read_text())
    (row,) = report["models"]
    assert report["bf16_gemm_tflops"] is None and "flops_per_step" not in row  # no MFU on the CPU
    for path in ("previous", "new", "compiled+step"):
        assert row[f"{path}_steps_per_s"] > 0 and f"{path}_mfu" not in row, row.get(f"{path}_error")
        assert row[f"{path}_first_losses"] == pytest.approx(row["new_first_losses"], rel=1e-5)
    # profiled right after its timing, on the same step
    (profiled,) = report["profile"]
    assert (profiled["model"], profiled["path"]) == ("unet-bf-small", "new") and "new_profile" not in row
    assert profiled["busy"] is None and profiled["wall_ms_per_step"] > 0
    shares = [entry["share"] for entry in profiled["top"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert any("convolution" in entry["name"] for entry in profiled["top"])  # a UNet's step is its convolutions
    assert "unet-bf-small" in done.stdout and "steps/s" in done.stdout
    # each path's speed beside it as a multiple of the first path measured, the run's baseline
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("unet-bf-small ")}
    assert "  1.00× previous" in lines["previous"]
    ratio = row["new_steps_per_s"] / row["previous_steps_per_s"]
    assert f"{ratio:5.2f}× previous" in lines["new"]


@pytest.mark.parametrize(("visible", "seen"), [("1", "0"), ("2,3", "0,1"), (None, None)])
def test_mps_clients_see_the_daemons_gpus_numbered_from_zero(bench, monkeypatch, visible, seen):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    mps = bench.Mps()
    env = mps.client_env()
    assert env.get("CUDA_VISIBLE_DEVICES") == seen
    assert env["CUDA_MPS_PIPE_DIRECTORY"] == mps.env["CUDA_MPS_PIPE_DIRECTORY"]  # they reach the private daemon
    assert mps.env.get("CUDA_VISIBLE_DEVICES") == visible  # the daemon itself keeps this process's GPUs


def test_a_path_names_its_options_and_refuses_unknown_ones(bench):
    how = bench.parse_path("compiled-reduce-overhead+cl+step")
    assert (how.mode, how.channels_last, how.pad, how.around_network) == ("reduce-overhead", True, False, True)
    assert bench.parse_path("new").mode is False
    for wrong in ("new+step", "previous+pad", "compiled+fast", "compiled+cl+cl", "fast"):
        with pytest.raises(SystemExit):
            bench.parse_path(wrong)


def test_a_run_stopped_by_timeout_keeps_the_cases_it_measured(tmp_path):
    """`timeout` stops a stage with SIGTERM: the cases done by then are in the JSON, the exit status says so."""
    command = [sys.executable, str(BENCHMARKS / "bench_training.py"), "--device", "cpu", "--models",
               "unet-bf-small,dit-small", "--paths", "new,previous", "--batch", "2", "--seconds", "1", "--warmup", "1",
               "--out", str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as run:
        for line in run.stdout:
            if '"new_steps_per_s"' in line:  # the first case is done; the second takes over a second
                run.send_signal(signal.SIGTERM)
                break
        run.communicate(timeout=120)
    assert run.returncode == 143
    report = json.loads((tmp_path / "training-cpu.json").read_text())
    (row,) = report["models"]
    assert row["model"] == "unet-bf-small" and row["new_steps_per_s"] > 0 and "previous_steps_per_s" not in row
    assert not list(tmp_path.glob(".*.tmp"))
