"""Training one model on several processes (torchrun, gloo on the CPU) equals training it in one."""

import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from biasprobe.checkpoints import read_checkpoint

from tests.conftest import run_cli


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_gloo_processes_train_the_model_one_process_trains(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (20, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train=data[:16], test=data[16:])
    options = ["dit", "--preset", "tiny", "--data", f"npz:{tmp_path / 'set.npz'}", "--n-train", "8", "--steps", "4",
               "--batch", "8", "--image-size", "8", "--device", "cpu", "--lr", "1e-3"]
    single = run_cli("train", *options, "-o", tmp_path / "one.pt")
    assert single.returncode == 0, single.stderr
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(_free_port()), "-m", "biasprobe_cli", "train", *options, "-o", tmp_path / "two.pt"]
    double = subprocess.run(list(map(str, launch)), capture_output=True, text=True, check=False,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert double.returncode == 0, double.stderr
    assert double.stdout.count("wrote ") == 1, double.stdout  # only rank 0 reports
    one, two = (read_checkpoint(tmp_path / name) for name in ("one.pt", "two.pt"))
    assert two.training["steps_done"] == 4
    assert [key for key in one.state_dict if not torch.equal(one.state_dict[key], two.state_dict[key])], \
        "two processes agree to the bit: the test would not see a wrong gradient"
    for key, weight in one.state_dict.items():
        torch.testing.assert_close(two.state_dict[key], weight, rtol=1e-5, atol=1e-6)
