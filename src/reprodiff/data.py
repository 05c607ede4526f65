"""Datasets: offline 8x8 digits, synthetic MoLRG, and CIFAR-10 for the ``gpu`` profile.

Every dataset is an :class:`ImageData`: NCHW float32 images in [-1, 1] plus integer labels.
Training subsets are *nested* (``subset(data, N)`` is contained in ``subset(data, M)`` for N < M),
as in the paper's sweep over CIFAR-10 subsets.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .runtime import derive_seed

__all__ = [
    "ImageData",
    "DatasetUnavailableError",
    "ResourceUnavailableError",
    "DATASETS",
    "load_dataset",
    "split_holdout",
    "keep_classes",
    "subset",
    "MoLRG",
]


class ResourceUnavailableError(RuntimeError):
    """Something that must be downloaded (a dataset, descriptor weights) could not be obtained."""


class DatasetUnavailableError(ResourceUnavailableError):
    """A dataset that must be downloaded could not be obtained (typically: no internet)."""


@dataclass(frozen=True)
class ImageData:
    """Images ``(N, C, H, W)`` float32 in [-1, 1] with labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be NCHW, got shape {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def select(self, index: torch.Tensor, name: str | None = None) -> "ImageData":
        return ImageData(self.images[index], self.labels[index], name or self.name, self.num_classes)


def _digits() -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are integers 0..16
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    return ImageData(images, labels, "digits", 10)


def default_data_root() -> Path:
    """Where downloaded datasets are stored: ``$REPRODIFF_DATA`` or ``~/.cache/reprodiff/data``."""
    return Path(os.environ.get("REPRODIFF_DATA", Path.home() / ".cache" / "reprodiff" / "data"))


def download_file(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream ``url`` to ``dest`` with a progress bar and a connection timeout."""
    import urllib.request

    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _unavailable(name: str, root: Path, files: str, exc: Exception) -> DatasetUnavailableError:
    return DatasetUnavailableError(
        f"dataset {name!r} is not in {root} and could not be downloaded ({type(exc).__name__}: {exc}). "
        f"The 'gpu' profile needs internet access once (e.g. on Colab), or copy the {files} into {root} "
        "(set REPRODIFF_DATA to change it). The default 'cpu' profile uses scikit-learn's bundled digits "
        "and works offline."
    )


#: CIFAR-10's python archive (Krizhevsky 2009) and its MD5, as published on the dataset's page
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"


def _fetch_cifar10(root: Path) -> None:
    """Download, verify and unpack CIFAR-10 into ``root / CIFAR10_FOLDER`` (all or nothing)."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".cifar10-") as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        download_file(CIFAR10_URL, archive)
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        if md5 != CIFAR10_MD5:
            raise OSError(f"the archive's MD5 is {md5}, expected {CIFAR10_MD5} (a damaged download)")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        target = root / CIFAR10_FOLDER
        if target.exists():  # a partial copy: replaced by the verified one
            shutil.rmtree(target)
        os.replace(Path(tmp) / CIFAR10_FOLDER, target)


def _cifar10(root: Path | None, train: bool) -> ImageData:
    """CIFAR-10 from its python release (the ``cifar-10-batches-py`` folder torchvision also keeps),
    downloaded on first use.

    Read here rather than through torchvision: torchvision's wheels are built against one torch
    build (a CUDA one on PyPI), and the CPU torch this book pins cannot import them, so a
    torchvision loader could not run in the CPU test suite that proves the ``gpu`` code path. The
    format is five training pickles and one test pickle, each ``{"data": uint8 (n, 3072) in CHW
    order, "labels": [int]}``.
    """
    import numpy as np

    root = Path(root) if root is not None else default_data_root()
    folder = root / CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        try:
            _fetch_cifar10(root)
        except Exception as exc:  # URLError, socket errors, a bad checksum, a full disk
            raise _unavailable("cifar10", root, f"'{CIFAR10_FOLDER}' folder of {CIFAR10_URL}", exc) from exc
    images, labels = [], []
    for n in names:
        with open(folder / n, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # the dataset's own format (trusted source, MD5-checked)
        images.append(torch.as_tensor(np.asarray(entry["data"], dtype=np.uint8)).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"])
    data = torch.cat(images).float() / 255.0 * 2.0 - 1.0
    return ImageData(data.contiguous(), torch.as_tensor(labels, dtype=torch.int64), "cifar10", 10)


DATASETS = ("digits", "cifar10")


def load_dataset(name: str, root: str | Path | None = None, train: bool = True) -> ImageData:
    """Load a dataset by name.

    Args:
        name: ``"digits"`` (scikit-learn's 1,797 real 8x8 digits, offline), ``"cifar10"`` (downloaded
            on first use).
        root: download directory (default :func:`default_data_root`).
        train: train or test split (digits has a single split).

    Raises:
        ValueError: unknown name.
        DatasetUnavailableError: CIFAR-10 that is neither on disk nor downloadable.
    """
    if name == "digits":
        return _digits()
    if name == "cifar10":
        return _cifar10(Path(root) if root else None, train)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (or use MoLRG)")


def _permutation(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def split_holdout(data: ImageData, n_holdout: int, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Split off ``n_holdout`` images that no training subset will ever contain.

    Returns ``(pool, holdout)``. The held-out part calibrates copy thresholds (how close do *novel*
    real images come to a training set?).
    """
    if not 0 <= n_holdout < len(data):
        raise ValueError(f"n_holdout={n_holdout} must be in [0, {len(data)}) for {data.name}")
    perm = _permutation(len(data), derive_seed(seed, "holdout"))
    return data.select(perm[n_holdout:]), data.select(perm[:n_holdout], f"{data.name}-holdout")


def keep_classes(data: ImageData, classes: tuple[int, ...] | None) -> ImageData:
    """The images of ``data`` whose label is in ``classes`` (all of them for ``None``), in order.

    Raises ``ValueError`` for a class ``data`` does not have.
    """
    if classes is None:
        return data
    unknown = sorted(set(classes) - set(range(data.num_classes)))
    if unknown:
        raise ValueError(f"classes {unknown} are not in {data.name} (labels 0-{data.num_classes - 1})")
    keep = torch.isin(data.labels, torch.tensor(sorted(classes)))
    return data.select(keep.nonzero().squeeze(1), f"{data.name}{{{','.join(map(str, sorted(classes)))}}}")


def subset(data: ImageData, n: int | None, seed: int = 0, offset: int = 0) -> ImageData:
    """The first ``n`` images of a seeded permutation: nested in ``n`` for a fixed ``seed``.

    ``offset`` skips the permutation's first ``offset`` images: ``subset(d, n, s, offset=n)`` is
    disjoint from ``subset(d, n, s)`` (two models trained on non-overlapping data).
    ``n=None`` returns all images (still in permuted order).
    """
    if n is None:
        n = len(data)
    if not 1 <= n or offset < 0 or offset + n > len(data):
        raise ValueError(
            f"a training subset of N={n}" + (f" after the first {offset}" if offset else "") +
            f" was requested but {data.name} has only {len(data)} images available for training"
        )
    name = f"{data.name}[{n}]" if not offset else f"{data.name}[{offset}:{offset + n}]"
    return data.select(_permutation(len(data), seed)[offset:offset + n], name)


class MoLRG:
    """A mixture of low-rank Gaussians: K classes, each a random ``d``-dim subspace of pixel space.

    A sample of class k is ``x = scale * U_k z`` with ``z ~ N(0, I_d)`` and ``U_k`` an orthonormal
    ``(D, d)`` basis. Its exact denoiser is known in closed form (:meth:`denoiser`), so it is the
    synthetic data on which "memorizing the training set" and "learning the distribution" can be
    told apart analytically (Wang et al. 2024).

    Args:
        shape: image shape ``(C, H, W)``; ``D = C*H*W``.
        num_classes: K.
        dim: subspace dimension d (d >= 8 separates the regimes cleanly at D = 64).
        scale: standard deviation along each subspace direction; ``None`` (default) picks
            ``0.5 * sqrt(D / d)``, so each pixel has standard deviation 0.5 like image data in
            [-1, 1] (EDM's sigma_data), and models are trained at the scale they are built for.
        seed: seeds the bases.
    """

    def __init__(self, shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 4, dim: int = 8,
                 scale: float | None = None, seed: int = 0) -> None:
        self.shape = tuple(shape)
        self.num_classes = num_classes
        self.dim = dim
        self.seed = seed
        D = math.prod(self.shape)
        if not 0 < dim <= D:
            raise ValueError(f"subspace dim {dim} must be in (0, {D}]")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.scale = float(scale) if scale is not None else 0.5 * math.sqrt(D / dim)
        g = torch.Generator().manual_seed(seed)
        bases = torch.randn(num_classes, D, dim, generator=g, dtype=torch.float64)
        self.bases = torch.linalg.qr(bases).Q  # (K, D, d), orthonormal columns

    def sample(self, n: int, seed: int = 0) -> ImageData:
        """Draw ``n`` labelled samples (deterministic in ``seed``, and nested: the first ``m < n`` are
        ``sample(m, seed)``), so MoLRG training sets grow like the digits' nested subsets."""
        if n < 1:
            raise ValueError(f"MoLRG needs a positive number of samples, got {n}")
        block = 1024
        labels, z = [], []
        for b in range(-(-n // block)):
            g = torch.Generator().manual_seed(derive_seed(seed, "molrg-block", b))
            labels.append(torch.randint(self.num_classes, (block,), generator=g))
            z.append(torch.randn(block, self.dim, 1, generator=g, dtype=torch.float64))
        labels, z = torch.cat(labels)[:n], torch.cat(z)[:n]
        x = self.scale * (self.bases[labels] @ z).squeeze(-1)
        return ImageData(x.float().reshape(n, *self.shape), labels, f"molrg-K{self.num_classes}-d{self.dim}",
                         self.num_classes)

    def subspace_energy(self, images: torch.Tensor) -> torch.Tensor:
        """For each image, the largest fraction of its energy that lies in one component's subspace:
        ``max_k ||U_k^T x||^2 / ||x||^2``, 1 for every sample of the mixture. A model that learned
        only the mixture's Gaussian approximation spreads samples over the span of all subspaces
        and scores well below 1. Returns ``(B,)`` float64."""
        x = images.reshape(images.shape[0], -1).double()
        if x.shape[1] != self.bases.shape[1]:
            raise ValueError(f"images have {x.shape[1]} values, the mixture lives in {self.bases.shape[1]} dimensions")
        inside = torch.einsum("bd,kde->bke", x, self.bases).pow(2).sum(-1)  # (B, K)
        return inside.max(1).values / x.pow(2).sum(1).clamp_min(1e-12)

    def denoiser(self) -> "torch.nn.Module":
        """The exact posterior-mean denoiser of this distribution (see :class:`reprodiff.denoisers.MoLRGDenoiser`)."""
        from .denoisers import MoLRGDenoiser

        return MoLRGDenoiser(self.bases, self.scale, self.shape)
