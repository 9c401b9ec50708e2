"""IDX files, dataset discovery and loading, and the errors for bad or missing data."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lmcpipe import data, provenance
from lmcpipe.data import DATASETS, IDX_FILES, DataError, idx, read_idx
from lmcpipe.data.testing import write_idx
from lmcpipe.hparams import to_json
from tests.helpers import GZIPPED, N_TEST, N_TRAIN, file_name, tiny_hparams, write_dataset


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


# --- which copy was read (Data.source, Data.note, the records) -------------------------------
def _partial_root(tmp_path) -> Path:
    """A data root whose ``fashion_mnist/`` lacks its test labels, with a complete copy in
    torchvision's layout under it (``FashionMNIST/raw``), found next."""
    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    (root / "fashion_mnist" / file_name("test_y")).unlink()
    write_dataset(root / "FashionMNIST" / "raw", seed=3)
    return root


def test_a_partial_folder_passed_over_is_said_and_kept(tmp_path, capsys):
    root = _partial_root(tmp_path)
    expected = (f"{root}/fashion_mnist/ lacks t10k-labels-idx1-ubyte[.gz]; "
                f"using {root}/FashionMNIST/raw")
    assert data.note("fashion_mnist", root) == expected
    loaded = data.load("fashion_mnist", root)
    assert loaded.source == str((root / "FashionMNIST" / "raw").resolve())
    assert loaded.note == expected
    assert capsys.readouterr().err == f"lmcpipe: fashion_mnist: {expected}\n"


def test_the_data_roots_own_folder_has_no_note(data_root, dataset, capsys):
    assert data.note("fashion_mnist", data_root) == ""
    assert dataset.source == str((data_root / "fashion_mnist").resolve())
    assert dataset.note == ""
    assert data.load("fashion_mnist", data_root).note == ""
    assert capsys.readouterr().err == ""


def test_missing_message_names_what_a_partial_folder_lacks(tmp_path):
    root = tmp_path / "root"
    write_dataset(root / "mnist")
    for key in ("train_x", "test_y"):
        (root / "mnist" / file_name(key)).unlink()
    assert data.find("mnist", root) is None
    assert data.missing_message("mnist", root).endswith(
        f"({root}/mnist/ lacks train-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])")


