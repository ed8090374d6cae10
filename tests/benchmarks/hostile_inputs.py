"""The hostile-user audit of issue 12, rebuilt and rerun: 330+ bad inputs and faults through the CLI
and the Python API, each classified as

- ``ok``: a one-line error with exit status 1 (or, for the value checks, the right value), nothing
  of the user's changed, no code from a file run;
- ``traceback``, ``hang`` (over the time limit), ``silent`` (exit 0 or a wrong value where an error
  or another value was due), ``lost`` (a user's file changed or a store missing), ``unclear``.

Most cases run in this process through the real entry point (``tests.conftest.run_cli``); kills,
concurrent writers and the named pipe run in fresh processes. Run from the repository root::

    python tests/benchmarks/hostile_inputs.py            # prints a table of counts per category
    python tests/benchmarks/hostile_inputs.py --list     # and every non-ok case

Not run by the test suite (a few minutes on a CPU); ``tests/test_fuzz.py`` holds the fast subset.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import biasprobe as bp
from tests import test_fuzz as fuzz
from tests.conftest import run_cli, tiny_checkpoint


def classify(result, fragment: str | None = None) -> str:
    text = result.stderr + result.stdout
    if "Traceback" in text:
        return "traceback"
    if result.returncode == 0:
        return "silent"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 1 or len(lines) != 1 or not lines[0].startswith("Error:"):
        return "unclear"
    if fragment and fragment.lower() not in lines[0].lower():
        return "unclear"
    return "ok"


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class Audit:
    def __init__(self) -> None:
        self.results: list[tuple[str, str, str]] = []

    def record(self, category: str, name: str, outcome: str) -> None:
        self.results.append((category, name, outcome))

    def cli(self, category: str, name: str, args, fragment=None, folder: Path | None = None) -> None:
        before = snapshot(folder) if folder else None
        try:
            outcome = classify(run_cli(*args), fragment)
        except Exception as err:  # noqa: BLE001 - an escaped exception is a traceback
            outcome = f"traceback ({type(err).__name__})"
        if before is not None and outcome == "ok":
            after = snapshot(folder)
            if any(after.get(p) != content for p, content in before.items()):
                outcome = "lost"
        self.record(category, name, outcome)

    def api(self, category: str, name: str, call) -> None:
        try:
            call()
            outcome = "silent"
        except bp.BiasprobeError:
            outcome = "ok"
        except Exception as err:  # noqa: BLE001
            outcome = f"traceback ({type(err).__name__})"
        self.record(category, name, outcome)

    def value(self, category: str, name: str, check) -> None:
        try:
            outcome = "ok" if check() else "silent"
        except Exception as err:  # noqa: BLE001
            outcome = f"traceback ({type(err).__name__})"
        self.record(category, name, outcome)


# ------------------------------------------------------------------------------------- the case groups


def fuzz_cases(audit: Audit, work: Path) -> None:
    """Every case of tests/test_fuzz.py."""
    files = {
        "unet-bf": tiny_checkpoint(work / "bf.pt", "unet-bf", image_size=8),
        "dit": tiny_checkpoint(work / "dit.pt", "dit", image_size=8),
        "image": work / "grey.png",
        "root": work,
    }
    from PIL import Image

    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(files["image"])
    for args, fragment in fuzz.NUMERIC_CASES:
        audit.cli("numeric arguments", " ".join(args[:1] + args[-2:]), fuzz._fill(args, files), fragment)
    for mutation in fuzz.HEADER_MUTATIONS:
        for container in (".pt", ".safetensors"):
            header, state = fuzz._header_and_state(files["unet-bf"])
            fuzz.HEADER_MUTATIONS[mutation](header)
            path = work / f"h-{mutation}{container}"
            if container == ".pt":
                torch.save({**header, "state_dict": state}, path)
            else:
                from safetensors.torch import save_file

                save_file(state, path, metadata={"biasprobe": json.dumps(header)})
            audit.cli("checkpoint headers", f"{mutation}{container}", ["info", path])
    for metadata in ("[]", "null", "3", "{", '"text"', '{"format": "biasprobe"}'):
        from safetensors.torch import save_file

        _, state = fuzz._header_and_state(files["unet-bf"])
        save_file(state, work / "m.safetensors", metadata={"biasprobe": metadata})
        audit.cli("checkpoint headers", f"metadata {metadata}", ["info", work / "m.safetensors"])
    for family in ("unet-bf", "dit"):
        for mutation, mutate in fuzz.WEIGHT_MUTATIONS.items():
            header, state = fuzz._header_and_state(files[family])
            key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
            mutate(state, key)
            torch.save({**header, "state_dict": state}, work / "w.pt")
            audit.cli("weights", f"{family} {mutation} (jacobian)",
                      ["jacobian", work / "w.pt", "--image", files["image"], "--device", "cpu", "--out", work / "w.zarr"])
    for name, (make, mutate) in fuzz.FOREIGN_MUTATIONS.items():
        state = make()
        mutate(state)
        torch.save(state, work / "model.pt")
        audit.cli("foreign checkpoints", name, ["info", work / "model.pt"])
    for kind in fuzz.IMAGE_KINDS + fuzz.ARRAY_KINDS:
        suffix = ".npy" if kind.startswith("npy") else (".tif" if kind in ("cmyk", "int32", "float-range",
                                                                            "float-nan") else ".png")
        path = work / f"image-{kind}{suffix}"
        (fuzz._array_file if kind.startswith("npy") else fuzz._image_file)(kind, path)
        audit.cli("images and arrays", kind,
                  ["jacobian", files["unet-bf"], "--image", path, "--device", "cpu", "--out", work / "j.zarr"])
    for kind, make in fuzz.CHECKPOINT_FILES.items():
        path = work / f"c-{kind}.pt"
        make(path)
        if kind.startswith("safetensors"):
            path = path.with_suffix(".safetensors")
        audit.cli("corrupt files", kind, ["info", path])
    (work / "folder").mkdir()
    audit.cli("corrupt files", "empty folder", ["info", work / "folder"])
    audit.cli("corrupt files", "long path", ["info", work / ("x" * 300 + ".pt")])
    for name, (prepare, args, fragment) in fuzz.OUTPUT_CASES.items():
        place = Path(tempfile.mkdtemp(dir=work))
        if prepare:
            prepare(files, place)
        audit.cli("outputs", name, fuzz._fill(args, {**files, "t": place}), fragment, folder=place)
    for name, make in fuzz.STORE_CASES.items():
        path = Path(tempfile.mkdtemp(dir=work)) / "r.zarr"
        make(path)
        audit.api("stores", name, lambda path=path: bp.open(path))


MALICIOUS = """
import os, pickle, sys, torch
marker = sys.argv[2]
class Evil:
    def __reduce__(self):
        return ({call}, ({argument},))
