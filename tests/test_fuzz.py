"""Generated bad inputs through the real command line and the Python API: every one gets a clean
one-line error (exit 1, no traceback), and nothing the user owns is changed.

Categories: numeric arguments, checkpoint headers, weights (native and foreign), image and array
files, other files, output paths, stores. Each case is one pytest item; the suite has well over
150 of them and runs in seconds (tiny models, errors raised before any real work).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import warnings
import zlib

import numpy as np
import pytest
import torch
import xarray as xr

import biasprobe as bp
from biasprobe.errors import BiasprobeError

from .conftest import run_cli, tiny_checkpoint

# ---------------------------------------------------------------------------------------------- setup


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid tiny checkpoints and an image, which the cases start from."""
    root = tmp_path_factory.mktemp("fuzz")
    paths = {
        "unet-bf": tiny_checkpoint(root / "bf.pt", "unet-bf", image_size=8),
        "dit": tiny_checkpoint(root / "dit.pt", "dit", image_size=8),
        "unet-ddpm": tiny_checkpoint(root / "ddpm.safetensors", "unet-ddpm", image_size=8),
        "image": root / "grey.png",
        "root": root,
    }
    from PIL import Image

    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(paths["image"])
    return paths


@pytest.fixture(autouse=True)
def warnings_to_stderr():
    """Show warnings on stderr as a user sees them (pytest would collect them), so that a warning
    printed before the error line fails the one-line check."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        yield


def assert_clean_error(result, fragment: str | None = None):
    """Exit 1 and a single line ``Error: ...`` on stderr: no traceback, no internal error."""
    assert result.returncode == 1, (result.returncode, result.stderr, result.stdout)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    if fragment:
        assert fragment.lower() in lines[0].lower(), lines[0]


# ------------------------------------------------------------------------------------ numeric arguments

JACOBIAN = ["jacobian", "{dit}", "--image", "{image}", "--device", "cpu", "--out", "{root}/never.zarr"]
NUMERIC_CASES = [
    *[(JACOBIAN + ["--top-k", v], "--top-k") for v in ("0", "-1", "-64", "100000")],
    *[(JACOBIAN + ["--sigma", v], "--sigma") for v in ("nan", "inf", "-inf", "-0.1", "0", "0.1,nan", "1e400",
                                                         "abc", ",", "0.1,,x")],
    *[(JACOBIAN + ["--t", v], "t") for v in ("nan", "inf", "-1", "1e9", "1000", "-inf", "x")],
    *[(["new", "unet-bf", "-o", "{root}/n.pt", "--channels", v], "--channels") for v in ("0", "-1", "-3")],
    *[(["new", "dit", "-o", "{root}/n.pt", "--channels", v], "--channels") for v in ("0", "-2")],
    *[(["new", "unet-bf", "-o", "{root}/n.pt", "--image-size", v], "--image-size") for v in ("7", "0", "-8", "12")],
    *[(["new", "dit", "--preset", "tiny", "-o", "{root}/n.pt", "--image-size", v], "image")
      for v in ("0", "-4", "33")],
    *[(["new", "unet-ddpm", "--preset", "tiny", "-o", "{root}/n.pt", "--image-size", v], "image")
      for v in ("0", "-2", "7")],
    *[(["new", "dit", "-o", "{root}/n.pt", "--windows", v], "window") for v in ("0", "-1", "2", "3,4", "a")],
    *[(["gap", "{unet-bf}", "--data", "discs", "--n-train", "4", "--per-split", v], "--per-split")
      for v in ("0", "-1")],
    *[(["gap", "{unet-bf}", "--data", "discs", "--n-train", "4", "--sigma", v], "--sigma") for v in ("nan", "0")],
    (["gap", "{unet-bf}", "--data", "discs", "--n-train", "0"], "--n-train"),
    *[(["train", "unet-bf", "--data", "discs", "--n-train", "4", "-o", "{root}/t.pt", flag, v], flag)
      for flag, values in (("--lr", ("inf", "nan", "0", "-1e-3")), ("--sigma-max", ("nan", "inf", "0", "-1")),
                           ("--steps", ("0", "-5")), ("--batch", ("0", "-1")), ("--ema", ("1", "1.5", "nan", "-0.1")),
                           ("--checkpoint-every", ("0",)), ("--n-train", ("0", "-1")),
                           ("--max-minutes", ("0", "nan", "-1")), ("--image-size", ("0", "7")),
                           ("--channels", ("0",)))
      for v in values],
    *[(["sample", "{unet-bf}", "--device", "cpu", "--out", "{root}/s.zarr", flag, v], flag)
      for flag, v in (("--count", "0"), ("--count", "-3"), ("--steps", "0"), ("--threshold", "nan"),
                      ("--threshold", "2"))],
    *[(["locality", "{dit}", "--device", "cpu", "--out", "{root}/l.zarr", flag, v], flag)
      for flag, v in (("--n", "0"), ("--batch-size", "0"), ("--batch-size", "-1"))],
    *[(["locality", "{dit}", "--device", "cpu", "--out", "{root}/l.zarr", "--windows", v], "window")
      for v in ("2", "0", "-3")],
    *[(["compare", "{unet-bf}", "{unet-bf}", "--data", "discs", "--out", "{root}/cmp.zarr", flag, v], flag)
      for flag, v in (("--per-split", "0"), ("--samples", "0"), ("--sampler-steps", "0"), ("--top-k", "0"),
                      ("--sigma", "nan"), ("--sigma", "-1"))],
    (["demo", "--per-split", "0", "--out", "{root}/demo"], "--per-split"),
    (JACOBIAN + ["--device", "tpu"], "--device"),
    (JACOBIAN + ["--method", "magic"], "method"),
    (JACOBIAN + ["--precision", "fp4"], "precision"),
    (JACOBIAN + ["--differentiate", "other"], "--differentiate"),
]


def _fill(args, files):
    return [str(a).format(**{k: v for k, v in files.items()}) for a in args]


@pytest.mark.parametrize(("args", "fragment"), NUMERIC_CASES, ids=[" ".join(c[0][-2:]) for c in NUMERIC_CASES])
def test_bad_numbers_are_refused(files, args, fragment):
    result = run_cli(*_fill(args, files))
    assert_clean_error(result, fragment)
    for made in ("never.zarr", "n.pt", "t.pt", "s.zarr", "l.zarr", "cmp", "demo"):
        assert not (files["root"] / made).exists(), made


# ------------------------------------------------------------------------------------ checkpoint headers


def _header_and_state(path):
    data = torch.load(path, weights_only=True)
    state = data.pop("state_dict")
    return data, state


HEADER_MUTATIONS = {
    "version-string": lambda h: h.update(format_version="1"),
    "version-newer": lambda h: h.update(format_version=2),
    "version-zero": lambda h: h.update(format_version=0),
    "version-none": lambda h: h.update(format_version=None),
    "version-float": lambda h: h.update(format_version=1.5),
    "version-bool": lambda h: h.update(format_version=True),
    "family-unknown": lambda h: h.update(family="vae"),
    "family-int": lambda h: h.update(family=3),
    "family-missing": lambda h: h.pop("family"),
    "config-list": lambda h: h.update(config=[]),
    "config-none": lambda h: h.update(config=None),
    "config-negative-width": lambda h: h["config"].update(base_width=-4),
    "config-zero-width": lambda h: h["config"].update(base_width=0),
    "config-huge-width": lambda h: h["config"].update(base_width=10**12),
    "config-huge-blocks": lambda h: h["config"].update(num_blocks=10**9),
    "config-string-width": lambda h: h["config"].update(base_width="wide"),
    "config-unknown-key": lambda h: h["config"].update(colour="blue"),
    "config-nested": lambda h: h["config"].update(base_width={"a": 1}),
    "config-zero-blocks": lambda h: h["config"].update(num_blocks=0),
    "config-even-kernel": lambda h: h["config"].update(kernel_size=2),
    "shape-two": lambda h: h.update(image_shape=[1, 8]),
    "shape-four": lambda h: h.update(image_shape=[1, 8, 8, 8]),
    "shape-channels": lambda h: h.update(image_shape=[3, 8, 8]),
    "shape-zero": lambda h: h.update(image_shape=[1, 0, 8]),
    "shape-negative": lambda h: h.update(image_shape=[1, -8, 8]),
    "shape-text": lambda h: h.update(image_shape="1x8x8"),
    "shape-odd": lambda h: h.update(image_shape=[1, 7, 7]),
    "shape-floats": lambda h: h.update(image_shape=[1.0, 8.0, 8.0]),
    "denoiser-list": lambda h: h.update(denoiser=[]),
    "parameterization": lambda h: h["denoiser"].update(parameterization="v"),
    "native-range": lambda h: h["denoiser"].update(native_range="wide"),
    "conditioning": lambda h: h["denoiser"].update(conditioning="text"),
    "schedule-steps": lambda h: h["denoiser"].update(schedule={"kind": "linear", "steps": -1}),
    "schedule-kind": lambda h: h["denoiser"].update(schedule={"kind": "zigzag"}),
    "schedule-huge": lambda h: h["denoiser"].update(schedule={"steps": 10**12}),
    "schedule-nan": lambda h: h["denoiser"].update(schedule={"beta_start": float("nan")}),
    "schedule-text": lambda h: h["denoiser"].update(schedule={"steps": "many"}),
    "schedule-key": lambda h: h["denoiser"].update(schedule={"gamma": 1}),
    "training-list": lambda h: h.update(training=[1, 2]),
    "format-other": lambda h: h.update(format="other"),
}


@pytest.mark.parametrize("mutation", list(HEADER_MUTATIONS))
@pytest.mark.parametrize("container", [".pt", ".safetensors"])
def test_damaged_headers_are_refused(files, tmp_path, mutation, container):
    header, state = _header_and_state(files["unet-bf"])
    HEADER_MUTATIONS[mutation](header)
    path = tmp_path / f"bad{container}"
    if container == ".pt":
        torch.save({**header, "state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, path, metadata={"biasprobe": json.dumps(header)})
    result = run_cli("info", path)
    assert_clean_error(result)


@pytest.mark.parametrize("metadata", ["[]", "null", "3", "{", '"text"', '{"format": "biasprobe"}'])
def test_malformed_safetensors_metadata_is_refused(files, tmp_path, metadata):
    from safetensors.torch import save_file

    _, state = _header_and_state(files["unet-bf"])
    save_file(state, tmp_path / "m.safetensors", metadata={"biasprobe": metadata})
    assert_clean_error(run_cli("info", tmp_path / "m.safetensors"))


# ---------------------------------------------------------------------------------------------- weights

WEIGHT_MUTATIONS = {
    "nan": lambda s, k: s.__setitem__(k, torch.full_like(s[k], float("nan"))),
    "inf": lambda s, k: s.__setitem__(k, torch.full_like(s[k], float("inf"))),
    "one-nan": lambda s, k: s[k].view(-1).__setitem__(0, float("nan")),
    "complex": lambda s, k: s.__setitem__(k, s[k].to(torch.complex64) * 1j),
    "missing": lambda s, k: s.pop(k),
    "extra": lambda s, k: s.__setitem__("surplus.weight", torch.zeros(2)),
    "shape": lambda s, k: s.__setitem__(k, torch.zeros(3, 3)),
    "empty": lambda s, k: s.clear(),
}


@pytest.mark.parametrize("mutation", list(WEIGHT_MUTATIONS))
@pytest.mark.parametrize("family", ["unet-bf", "dit"])
def test_damaged_native_weights_are_refused(files, tmp_path, family, mutation):
    header, state = _header_and_state(files[family])
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    WEIGHT_MUTATIONS[mutation](state, key)
    torch.save({**header, "state_dict": state}, tmp_path / "w.pt")
    assert_clean_error(run_cli("info", tmp_path / "w.pt"))
    with pytest.raises(BiasprobeError):
        bp.load(tmp_path / "w.pt")


def _kadkhodaie_state():
    from biasprobe.models import BiasFreeUNet

    torch.manual_seed(0)
    return {f"module.{k}": v for k, v in BiasFreeUNet(channels=1, num_blocks=2, base_width=4).state_dict().items()}


def _dit_state(width=384):
    from biasprobe.models.dit_reference import ClassConditionalDiT

    torch.manual_seed(0)
    network = ClassConditionalDiT(input_size=4, in_channels=4, patch_size=2, depth=1, width=width, heads=6,
                                  num_classes=10)
    return dict(network.state_dict())


FOREIGN_MUTATIONS = {
    "kadkhodaie-nan": (_kadkhodaie_state, lambda s: s["module.encoder.0.0.weight"].fill_(float("nan"))),
    "kadkhodaie-complex": (_kadkhodaie_state, lambda s: s.update({"module.mid_block.0.weight": s[
        "module.mid_block.0.weight"].to(torch.complex64)})),
    "kadkhodaie-missing": (_kadkhodaie_state, lambda s: s.pop("module.upsample.0.weight")),
    "kadkhodaie-flat-weight": (_kadkhodaie_state, lambda s: s.update({"module.encoder.0.0.weight": torch.zeros(4, 1)})),
    "kadkhodaie-shape": (_kadkhodaie_state, lambda s: s.update({"module.mid_block.0.weight": torch.zeros(2, 2, 3, 3)})),
    "kadkhodaie-text": (_kadkhodaie_state, lambda s: s.update({"module.encoder.0.0.weight": "weights"})),
    "kadkhodaie-bias": (_kadkhodaie_state, lambda s: s.update({"module.encoder.0.0.bias": torch.zeros(4)})),
    "dit-missing": (_dit_state, lambda s: s.pop("final_layer.linear.weight")),
    "dit-shape": (_dit_state, lambda s: s.update({"pos_embed": torch.zeros(1, 5, 384)})),
    "dit-flat-embedder": (_dit_state, lambda s: s.update({"x_embedder.proj.weight": torch.zeros(384)})),
    "dit-text": (_dit_state, lambda s: s.update({"pos_embed": "positions"})),
    "dit-nan": (_dit_state, lambda s: s["pos_embed"].fill_(float("nan"))),
    "dit-width-96": (lambda: _dit_state(96), lambda s: None),
    "dit-labels": (_dit_state, lambda s: s.update({"y_embedder.embedding_table.weight": torch.zeros(3)})),
    "dit-out-channels": (_dit_state, lambda s: s.update({"final_layer.linear.weight": torch.zeros(7, 384)})),
    "dit-mlp": (_dit_state, lambda s: s.update({"blocks.0.mlp.fc1.weight": torch.zeros(0, 384)})),
}


@pytest.mark.parametrize("case", list(FOREIGN_MUTATIONS))
def test_damaged_foreign_checkpoints_are_refused(tmp_path, case):
    make, mutate = FOREIGN_MUTATIONS[case]
    state = make()
    mutate(state)
    torch.save(state, tmp_path / "model.pt")
    assert_clean_error(run_cli("info", tmp_path / "model.pt"))


# ------------------------------------------------------------------------------------- other files


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width × height grey pixels (and holds almost no data)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    body = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", body) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _image_file(kind: str, path):
    from PIL import Image

    if kind == "bomb":
        path.write_bytes(_png_header(100_000, 100_000))
    elif kind == "rgba-transparent":
        Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(path)
    elif kind == "cmyk":
        Image.new("CMYK", (8, 8)).save(path)
    elif kind == "int32":
        Image.fromarray(np.full((8, 8), 70000, dtype=np.int32)).save(path)
    elif kind == "float-range":
        Image.fromarray(np.full((8, 8), 3.0, dtype=np.float32), mode="F").save(path)
    elif kind == "float-nan":
        Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32), mode="F").save(path)
    elif kind == "wrong-size":
        Image.new("L", (9, 8)).save(path)
    elif kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a picture")
    elif kind == "truncated":
        Image.new("L", (8, 8), 3).save(path)
        path.write_bytes(path.read_bytes()[:30])
    elif kind == "la-transparent":
        Image.new("LA", (8, 8), (5, 0)).save(path)


def _array_file(kind: str, path):
    arrays = {
        "npy-object": np.array([{"a": 1}] * 4, dtype=object),
        "npy-complex": np.ones((1, 8, 8), dtype=np.complex64),
        "npy-unicode": np.array(["abc"] * 64).reshape(1, 8, 8),
        "npy-structured": np.zeros((1, 8, 8), dtype=[("a", "f4"), ("b", "i4")]),
        "npy-int": np.ones((1, 8, 8), dtype=np.int64),
        "npy-bool": np.ones((1, 8, 8), dtype=bool),
        "npy-nan": np.full((1, 8, 8), np.nan, dtype=np.float32),
        "npy-inf": np.full((1, 8, 8), np.inf, dtype=np.float32),
        "npy-zero-size": np.zeros((1, 0, 8), dtype=np.float32),
        "npy-4d": np.zeros((1, 1, 8, 8), dtype=np.float32),
        "npy-channels": np.zeros((2, 8, 8), dtype=np.float32),
        "npy-size": np.zeros((1, 9, 8), dtype=np.float32),
        "npy-datetime": np.zeros((1, 8, 8), dtype="datetime64[s]"),
    }
    if kind == "npy-empty-file":
        path.write_bytes(b"")
    elif kind == "npy-truncated":
        np.save(path, np.zeros((1, 8, 8), dtype=np.float32))
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "npy-npz":
        np.savez(path.with_suffix(".npz"), a=np.zeros(3))
        os.replace(path.with_suffix(".npz"), path)
    else:
        np.save(path, arrays[kind], allow_pickle=kind == "npy-object")


IMAGE_KINDS = ["bomb", "rgba-transparent", "cmyk", "int32", "float-range", "float-nan", "wrong-size", "corrupt",
               "empty", "text", "truncated", "la-transparent"]
ARRAY_KINDS = ["npy-object", "npy-complex", "npy-unicode", "npy-structured", "npy-int", "npy-bool", "npy-nan",
               "npy-inf", "npy-zero-size", "npy-4d", "npy-channels", "npy-size", "npy-datetime", "npy-empty-file",
               "npy-truncated", "npy-npz"]


@pytest.mark.parametrize("kind", IMAGE_KINDS + ARRAY_KINDS)
def test_bad_images_and_arrays_are_refused(files, tmp_path, kind):
    suffix = ".npy" if kind.startswith("npy") else (".tif" if kind in ("cmyk", "int32", "float-range",
                                                                        "float-nan") else ".png")
    path = tmp_path / f"image{suffix}"
    (_array_file if kind.startswith("npy") else _image_file)(kind, path)
    result = run_cli("jacobian", files["unet-bf"], "--image", path, "--device", "cpu", "--out", tmp_path / "j.zarr")
    assert_clean_error(result)
    assert not (tmp_path / "j.zarr").exists()


CHECKPOINT_FILES = {
    "empty": lambda p: p.write_bytes(b""),
    "junk": lambda p: p.write_bytes(os.urandom(300)),
    "text": lambda p: p.write_text("checkpoint"),
    "list": lambda p: torch.save([1, 2, 3], p),
    "tensor": lambda p: torch.save(torch.zeros(3), p),
    "empty-dict": lambda p: torch.save({}, p),
    "numbers-dict": lambda p: torch.save({"a": 1}, p),
    "truncated-zip": lambda p: (torch.save({"w": torch.zeros(100)}, p), p.write_bytes(p.read_bytes()[:200])),
    "safetensors-junk": lambda p: p.with_suffix(".safetensors").write_bytes(b"\xff" * 40),
}


@pytest.mark.parametrize("kind", list(CHECKPOINT_FILES))
def test_unreadable_checkpoint_files_are_refused(tmp_path, kind):
    path = tmp_path / "c.pt"
    CHECKPOINT_FILES[kind](path)
    if kind.startswith("safetensors"):
        path = path.with_suffix(".safetensors")
    assert_clean_error(run_cli("info", path))


def test_a_named_pipe_as_checkpoint_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.pt")
    assert_clean_error(run_cli("info", tmp_path / "pipe.pt"), "not a regular file")


def test_an_empty_folder_and_a_long_path_are_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    assert_clean_error(run_cli("info", tmp_path / "folder"))
    assert_clean_error(run_cli("info", tmp_path / ("x" * 300 + ".pt")))


# ------------------------------------------------------------------------------------------ outputs


def _precious(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("precious")
    return path


OUTPUT_CASES = {
    "new-existing": (lambda f, t: (t / "e.pt").write_text("mine"), ["new", "unet-bf", "-o", "{t}/e.pt"], "exists"),
    "new-folder": (lambda f, t: _precious(t / "d.pt"), ["new", "unet-bf", "-o", "{t}/d.pt"], "folder"),
    "new-suffix": (None, ["new", "unet-bf", "-o", "{t}/x.txt"], ".pt"),
    "new-no-suffix": (None, ["new", "unet-bf", "-o", "{t}/model"], ".pt"),
    "new-file-parent": (lambda f, t: (t / "file").write_text("x"), ["new", "unet-bf", "-o", "{t}/file/x.pt"], "file"),
    "new-long-name": (None, ["new", "unet-bf", "-o", "{t}/" + "n" * 300 + ".pt"], "bytes"),
    "train-folder": (lambda f, t: _precious(t / "run.pt"),
                     ["train", "unet-bf", "--data", "discs", "--n-train", "4", "-o", "{t}/run.pt"], "folder"),
    "train-existing": (lambda f, t: (t / "done.pt").write_text("trained"),
                       ["train", "unet-bf", "--data", "discs", "--n-train", "4", "-o", "{t}/done.pt"], "exists"),
    "train-suffix": (None, ["train", "unet-bf", "--data", "discs", "--n-train", "4", "-o", "{t}/run.zip"], ".pt"),
    "jacobian-foreign-store": (lambda f, t: _precious(t / "mine.zarr"),
                               JACOBIAN[:4] + ["--out", "{t}/mine.zarr"], "did not write"),
    "jacobian-store-file": (lambda f, t: (t / "f.zarr").write_text("x"), JACOBIAN[:4] + ["--out", "{t}/f.zarr"],
                            "not a store"),
    "jacobian-figure-suffix": (None, [*JACOBIAN, "--figure", "{t}/x.xyz"], "--figure"),
    "jacobian-figure-folder": (lambda f, t: _precious(t / "fig.png"), [*JACOBIAN, "--figure", "{t}/fig.png"],
                               "folder"),
    "jacobian-figure-under-file": (lambda f, t: (t / "file").write_text("x"),
                                   [*JACOBIAN, "--figure", "{t}/file/j.png"], "file"),
    "locality-foreign-store": (lambda f, t: _precious(t / "mine.zarr"),
                               ["locality", "{dit}", "--device", "cpu", "--out", "{t}/mine.zarr"], "did not write"),
    "locality-figure-suffix": (None, ["locality", "{dit}", "--device", "cpu", "--out", "{t}/l.zarr", "--figure",
                                      "{t}/l.doc"], "--figure"),
    "gap-foreign-store": (lambda f, t: _precious(t / "g.zarr"),
                          ["gap", "{unet-bf}", "--data", "discs", "--n-train", "4", "--out", "{t}/g.zarr"],
                          "did not write"),
    "gap-figure-suffix": (None, ["gap", "{unet-bf}", "--data", "discs", "--n-train", "4", "--out", "{t}/g.zarr",
                                 "--figure", "{t}/g.xyz"], "--figure"),
    "sample-png-suffix": (None, ["sample", "{unet-bf}", "--out", "{t}/s.zarr", "--png", "{t}/s.jpg"], "--png"),
    "sample-png-under-file": (lambda f, t: (t / "file").write_text("x"),
                              ["sample", "{unet-bf}", "--out", "{t}/s.zarr", "--png", "{t}/file/s.png"], "file"),
    "sample-foreign-store": (lambda f, t: _precious(t / "s.zarr"), ["sample", "{unet-bf}", "--out", "{t}/s.zarr"],
                             "did not write"),
    "compare-out-file": (lambda f, t: (t / "cmp.zarr").write_text("x"),
                         ["compare", "{unet-bf}", "{unet-bf}", "--data", "discs", "--out", "{t}/cmp.zarr"],
                         "not a store folder"),
    "compare-foreign-store": (lambda f, t: _precious(t / "cmp.zarr"),
                              ["compare", "{unet-bf}", "{unet-bf}", "--data", "discs", "--out", "{t}/cmp.zarr"],
                              "did not write"),
    "compare-figure-suffix": (None, ["compare", "{unet-bf}", "{unet-bf}", "--data", "discs", "--out",
                                     "{t}/cmp.zarr", "--figure", "{t}/cmp.xyz"], "--figure"),
    "demo-out-file": (lambda f, t: (t / "demo").write_text("x"), ["demo", "--out", "{t}/demo"], "file"),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_bad_outputs_are_refused_before_work_and_nothing_is_lost(files, tmp_path, case):
    prepare, args, fragment = OUTPUT_CASES[case]
    if prepare:
        prepare(files, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = run_cli(*_fill(args, {**files, "t": tmp_path}))
    assert_clean_error(result, fragment)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


# ------------------------------------------------------------------------------------------- stores


def _store(path):
    bp.save(xr.Dataset({"v": ("x", np.arange(6.0))}), path)
    return path


def _edit_root(path, **attributes):
    metadata = json.loads((path / "zarr.json").read_text())
    metadata["attributes"].update(attributes)
    metadata.pop("consolidated_metadata", None)
    (path / "zarr.json").write_text(json.dumps(metadata))


def _edit_mark(path, value):
    """Set the completion mark of the store at ``path`` (``None``: remove it)."""
    group = path / "_biasprobe" / "zarr.json"
    metadata = json.loads(group.read_text())
    metadata["attributes"].pop("complete")
    if value is not None:
        metadata["attributes"]["complete"] = value
    group.write_text(json.dumps(metadata))


STORE_CASES = {
    "missing": lambda p: None,
    "file": lambda p: p.write_text("x"),
    "foreign": lambda p: xr.Dataset({"v": ("x", np.zeros(2))}).to_zarr(p, zarr_format=3),
    "newer": lambda p: _edit_root(_store(p), biasprobe_store_version=9),
    "version-text": lambda p: _edit_root(_store(p), biasprobe_store_version="1"),
    "incomplete": lambda p: _edit_mark(_store(p), False),
    "mark-group-gone": lambda p: (_store(p) / "_biasprobe" / "zarr.json").unlink(),
    "incomplete-version-1": lambda p: _edit_mark(_store(p), None) or _edit_root(p, biasprobe_store_version=1),
    "chunk-deleted": lambda p: [c.unlink() for c in (_store(p) / "v").rglob("c/*") if c.is_file()],
    "root-json-corrupt": lambda p: (_store(p) / "zarr.json").write_text("{"),
    "empty-folder": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("case", list(STORE_CASES))
def test_bad_stores_are_refused(tmp_path, case):
    path = tmp_path / "r.zarr"
    STORE_CASES[case](path)
    with pytest.raises(BiasprobeError):
        bp.open(path)
    from biasprobe.figures.base import as_dataset

    with pytest.raises(BiasprobeError):
        as_dataset(path)


def test_there_are_at_least_150_cases():
    total = (len(NUMERIC_CASES) + 2 * len(HEADER_MUTATIONS) + 6 + 2 * len(WEIGHT_MUTATIONS) + len(FOREIGN_MUTATIONS)
             + len(IMAGE_KINDS) + len(ARRAY_KINDS) + len(CHECKPOINT_FILES) + 3 + len(OUTPUT_CASES) + 2 * len(STORE_CASES))
    assert total >= 150, total
