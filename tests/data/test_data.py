"""The data sets: offline, deterministic, nested seeded subsets, disjoint twins and splits."""

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from biasprobe import data
from biasprobe.data.fashion_mnist import find_directory
from biasprobe.data.natural_patches import PHOTOS, load_photo
from biasprobe.errors import InputError


def fashion_mnist_installed() -> bool:
    try:
        find_directory(None)
    except InputError:
        return False
    return True


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_installed(), reason="Fashion-MNIST absent: apt-get install dataset-fashion-mnist"
)
BUILT_IN = [
    pytest.param("fashion-mnist", marks=needs_fashion_mnist),
    "natural-patches",
    "c-alpha",
    "discs",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any attempt to reach the network fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a data set tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def as_bytes(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


def test_names_and_descriptions():
    assert data.names() == ["fashion-mnist", "natural-patches", "c-alpha", "discs"]
    for name in [*data.names(), "folder:/somewhere", "npz:x.npz", "c-alpha:0.5"]:
        line = data.describe(name)
        assert line.startswith(name) and "\n" not in line


@pytest.mark.parametrize("name", ["mnist", "folder", "npz:", "discs:3", "c-alpha:-1", "natural-patches:0"])
def test_bad_names_are_input_errors(name):
    with pytest.raises(InputError) as error:
        data.load(name, n=2)
    if name == "mnist":
        assert all(known in str(error.value) for known in data.names())


@pytest.mark.parametrize("name", BUILT_IN)
def test_shape_range_determinism_and_nesting(name):
    images = data.load(name, n=40, seed=3)
    assert images.shape == (40, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, data.load(name, n=40, seed=3))
    assert torch.equal(data.load(name, n=10, seed=3), images[:10])
    assert not torch.equal(data.load(name, n=10, seed=4), images[:10])


@pytest.mark.parametrize("name", BUILT_IN)
def test_twin_subsets_and_splits_share_no_image(name):
    s1, s2 = data.load(name, n=200, subset="s1"), data.load(name, n=200, subset="s2")
    test = data.load(name, "test", n=200)
    assert not as_bytes(s1) & as_bytes(s2)
    assert not (as_bytes(s1) | as_bytes(s2)) & as_bytes(test)


@pytest.mark.parametrize("name", BUILT_IN)
def test_channels_and_size(name):
    grey = data.load(name, n=4, size=16)
    colour = data.load(name, n=4, size=16, channels=3)
    assert grey.shape == (4, 1, 16, 16) and colour.shape == (4, 3, 16, 16)
    assert torch.equal(colour, grey.expand(-1, 3, -1, -1))
    assert torch.allclose(data.load(name, n=4, size=16, channels=1), grey)


def test_request_errors():
    with pytest.raises(InputError, match="holds 5380 images, not 5381: ask for at most 5380"):
        data.load("natural-patches", n=5381)
    with pytest.raises(InputError, match="pass n"):
        data.load("discs")
    for arguments in ({"split": "validation"}, {"subset": "s3"}, {"channels": 2}, {"size": 0}, {"seed": -1}):
        with pytest.raises(InputError):
            data.load("discs", n=2, **arguments)
    with pytest.raises(InputError, match="train split only"):
        data.load("discs", "test", n=2, subset="s2")


@needs_fashion_mnist
def test_fashion_mnist_counts_padding_and_labels():
    assert len(data.load("fashion-mnist", subset="all")) == 60000
    assert len(data.load("fashion-mnist", subset="s2")) == 30000
    test, info = data.load("fashion-mnist", "test", return_info=True)
    assert test.shape == (10000, 1, 32, 32)
    assert sorted(info["index"]) == list(range(10000)) and set(info["label"]) == set(range(10))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (test[:, 0, border] == 0).all() and test[:, 0, 2:30, 2:30].amax() == 1


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr("biasprobe.data.fashion_mnist.DEBIAN_ROOT", tmp_path / "absent")
    monkeypatch.delenv("BIASPROBE_DATA_DIR", raising=False)
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist.*data_dir="):
        data.load("fashion-mnist", n=1, data_dir=tmp_path)


def test_natural_patches_come_from_disjoint_photos_as_recorded():
    train, train_info = data.load("natural-patches", subset="all", return_info=True)
    _, test_info = data.load("natural-patches", "test", return_info=True)
    assert len(train) >= 10_000
    assert torch.equal(train[:50], data.load("natural-patches", n=50))
    assert set(train_info["photo"]) == set(PHOTOS["train"]) and set(test_info["photo"]) == set(PHOTOS["test"])
    assert not set(PHOTOS["train"]) & set(PHOTOS["test"])
    assert len(as_bytes(train)) == len(train)
    for i in np.flatnonzero(train_info["scale"] == 2)[:20]:
        top, left = train_info["top"][i] // 2, train_info["left"][i] // 2
        photo = load_photo(train_info["photo"][i], 2)[0]
        assert torch.equal(train[i], photo[:, top : top + 32, left : left + 32])


@pytest.mark.parametrize("name", ["c-alpha", "c-alpha:0.3", "discs"])
def test_synthetic_images_depend_on_seed_split_and_index_only(name):
    images, info = data.load(name, n=8, size=48, return_info=True, subset="all")
    assert images.shape == (8, 1, 48, 48) and list(info["index"]) == list(range(8))
    s1, s2 = data.load(name, n=4, size=48), data.load(name, n=4, size=48, subset="s2")
    assert torch.equal(s1, images[0::2]) and torch.equal(s2, images[1::2])
    assert not torch.equal(data.load(name, "test", n=8, size=48), images)
    assert (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)) > 0.1).all()