kind = sys.argv[3]
payload = Evil()
if kind == "raw":
    with open(sys.argv[1], "wb") as handle:
        pickle.dump(payload, handle)
elif kind == "nested":
    torch.save({{"state_dict": {{"w": torch.zeros(2)}}, "config": payload}}, sys.argv[1])
else:
    torch.save(payload, sys.argv[1])
"""


def malicious_pickles(audit: Audit, work: Path) -> None:
    """Files whose unpickling would run code: refused, and the marker file never created."""
    calls = {"os.system": ("os.system", "'touch ' + marker"), "eval": ("eval", "'open(marker, \"w\")'"),
             "exec": ("exec", "'open(marker, \"w\")'"), "popen": ("os.popen", "'touch ' + marker")}
    for name, (call, argument) in calls.items():
        for kind in ("raw", "zip", "nested"):
            path, marker = work / f"evil-{name}-{kind}.pt", work / f"pwned-{name}-{kind}"
            script = MALICIOUS.format(call=call, argument=argument)
            subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(path), str(marker), kind],
                           check=True)
            audit.cli("malicious pickles", f"{name} {kind}", ["info", path])
            if marker.exists():
                audit.results[-1] = ("malicious pickles", f"{name} {kind}", "code ran")


def diffusers_cases(audit: Audit, work: Path) -> None:
    """diffusers-like folders with missing, mistyped or absurd config values."""
    configs = {
        "list": [],
        "no-class": {"_diffusers_version": "0.30.0"},
        "unknown-class": {"_diffusers_version": "0.30.0", "_class_name": "Nonsense"},
        "string-size": {"_diffusers_version": "0.30.0", "_class_name": "UNet2DModel", "sample_size": "big"},
        "negative-channels": {"_diffusers_version": "0.30.0", "_class_name": "UNet2DModel", "in_channels": -3},
        "no-weights": {"_diffusers_version": "0.30.0", "_class_name": "UNet2DModel", "sample_size": 8,
                       "block_out_channels": [8, 8], "down_block_types": ["DownBlock2D", "DownBlock2D"],
                       "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4},
    }
    for name, config in configs.items():
        folder = work / f"diffusers-{name}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        audit.cli("foreign checkpoints", f"diffusers {name}", ["info", folder])


def value_checks(audit: Audit, work: Path) -> None:
    """Inputs the old code read silently wrong: the values now read exactly, or are refused."""
    from PIL import Image

    from biasprobe.images import read_image

    grey16 = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(grey16).save(work / "g16.png")
    audit.value("silent wrong results", "16-bit grey PNG exact",
                lambda: np.abs(read_image(work / "g16.png", (1, 8, 8))[0].numpy() - grey16 / 65535).max() < 1e-6)
    floats = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    Image.fromarray(floats, mode="F").save(work / "f.tif")
    audit.value("silent wrong results", "float TIFF exact",
                lambda: np.array_equal(read_image(work / "f.tif", (1, 8, 8))[0].numpy(), floats))
    np.save(work / "c.npy", np.ones((1, 8, 8), dtype=np.complex64))
    audit.api("silent wrong results", "complex .npy refused", lambda: read_image(work / "c.npy", (1, 8, 8)))
    ckpt = tiny_checkpoint(work / "v.pt", "dit", image_size=8)
    header, state = fuzz._header_and_state(ckpt)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(torch.complex64)
    torch.save({**header, "state_dict": state}, work / "complex.pt")
    audit.api("silent wrong results", "complex weights refused", lambda: bp.load(work / "complex.pt"))
    audit.cli("silent wrong results", "jacobian --t nan",
              ["jacobian", ckpt, "--image", work / "g16.png", "--t", "nan", "--device", "cpu", "--out", work / "t.zarr"])
    audit.cli("silent wrong results", "new unet-bf --image-size 7",
              ["new", "unet-bf", "--image-size", "7", "-o", work / "seven.pt"])
    audit.cli("silent wrong results", "train --lr inf",
              ["train", "unet-bf", "--preset", "tiny", "--data", "discs", "--n-train", "4", "--image-size", "8",
               "--steps", "2", "--lr", "inf", "-o", work / "lr.pt"])
    audit.cli("silent wrong results", "train --sigma-max nan",
              ["train", "unet-bf", "--preset", "tiny", "--data", "discs", "--n-train", "4", "--image-size", "8",
               "--steps", "2", "--sigma-max", "nan", "-o", work / "sm.pt"])
    base = ["train", "dit", "--preset", "tiny", "--data", "discs", "--n-train", "4", "--image-size", "8",
            "--channels", "1", "--batch", "4", "--checkpoint-every", "2", "--max-minutes", "0.0001",
            "--device", "cpu", "-o", work / "windowed.pt"]
    for _ in range(2):  # each run stops (out of time) after one step: a resumable state at step 2
        run_cli(*base, "--steps", "6", "--windows", "3")
    audit.cli("silent wrong results", "resume windowed without --windows", [*base, "--steps", "6"], "model_config")
    audit.cli("silent wrong results", "resume with --steps below done", [*base, "--steps", "1", "--windows", "3"],
              "--steps")
    target = work / "chunks.zarr"
    bp.save(xr.Dataset({"v": ("x", np.arange(5.0))}), target)
    for chunk in (target / "v").rglob("c/*"):
        chunk.unlink()
    audit.api("silent wrong results", "store with deleted chunks", lambda: bp.open(target))
    header, state = fuzz._header_and_state(ckpt)
    header["image_shape"] = [3, 8, 8]
    torch.save({**header, "state_dict": state}, work / "channels.pt")
    audit.cli("silent wrong results", "header with 3 channels for a 1-channel net", ["info", work / "channels.pt"])
    header["image_shape"] = [1, 8]
    torch.save({**header, "state_dict": state}, work / "two.pt")
    audit.cli("silent wrong results", "header image_shape of 2 entries", ["info", work / "two.pt"])
    (work / "dir.png").mkdir()
    audit.cli("silent wrong results", "--figure naming a folder",
              ["jacobian", ckpt, "--image", work / "g16.png", "--device", "cpu", "--out", work / "fig.zarr",
               "--figure", work / "dir.png"], "folder")
    audit.cli("unclear messages", "format version stored as a string", ["info", work / "h-version-string.pt"],
              "not a whole number")
    (work / "empty.npy").write_bytes(b"")
    audit.cli("unclear messages", "empty .npy",
              ["jacobian", ckpt, "--image", work / "empty.npy", "--device", "cpu", "--out", work / "e.zarr"], "empty")
    result = run_cli("--debug", "info", work / "nothing.pt")
    audit.record("debug", "--debug shows the traceback", "ok" if "Traceback" in result.stderr else "silent")


KILL = """
import os, signal, sys
import numpy as np, xarray as xr
import biasprobe as bp
from biasprobe import store
def die(name):
    if name == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
