import socket
import struct
import time

import numpy as np
import pytest
import torch

from unlearnlib import data as uld
from unlearnlib.data import (
    DatasetUnavailableError,
    ForgetSplit,
    LabelledData,
    check_disjoint,
    class_forget_split,
    load_dataset,
    random_forget_split,
)


def test_mnist5k_is_real_stratified_and_fixed(mnist5k):
    assert mnist5k.input_shape == (1, 28, 28)
    assert (len(mnist5k.train), len(mnist5k.test)) == (4000, 1000)
    assert mnist5k.train.x.dtype == torch.float32
    assert 0.0 <= mnist5k.train.x.min() and mnist5k.train.x.max() <= 1.0
    assert torch.equal(mnist5k.train.y.bincount(), torch.full((10,), 400))
    assert torch.equal(mnist5k.test.y.bincount(), torch.full((10,), 100))
    again = load_dataset("mnist5k")
    assert torch.equal(again.train.x, mnist5k.train.x) and torch.equal(again.test.y, mnist5k.test.y)
    # real digits: pixels are mostly background, with some ink in every image
    assert 0.05 < (mnist5k.train.x > 0.5).float().mean() < 0.3


def test_loaded_tensors_are_independent_copies():
    a = load_dataset("digits")
    a.train.x.zero_()
    b = load_dataset("digits")
    assert b.train.x.abs().sum() > 0


def test_digits(digits):
    assert digits.input_shape == (1, 8, 8)
    assert len(digits.train) + len(digits.test) == 1797
    assert digits.train.x.max() <= 1.0
    assert set(digits.test.y.tolist()) == set(range(10))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*mnist5k.*digits"):
        load_dataset("imagenet")


def test_class_split_is_disjoint_and_complete(mnist5k):
    split = class_forget_split(mnist5k, [7, 2])
    assert split.classes == (2, 7)
    n = len(mnist5k.train)
    assert len(split.forget) == 800 and len(split.retain) == n - 800
    assert torch.equal(torch.cat([split.forget, split.retain]).sort().values, torch.arange(n))
    assert set(mnist5k.train.y[split.forget].tolist()) == {2, 7}
    assert not set(mnist5k.train.y[split.retain].tolist()) & {2, 7}
    assert set(mnist5k.test.y[split.test_forget].tolist()) == {2, 7}
    assert len(split.test_forget) + len(split.test_retain) == len(mnist5k.test)
    single = class_forget_split(mnist5k, 3)
    assert single.classes == (3,) and len(single.forget) == 400


@pytest.mark.parametrize(
    "classes, message",
    [
        ([10], r"unknown class id\(s\) \[10\].*0\.\.9"),
        ([-1], r"unknown class id"),
        ([], "forget set is empty"),
        ([1, 1], "repeat"),
        (list(range(10)), "cannot forget every class"),
    ],
)
def test_class_split_errors(mnist5k, classes, message):
    with pytest.raises(ValueError, match=message):
        class_forget_split(mnist5k, classes)


def test_random_split_is_seeded_and_disjoint(mnist5k):
    a = random_forget_split(mnist5k, fraction=0.1, seed=1)
    b = random_forget_split(mnist5k, fraction=0.1, seed=1)
    c = random_forget_split(mnist5k, fraction=0.1, seed=2)
    assert len(a.forget) == 400 and len(a.retain) == 3600
    assert torch.equal(a.forget, b.forget)
    assert not torch.equal(a.forget, c.forget)
    assert not set(a.forget.tolist()) & set(a.retain.tolist())
    assert len(random_forget_split(mnist5k, count=25).forget) == 25
    assert a.test_forget is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fraction=0.0), "strictly between 0 and 1"),
        (dict(fraction=1.0), "strictly between 0 and 1"),
        (dict(fraction=1.5), "strictly between 0 and 1"),
        (dict(fraction=-0.1), "strictly between 0 and 1"),
        (dict(fraction=1e-6), "forget set is empty"),
        (dict(count=0), "forget set is empty"),
        (dict(count=4000), "leaves no retain data"),
        (dict(), "exactly one of"),
        (dict(fraction=0.1, count=5), "exactly one of"),
        (dict(count=2.5), "must be an integer"),
    ],
)
def test_random_split_errors(mnist5k, kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_forget_split(mnist5k, **kwargs)


def test_overlapping_and_repeated_indices_are_rejected():
    with pytest.raises(ValueError, match="overlapping indices: 'forget' and 'retain' share 2"):
        ForgetSplit(forget=torch.tensor([1, 2, 3]), retain=torch.tensor([3, 4, 1]))
    with pytest.raises(ValueError, match="'forget' repeats indices"):
        ForgetSplit(forget=torch.tensor([1, 1]), retain=torch.tensor([2]))
    with pytest.raises(ValueError, match="forget set is empty"):
        ForgetSplit(forget=torch.tensor([], dtype=torch.long), retain=torch.tensor([2]))
    check_disjoint(a=[0, 1], b=[2], c=np.array([3]))


def test_labelled_data_validation():
    with pytest.raises(ValueError, match="5 samples but y has 4"):
        LabelledData(torch.zeros(5, 1, 2, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        LabelledData(torch.zeros(2, 1, 2, 2), torch.zeros(2))
    d = LabelledData(torch.arange(4.0).reshape(4, 1, 1, 1), torch.arange(4))
    assert d.subset([3, 0]).y.tolist() == [3, 0]
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 4\)"):
        d.subset([4])


# ------------------------------------------------------------------------ online datasets


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "svhn"])
def test_offline_download_fails_at_once_and_leaves_nothing(tmp_path, monkeypatch, name):
    _no_network(monkeypatch)
    root = tmp_path / "data"
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset(name, root=root)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert name in message and "'mnist5k'" in message and "'digits'" in message
    assert not root.exists()


def test_failed_download_cleans_its_staging_folder(tmp_path, monkeypatch):
    # the connection probe succeeds, then the download itself fails halfway
    root = tmp_path / "data"
    root.mkdir()
    (root / "keep.txt").write_text("unrelated")
    monkeypatch.setattr(uld, "_any_host_reachable", lambda hosts: True)
    _no_network(monkeypatch)
    with pytest.raises(DatasetUnavailableError, match="downloading dataset 'mnist'.*mnist5k"):
        load_dataset("mnist", root=root)
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt"]


def test_missing_dataset_without_download(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="download=True"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_incomplete_existing_folder_is_reported(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DatasetUnavailableError, match="exists but does not hold a complete"):
        load_dataset("mnist", root=tmp_path)


def _write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_downloaded_idx_files_load_as_tensors(tmp_path, name, folder):
    raw = tmp_path / name / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    ds = load_dataset(name, root=tmp_path, download=False)
    assert ds.input_shape == (1, 28, 28) and (len(ds.train), len(ds.test)) == (6, 4)
    assert ds.train.x.dtype == torch.float32 and ds.train.x.max() <= 1.0
    assert ds.test.y.tolist() == [0, 1, 2, 3]


def test_default_data_root_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_DATA", str(tmp_path / "elsewhere"))
    assert uld.default_data_root() == tmp_path / "elsewhere"


def test_import_touches_no_network():
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def boom(*a, **k): raise AssertionError('network used at import')\n"
        "socket.socket.connect = boom\nsocket.getaddrinfo = boom\n"
        "import unlearnlib, unlearnlib.notebook\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