def test_c_alpha_roughness_follows_alpha():
    def roughness(alpha: float) -> float:
        images = data.load(f"c-alpha:{alpha}", n=20, size=64)
        return (images.diff(dim=-1).abs().sum() + images.diff(dim=-2).abs().sum()).item()

    assert roughness(0.3) > roughness(1.0) > roughness(2.0)


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_reads_sorted_files_cropped_and_resized(tmp_path):
    rng = np.random.default_rng(0)
    for name in ["b.png", "a.jpg", "c.PNG"]:
        write_png(tmp_path / "train" / name, rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    write_png(tmp_path / "test" / "z.png", np.full((20, 20, 3), 255, np.uint8))
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    images, info = data.load(f"folder:{tmp_path}", subset="all", size=16, return_info=True)
    assert images.shape == (3, 3, 16, 16) and images.min() >= 0 and images.max() <= 1
    order = np.argsort(info["index"])
    assert [name.rsplit("/", 1)[-1] for name in info["file"][order]] == ["a.jpg", "b.png", "c.PNG"]
    grey = data.load(f"folder:{tmp_path}", "test", size=20, channels=1)
    assert grey.shape == (1, 1, 20, 20) and torch.allclose(grey, torch.ones_like(grey))


def test_folder_of_grey_images_without_splits(tmp_path):
    write_png(tmp_path / "only.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    images = data.load(f"folder:{tmp_path}", subset="all", size=8)
    assert torch.allclose(images[0, 0] * 255, torch.arange(64.0).reshape(8, 8))
    with pytest.raises(InputError, match="no test/"):
        data.load(f"folder:{tmp_path}", "test")


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_folder_errors(tmp_path, setup):
    folder = tmp_path / "images"
    if setup == "empty":
        folder.mkdir()
    with pytest.raises(InputError, match=str(folder)):
        data.load(f"folder:{folder}")


def test_npz_of_uint8_and_float_arrays(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    test = rng.random((4, 12, 12, 3)).astype(np.float32)
    np.savez(tmp_path / "set.npz", train=train, test=test)
    images, info = data.load(f"npz:{tmp_path / 'set.npz'}", subset="all", size=8, return_info=True)
    assert torch.equal(images[:, 0] * 255, torch.from_numpy(train[info["index"]]).float())
    assert data.load(f"npz:{tmp_path / 'set.npz'}", "test", size=6).shape == (4, 3, 6, 6)
    with pytest.raises(InputError, match="at most 5"):
        data.load(f"npz:{tmp_path / 'set.npz'}", n=6)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((2, 4, 4), np.uint8)}, "no 'train' array"),
        ({"train": np.full((2, 4, 4), 2.0)}, "outside"),
        ({"train": np.zeros((2, 4), np.uint8)}, "shape"),
        ({"train": np.zeros((2, 4, 4), np.int64)}, "int64"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=message):
        data.load(f"npz:{tmp_path / 'bad.npz'}")
    with pytest.raises(InputError, match="no file"):
        data.load(f"npz:{tmp_path / 'missing.npz'}")


@needs_fashion_mnist
def test_fashion_mnist_found_through_the_environment(tmp_path, monkeypatch):
    copy = tmp_path / "fashion-mnist"
    copy.mkdir()
    for path in find_directory(None).iterdir():
        (copy / path.name).symlink_to(path)
    monkeypatch.setenv("BIASPROBE_DATA_DIR", str(tmp_path))
    assert find_directory(None) == copy
    from_environment = data.load("fashion-mnist", "test", n=5)
    assert torch.equal(from_environment, data.load("fashion-mnist", "test", n=5, data_dir=copy))