def test_train_log_and_record_say_which_copy_trained_the_run(tmp_path):
    """The real stage: its log (stderr) and its run record name the copy read and why."""
    root = _partial_root(tmp_path)
    init, model = tmp_path / "init.pt", tmp_path / "run" / "model.pt"
    hp = to_json(tiny_hparams(root, steps=2, eval_steps=(), checkpoint_every=0))
    lmcpipe = [sys.executable, "-m", "lmcpipe"]
    subprocess.run([*lmcpipe, "init", "--hparams", hp, "--seed", "0", "--out", str(init)],
                   check=True, capture_output=True, timeout=120)
    done = subprocess.run([*lmcpipe, "train", "--hparams", hp, "--seed", "0", "--start",
                           str(init), "--order", "0", "--model-out", str(model)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    note = f"{root}/fashion_mnist/ lacks t10k-labels-idx1-ubyte[.gz]; using {root}/FashionMNIST/raw"
    assert f"lmcpipe: fashion_mnist: {note}" in done.stderr.splitlines()
    record = provenance.read_record(model)
    assert record["data_source"] == str((root / "FashionMNIST" / "raw").resolve())
    assert record["data_note"] == note


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


# --- the decode-once cache (lmcpipe.data.cache) -------------------------------------------
def _same_data(a: data.Data, b: data.Data) -> bool:
    """Bit-for-bit equality of every tensor, with dtypes and shapes."""
    names = ("train_x", "train_y", "test_x", "test_y", "mean", "std")
    return all(getattr(a, n).dtype == getattr(b, n).dtype and torch.equal(getattr(a, n),
                                                                          getattr(b, n))
               for n in names)


def _count_read_idx(monkeypatch) -> list:
    calls = []
    real = idx.read_idx

    def counted(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(idx, "read_idx", counted)
    return calls


def _entries(root, suffix=".json"):
    return sorted(p.name for p in (root / ".cache").glob(f"*{suffix}"))


def test_idx_cache_is_bit_identical_and_decoded_once(tmp_path, monkeypatch):
    import json

    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    calls = _count_read_idx(monkeypatch)
    plain = data.load("fashion_mnist", root, cache=False)
    assert len(calls) == 4 and not (root / ".cache").exists()  # cache=False touches no cache

    cold = data.load("fashion_mnist", root)
    assert len(calls) == 8 and _same_data(cold, plain)
    names = sorted(p.name for p in (root / ".cache").iterdir())
    stem = names[0].split(".")[0]
    assert stem.startswith("fashion_mnist-")
    assert names == sorted(f"{stem}.{s}" for s in ("json", "lock", "train_x.npy", "train_y.npy",
                                                   "test_x.npy", "test_y.npy"))  # no temps
    meta = json.loads((root / ".cache" / f"{stem}.json").read_text())
    assert meta["counts"] == {"train": N_TRAIN, "test": N_TEST}
    assert torch.equal(torch.tensor(meta["mean"]), plain.mean)  # float32 survives JSON
    assert torch.equal(torch.tensor(meta["std"]), plain.std)
    for key in IDX_FILES:  # uint8 arrays, exactly the decoded files
        cached = np.load(root / ".cache" / f"{stem}.{key}.npy")
        assert cached.dtype == np.uint8
        np.testing.assert_array_equal(cached, read_idx(root / "fashion_mnist" / file_name(key)))

    # a warm load decodes nothing and opens no source file; images are memory-mapped
    monkeypatch.setattr(idx.gzip, "open", lambda *a, **k: pytest.fail("source opened"))
    warm = data.load("fashion_mnist", root)
    assert len(calls) == 8 and _same_data(warm, plain)
    raw = idx.read_splits("fashion_mnist", root, 28)
    assert not raw["train_x"].numpy().flags.owndata  # a view of the mapped file
    assert raw["train_y"].dtype == torch.int64 and len(calls) == 8


def test_idx_cache_edited_source_gets_a_new_entry(tmp_path, monkeypatch):
    import os

    root = tmp_path / "root"
    write_dataset(root / "mnist")
    first = data.load("mnist", root)
    path = root / "mnist" / file_name("test_y")
    labels = read_idx(path).copy()
    labels[:5] = (labels[:5] + 1) % 10
    write_idx(labels, path)  # same size
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # coarse clocks
    calls = _count_read_idx(monkeypatch)
    edited = data.load("mnist", root)
    assert len(calls) == 4 and len(_entries(root)) == 2
    assert torch.equal(edited.test_y[:5], (first.test_y[:5] + 1) % 10)
    assert _same_data(edited, data.load("mnist", root, cache=False))


class _Killed(BaseException):
    """Stands for a SIGKILL or KeyboardInterrupt halfway through writing the cache."""


def test_idx_cache_failed_decode_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    from lmcpipe.data import cache as datacache

    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    path = root / "fashion_mnist" / file_name("test_x")
    good = path.read_bytes()
    path.write_bytes(good[:-100])  # truncated: read_idx raises
    with pytest.raises(DataError, match="header says"):
        data.load("fashion_mnist", root)
    assert [p.suffix for p in (root / ".cache").iterdir()] == [".lock"]

    path.write_bytes(good)
    real, saved = datacache._save_npy, []

    def dies_after_one(tmp, array):
        if saved:
            raise _Killed
        real(tmp, array)
        saved.append(tmp)

    monkeypatch.setattr(datacache, "_save_npy", dies_after_one)
    with pytest.raises(_Killed):
        data.load("fashion_mnist", root)
    left = [p.name for p in (root / ".cache").iterdir()]
    assert _entries(root) == [] and not any(n.endswith(".tmp") for n in left)
    monkeypatch.undo()
    calls = _count_read_idx(monkeypatch)  # the incomplete entry is decoded again
    assert _same_data(data.load("fashion_mnist", root),
                      data.load("fashion_mnist", root, cache=False))
    assert len(calls) == 8 and len(_entries(root)) == 1


def test_idx_cache_unwritable_root_decodes_without_cache(tmp_path, capsys):
    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    (root / ".cache").write_text("a file where the cache folder would go")  # mkdir fails
    first = data.load("fashion_mnist", root)
    again = data.load("fashion_mnist", root)
    err = capsys.readouterr().err
    assert err.count("cannot write the data cache") == 1 and "decoding without a cache" in err
    assert _same_data(first, data.load("fashion_mnist", root, cache=False))
    assert _same_data(again, first)


def test_idx_cache_concurrent_loads_decode_once(tmp_path, monkeypatch):
    import threading
    import time

    root = tmp_path / "root"
    write_dataset(root / "fashion_mnist")
    calls, real = [], idx.read_idx

    def slow(path):
        calls.append(path)
        time.sleep(0.05)  # widen the window in which both loads would decode without the lock
        return real(path)

    monkeypatch.setattr(idx, "read_idx", slow)
    start, results = threading.Barrier(2), []

    def job():
        start.wait()
        results.append(data.load("fashion_mnist", root))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and _same_data(*results)
    assert len(calls) == 4 and len(_entries(root)) == 1  # flock: one decoder, one mapper


# --- import cost -------------------------------------------------------------------------------
def test_dataset_facts_import_no_torch(tmp_path):
    """Snakemake's rules, the config checker and the models read dataset facts and look for
    files at every start: that must not import torch (about 3 s), numpy or PIL. A subprocess,
    since this one has torch loaded already."""
    code = f"""
import sys
import lmcpipe.data
from lmcpipe.data import (DATASETS, download_address, download_targets, find, missing_message,
                          network_answers)
from lmcpipe.data.registry import DatasetInfo
for name in DATASETS:
    find(name, {str(tmp_path)!r}), missing_message(name, {str(tmp_path)!r})
    download_targets(name, {str(tmp_path)!r}), download_address(name)
print(sorted(m for m in ("torch", "numpy", "PIL", "torchvision") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "LMCPIPE_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "load" in dir(data) and data.load.__module__ == "lmcpipe.data.loader"  # lazily