store._step = die
bp.save(xr.Dataset({"v": ("x", np.full(5, 9.0))}), sys.argv[1])
"""


def kills(audit: Audit, work: Path) -> None:
    """SIGKILL after each step of a save, with and without an existing store: old or new, never none."""
    for stage in ("written", "marked", "moved-old", "moved-new", "removed-old"):
        for existing in (False, True):
            target = Path(tempfile.mkdtemp(dir=work)) / "r.zarr"
            if existing:
                bp.save(xr.Dataset({"v": ("x", np.full(5, 1.0))}), target)
            subprocess.run([sys.executable, "-c", KILL, str(target), stage], check=False)
            try:
                values = set(bp.open(target).v.values.ravel())
                outcome = "ok" if values in ({1.0}, {9.0}) else "lost"
            except bp.InputError:
                outcome = "lost" if existing or stage != "written" else "ok"
            leftovers = [p for p in target.parent.iterdir() if p.name != "r.zarr"]
            audit.record("kills", f"after {stage}{' (existing store)' if existing else ''}",
                         outcome if not leftovers else "leftovers")


WRITER = """
import sys, numpy as np, xarray as xr, biasprobe as bp
failures = 0
for _ in range(int(sys.argv[3])):
    try:
        bp.save(xr.Dataset({"v": ("x", np.full(5, float(sys.argv[2])))}), sys.argv[1])
    except OSError:
        failures += 1
