"""Pictures read exactly into [0, 1], whatever their Pillow mode, or refused."""

import numpy as np
import pytest
import torch
from PIL import Image

from biasprobe.errors import InputError
from biasprobe.images import read_image


def test_sixteen_bit_grey_and_float_pictures_are_exact(tmp_path):
    values = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    read = read_image(tmp_path / "g16.png", (1, 8, 8))[0].double().numpy()
    np.testing.assert_allclose(read, values / 65535, atol=1e-7)  # float32 round-off only
    floats = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tif")
    assert torch.equal(read_image(tmp_path / "f.tif", (1, 8, 8))[0], torch.from_numpy(floats))


@pytest.mark.parametrize(("mode", "colour", "expected"), [
    ("1", 1, [1.0]), ("L", 51, [0.2]), ("RGB", (255, 0, 51), [1.0, 0.0, 0.2]), ("RGBA", (0, 255, 0, 255), [0, 1, 0]),
    ("LA", (102, 255), [0.4]),
])
def test_each_mode_maps_to_the_unit_interval(tmp_path, mode, colour, expected):
    Image.new(mode, (4, 4), colour).save(tmp_path / "p.png")
    channels = len(expected)
    read = read_image(tmp_path / "p.png", (channels, 4, 4))
    torch.testing.assert_close(read[:, 0, 0], torch.tensor(expected, dtype=torch.float32))


def test_palette_grey_to_colour_and_colour_to_luma(tmp_path):
    Image.new("RGB", (4, 4), (255, 0, 51)).convert("P").save(tmp_path / "p.png")
    torch.testing.assert_close(read_image(tmp_path / "p.png", (3, 4, 4))[:, 0, 0], torch.tensor([1.0, 0.0, 0.2]))
    Image.new("L", (4, 4), 51).save(tmp_path / "g.png")
    torch.testing.assert_close(read_image(tmp_path / "g.png", (3, 4, 4))[:, 0, 0], torch.full((3,), 0.2))
    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "r.png")
    torch.testing.assert_close(read_image(tmp_path / "r.png", (1, 4, 4))[0, 0, 0], torch.tensor(0.299))


def test_resizing_keeps_sixteen_bit_precision(tmp_path):
    Image.fromarray(np.full((16, 16), 12345, dtype=np.uint16)).save(tmp_path / "g16.png")
    read = read_image(tmp_path / "g16.png", (1, 8, 8), resize=True)
    torch.testing.assert_close(read, torch.full((1, 8, 8), 12345 / 65535))


@pytest.mark.parametrize("mode", ["CMYK", "LAB"])
def test_modes_without_an_exact_conversion_are_refused(tmp_path, mode):
    Image.new(mode, (4, 4)).save(tmp_path / "p.tif")
    with pytest.raises(InputError, match=mode):
        read_image(tmp_path / "p.tif", (3, 4, 4))
