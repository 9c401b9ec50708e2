"""IDX files, dataset discovery and loading, and the errors for bad or missing data."""

from __future__ import annotations

import gzip
import re
import struct

import numpy as np
import pytest
import torch

from lmcpipe import data
from lmcpipe.data import DATASETS, IDX_FILES, DataError, read_idx, write_idx
from tests.helpers import GZIPPED, N_TEST, N_TRAIN, file_name, write_dataset


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path, suffix, shape):
    rng = np.random.default_rng(len(shape))
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(array, path)

    back = read_idx(path)
    assert back.shape == shape
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, array)

    stored = path.read_bytes()
    if suffix == ".gz":
        assert stored[:2] == b"\x1f\x8b"  # really gzipped
        stored = gzip.decompress(stored)
    header = bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    assert stored == header + array.tobytes()


def test_read_idx_decodes_big_endian_int32(tmp_path):
    values = np.array([[1, -2, 70000], [0, 5, -(2**31)]], dtype=">i4")
    path = tmp_path / "ints.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + values.tobytes())
    np.testing.assert_array_equal(read_idx(path), values.astype(np.int64))


def test_load_shapes_dtypes_and_normalisation(data_root, dataset):
    info = DATASETS["fashion_mnist"]
    assert dataset.train_x.shape == (N_TRAIN, *info.input_shape)
    assert dataset.test_x.shape == (N_TEST, *info.input_shape)
    assert dataset.train_y.shape == (N_TRAIN,)
    assert dataset.test_y.shape == (N_TEST,)
    assert dataset.train_x.dtype == dataset.test_x.dtype == torch.float32
    assert dataset.train_y.dtype == dataset.test_y.dtype == torch.int64

    assert abs(float(dataset.train_x.mean())) < 1e-5
    assert abs(float(dataset.train_x.std()) - 1) < 1e-4

    folder = data_root / "fashion_mnist"
    raw = {key: read_idx(folder / file_name(key)) for key in IDX_FILES}
    np.testing.assert_array_equal(dataset.train_y.numpy(), raw["train_y"])
    np.testing.assert_array_equal(dataset.test_y.numpy(), raw["test_y"])
    assert set(dataset.train_y.tolist()) == set(range(10))
    # the test split is normalised with the training split's statistics
    train = torch.from_numpy(raw["train_x"].astype(np.float32) / 255)
    test = torch.from_numpy(raw["test_x"].astype(np.float32) / 255)
    expected = ((test - train.mean()) / train.std()).reshape(-1, 1, 28, 28)
    torch.testing.assert_close(dataset.test_x, expected)
    own_stats = ((test - test.mean()) / test.std()).reshape(-1, 1, 28, 28)
    assert not torch.allclose(dataset.test_x, own_stats, atol=1e-4)


def test_locate_finds_the_dataset_folder_with_mixed_gzip(data_root):
    files = data.locate("fashion_mnist", data_root)
    assert files is not None
    assert set(files) == set(IDX_FILES)
    for key, path in files.items():
        assert path == data_root / "fashion_mnist" / file_name(key)
        assert path.name.endswith(".gz") == GZIPPED[key]


@pytest.mark.parametrize(
    ("dataset", "subdir"),
    [("fashion_mnist", "FashionMNIST/raw"), ("fashion_mnist", "fashion_mnist/raw"),
     ("mnist", "MNIST/raw"), ("mnist", "mnist")],
)
def test_locate_torchvision_and_raw_layouts(tmp_path, dataset, subdir):
    root = tmp_path / "root"
    write_dataset(root / subdir)
    files = data.locate(dataset, root)
    assert files is not None
    assert {p.parent for p in files.values()} == {root / subdir}
    loaded = data.load(dataset, root)
    assert loaded.train_x.shape == (N_TRAIN, 1, 28, 28)


def test_locate_skips_an_incomplete_folder(tmp_path):
    root = tmp_path / "root"
    write_dataset(root / "mnist")
    (root / "mnist" / file_name("test_y")).unlink()
    assert data.locate("mnist", root) is None
    write_dataset(root / "MNIST" / "raw", seed=3)
    files = data.locate("mnist", root)
    assert files is not None
    assert {p.parent for p in files.values()} == {root / "MNIST" / "raw"}


def _corrupt_copy(tmp_path, key, transform):
    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    path = root / "fashion_mnist" / file_name(key)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
        path.write_bytes(gzip.compress(transform(raw)))
    else:
        path.write_bytes(transform(raw))
    return root, path


@pytest.mark.parametrize(
    ("key", "transform", "words"),
    [
        ("train_y", lambda b: b"\x08\x03" + b[2:], "bad magic"),
        ("train_x", lambda b: b"\x01" + b[1:], "bad magic"),  # gzipped file, bad magic inside
        ("test_x", lambda b: b[:-100], "header says"),  # truncated payload
        ("test_y", lambda b: b + b"\x00", "header says"),  # trailing bytes
    ],
    ids=["magic-raw", "magic-gz", "truncated", "trailing"],
)
def test_corrupt_file_raises_data_error_naming_it(tmp_path, key, transform, words):
    root, path = _corrupt_copy(tmp_path, key, transform)
    with pytest.raises(DataError) as err:
        data.load("fashion_mnist", root)
    assert str(path) in str(err.value)
    assert words in str(err.value)


def test_truncated_header_raises_data_error(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10))  # 1 of 3 dimensions
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_idx(path)


def test_truncated_gzip_raises_data_error(tmp_path):
    path = tmp_path / "cut.idx.gz"
    write_idx(np.zeros((50, 28, 28), np.uint8), path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_idx(path)


def test_wrong_image_size_is_refused(tmp_path):
    root = tmp_path / "root"
    write_dataset(root / "mnist")
    write_idx(np.zeros((N_TEST, 20, 20), np.uint8), root / "mnist" / file_name("test_x"))
    with pytest.raises(DataError, match=r"mnist test images have shape \(20, 20\)"):
        data.load("mnist", root)


def test_missing_offline_lists_where_to_put_files(tmp_path, monkeypatch):
    asked = []

    def offline(host, timeout=3.0):
        asked.append(host)
        return False

    monkeypatch.setattr(data, "network_answers", offline)
    root = tmp_path / "empty"
    assert DATASETS["mnist"].system_dirs == ()
    with pytest.raises(DataError) as err:
        data.load("mnist", root)
    message = str(err.value)
    # load() may or may not ask whether a download could work, but never downloads
    assert asked in ([], [DATASETS["mnist"].download_host])
    assert "'mnist' not found" in message
    for folder in (root / "mnist", root / "mnist" / "raw", root / "MNIST" / "raw"):
        assert str(folder) in message
    for stem in IDX_FILES.values():
        assert stem + "[.gz]" in message
    assert "\n" not in message
    assert not root.exists()  # nothing was created or downloaded


def test_offline_switch_answers_without_the_network(monkeypatch):
    def no_socket(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setenv("LMCPIPE_OFFLINE", "1")
    monkeypatch.setattr(data.socket, "create_connection", no_socket)
    assert data.network_answers(DATASETS["mnist"].download_host) is False


def test_unknown_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "network_answers", lambda *a, **k: pytest.fail("network touched"))
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        data.load("svhn", tmp_path)


def test_label_count_must_match_image_count(tmp_path):
    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    write_idx(np.zeros(N_TEST - 1, np.uint8), root / "fashion_mnist" / file_name("test_y"))
    with pytest.raises(DataError, match="labels for"):
        data.load("fashion_mnist", root)