print(failures)
"""


def concurrency(audit: Audit, work: Path, saves: int) -> int:
    target = work / "shared.zarr"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(v), str(saves)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in (1, 2, 3)]
    outputs = [w.communicate() for w in writers]
    failures = sum(int(out.strip() or 0) for out, _ in outputs)
    crashed = any(w.returncode for w in writers)
    audit.record("concurrent writers", f"3 processes x {saves} saves", "ok" if not failures and not crashed
                 else f"{failures} OSError")
    return failures


def named_pipe(audit: Audit, work: Path) -> None:
    os.mkfifo(work / "pipe.pt")
    try:
        result = subprocess.run([sys.executable, "-m", "biasprobe_cli", "info", str(work / "pipe.pt")],
                                capture_output=True, text=True, timeout=60, check=False)
        audit.record("hang", "named pipe as checkpoint", classify(result))
    except subprocess.TimeoutExpired:
        audit.record("hang", "named pipe as checkpoint", "hang")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=100, help="saves per concurrent writer")
    parser.add_argument("--list", action="store_true", help="print every case that is not ok")
    options = parser.parse_args()
    audit = Audit()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.chdir(work)
        fuzz_cases(audit, work)
        malicious_pickles(audit, work)
        diffusers_cases(audit, work)
        value_checks(audit, work)
        named_pipe(audit, work)
        kills(audit, work)
        concurrency(audit, work, options.saves)
    table = collections.defaultdict(collections.Counter)
    for category, _, outcome in audit.results:
        table[category][outcome.split(" (")[0]] += 1
    outcomes = sorted({o for counts in table.values() for o in counts}, key=lambda o: (o != "ok", o))
    print(f"| category | cases | {' | '.join(outcomes)} |")
    print(f"| --- | --- | {' | '.join('---' for _ in outcomes)} |")
    for category, counts in table.items():
        print(f"| {category} | {sum(counts.values())} | {' | '.join(str(counts.get(o, 0)) for o in outcomes)} |")
    total = collections.Counter(outcome.split(" (")[0] for _, _, outcome in audit.results)
    print(f"| all | {len(audit.results)} | {' | '.join(str(total.get(o, 0)) for o in outcomes)} |")
    print(f"({time.perf_counter() - began:.0f} s)")
    if options.list:
        for category, name, outcome in audit.results:
            if outcome != "ok":
                print(f"{category}: {name}: {outcome}")


if __name__ == "__main__":
    main()
