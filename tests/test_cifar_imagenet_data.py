"""CIFAR python pickles and ImageNet-style image folders: real formats written, read back."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lmcpipe.data import DataError, cifar, imagefolder, testing
from lmcpipe.data.cifar import load_cifar, locate_cifar, read_cifar
from lmcpipe.data.imagefolder import read_imagefolder
from lmcpipe.data.testing import write_cifar, write_imagefolder


def random_cifar(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, classes, size=n)
    labels[:2] = (0, classes - 1)
    return images, labels


# --- CIFAR -----------------------------------------------------------------------------------
@pytest.mark.parametrize("classes, n_train, n_test", [(10, 53, 20), (100, 120, 30)])
def test_cifar_round_trip(tmp_path, classes, n_train, n_test):
    layout = cifar.layout_for(classes)
    images, labels = random_cifar(n_train + n_test, classes)
    folder = write_cifar(tmp_path / layout.folder, images, labels, classes, (n_train, n_test))

    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted((*layout.train_files, *layout.test_files, layout.meta_file))
    first = (folder / layout.train_files[0]).read_bytes()
    assert first.startswith(b"\x80\x02}(U\x04data")  # Python 2 cPickle, protocol 2
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in first

    for split, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        x, y = read_cifar(folder, split, classes)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape == (len(images[sl]), 3, 32, 32) and y.shape == (len(images[sl]),)
        assert x.is_contiguous()
        np.testing.assert_array_equal(x.numpy(), images[sl])
        np.testing.assert_array_equal(y.numpy(), labels[sl])

    meta = cifar.unpickle(folder / layout.meta_file)
    key = b"label_names" if classes == 10 else b"fine_label_names"
    assert len(meta[key]) == classes


def test_cifar_rows_are_rgb_planes(tmp_path):
    """A row of b"data" is 1024 red, then green, then blue values, each plane row-major."""
    row = np.zeros(3072, dtype=np.uint8)
    row[0], row[1], row[32], row[1024 + 5], row[2048 + 1023] = 10, 11, 12, 20, 30
    batch = {b"data": row[None], b"labels": [3]}
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in (*cifar.CIFAR["cifar10"].train_files, "test_batch"):
        (folder / name).write_bytes(testing.dumps_py2(batch))
    x, y = read_cifar(folder, "test", 10)
    assert x[0, 0, 0, 0] == 10 and x[0, 0, 0, 1] == 11 and x[0, 0, 1, 0] == 12
    assert x[0, 1, 0, 5] == 20 and x[0, 2, 31, 31] == 30 and int(x.sum()) == 83
    assert y.tolist() == [3]
    assert read_cifar(folder, "train", 10)[0].shape == (5, 3, 32, 32)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar_accepts_python3_pickles(tmp_path, protocol):
    images, labels = random_cifar(7, 100, seed=protocol)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, sl in (("train", slice(0, 4)), ("test", slice(4, None))):
        batch = {b"data": images[sl].reshape(-1, 3072), b"fine_labels": labels[sl].tolist(),
                 b"batch_label": b"x"}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    x, y = read_cifar(folder, "test", 100)
    np.testing.assert_array_equal(x.numpy(), images[4:])
    np.testing.assert_array_equal(y.numpy(), labels[4:])


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_locate_cifar_layouts(tmp_path, dataset):
    layout = cifar.CIFAR[dataset]
    images, labels = random_cifar(12, layout.classes)
    assert locate_cifar(dataset, tmp_path) is None
    with pytest.raises(DataError, match=layout.folder):
        load_cifar(dataset, tmp_path)

    torchvision_dir = write_cifar(tmp_path / layout.folder, images, labels, layout.classes, (8, 4))
    assert locate_cifar(dataset, tmp_path) == torchvision_dir
    ours = write_cifar(tmp_path / dataset / layout.folder, images, labels, layout.classes, (8, 4))
    assert locate_cifar(dataset, tmp_path) == ours  # lmcpipe's layout comes first

    (ours / layout.test_files[0]).unlink()  # incomplete: fall back to the complete one
    assert locate_cifar(dataset, tmp_path) == torchvision_dir
    loaded = load_cifar(dataset, tmp_path)
    np.testing.assert_array_equal(loaded["train_x"].numpy(), images[:8])
    np.testing.assert_array_equal(loaded["test_y"].numpy(), labels[8:])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(tmp_path):
    good = testing.dumps_py2({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})
    return {
        "truncated": (good[: len(good) // 2], "not a CIFAR python pickle"),
        "garbage": (b"\x00not a pickle at all", "not a CIFAR python pickle"),
        "empty": (b"", "not a CIFAR python pickle"),
        "list": (pickle.dumps([1, 2, 3]), "expected a dict"),
        "no_labels": (testing.dumps_py2({b"data": np.zeros((2, 3072), np.uint8)}),
                      "missing key.*labels"),
        "str_keys": (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}),
                     "missing key"),
        "bad_shape": (testing.dumps_py2({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}),
                      r"expected uint8 \(N, 3072\)"),
        "label_count": (testing.dumps_py2({b"data": np.zeros((2, 3072), np.uint8),
                                         b"labels": [1]}), "1 labels for 2 images"),
        "label_range": (testing.dumps_py2({b"data": np.zeros((2, 3072), np.uint8),
                                         b"labels": [1, 10]}), r"expected \[0, 9\]"),
        "exploit": (pickle.dumps({b"data": _Exploit(tmp_path / "pwned")}, protocol=2),
                    "refusing to load global"),
    }


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty", "list", "no_labels",
                                  "str_keys", "bad_shape", "label_count", "label_range",
                                  "exploit"])
def test_bad_cifar_pickle_raises_data_error_naming_the_file(tmp_path, case):
    content, message = _bad_files(tmp_path)[case]
    images, labels = random_cifar(12, 10)
    folder = write_cifar(tmp_path / "cifar-10-batches-py", images, labels, 10, (8, 4))
    bad = folder / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_cifar(folder, "train", 10)
    assert str(bad) in str(info.value)
    assert not (tmp_path / "pwned").exists()
    read_cifar(folder, "test", 10)  # the other split is unaffected


def test_missing_cifar_file_is_named(tmp_path):
    images, labels = random_cifar(12, 10)
    folder = write_cifar(tmp_path / "cifar-10-batches-py", images, labels, 10, (8, 4))
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5: missing"):
        read_cifar(folder, "train", 10)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_cifar_cache_is_bit_identical_decoded_once_and_rekeyed(tmp_path, monkeypatch, dataset):
    from lmcpipe import data

    layout = cifar.CIFAR[dataset]
    images, labels = random_cifar(40, layout.classes)
    folder = write_cifar(tmp_path / dataset / layout.folder, images, labels, layout.classes,
                         (30, 10))
    calls, real = [], cifar.read_batch

    def counted(path, *args):
        calls.append(path)
        return real(path, *args)

    monkeypatch.setattr(cifar, "read_batch", counted)
    n_files = len(layout.train_files) + len(layout.test_files)
    plain = data.load(dataset, tmp_path, cache=False)
    assert len(calls) == n_files and not (tmp_path / ".cache").exists()
    cold = data.load(dataset, tmp_path)
    warm = data.load(dataset, tmp_path)
    assert len(calls) == 2 * n_files  # the warm load read no pickle
    for name in ("train_x", "train_y", "test_x", "test_y", "mean", "std"):
        for loaded in (cold, warm):
            got, want = getattr(loaded, name), getattr(plain, name)
            assert got.dtype == want.dtype and torch.equal(got, want), name
    cached = sorted(p.name for p in (tmp_path / ".cache").iterdir())
    assert len(cached) == 6 and not any(n.endswith(".tmp") for n in cached)
    stem = cached[0].split(".")[0]
    assert np.load(tmp_path / ".cache" / f"{stem}.train_y.npy").dtype == np.uint8

    # an edited pickle is a new entry, holding the new data
    images[35] = 255 - images[35]
    write_cifar(folder, images, labels, layout.classes, (30, 10))
    edited = data.load(dataset, tmp_path)
    assert len(calls) == 3 * n_files
    assert len(list((tmp_path / ".cache").glob(f"{dataset}-*.json"))) == 2
    assert not torch.equal(edited.test_x, plain.test_x)
    assert torch.equal(edited.test_x, data.load(dataset, tmp_path, cache=False).test_x)


def test_cifar_cache_failed_decode_leaves_nothing_that_looks_finished(tmp_path):
    from lmcpipe import data

    images, labels = random_cifar(12, 10)
    folder = write_cifar(tmp_path / "cifar-10-batches-py", images, labels, 10, (8, 4))
    (folder / "test_batch").write_bytes(b"\x00not a pickle at all")
    with pytest.raises(DataError, match="test_batch: not a CIFAR python pickle"):
        data.load("cifar10", tmp_path)
    assert [p.suffix for p in (tmp_path / ".cache").iterdir()] == [".lock"]


# --- ImageNet-style folders ------------------------------------------------------------------
def test_imagefolder_round_trip(tmp_path):
    root = write_imagefolder(tmp_path / "imagenet", n_classes=3, per_class=4, size=16)
    assert imagefolder.locate(tmp_path) == root
    suffixes = {p.suffix for p in (root / "train").rglob("*") if p.is_file()}
    assert suffixes == {".JPEG", ".jpg", ".png"}

    x, y, names = read_imagefolder(root / "train", 16)
    assert x.shape == (12, 3, 16, 16) and x.dtype == torch.uint8
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert names == [f"n{c:08d}" for c in range(3)]
    val_x, val_y, _ = read_imagefolder(root / "val", 16, classes=names, workers=1)
    assert val_x.shape == (12, 3, 16, 16)
    # classes are told apart by colour: every RGB (non-grayscale) image is nearest its class mean
    means = x.float().mean(dim=(2, 3))
    colour = [i for i in range(12) if i % 4 != 2]
    centres = torch.stack([means[y == c][[0, 1, 3]].mean(0) for c in range(3)])
    val_means = val_x.float().mean(dim=(2, 3))
    assert torch.cdist(val_means[colour], centres).argmin(1).tolist() == val_y[colour].tolist()

    x1, _, _ = read_imagefolder(root / "train", 16, workers=1)
    assert torch.equal(x, x1)  # thread pool and serial decode agree


def test_imagefolder_class_order_and_resize_crop(tmp_path):
    split = tmp_path / "train"
    for name in ("zebra", "ant", "moose"):
        (split / name).mkdir(parents=True)
    # wide image: red | green | blue stripes of 20 columns, 60 x 30 -> 40 x 20 (stripes 13.3
    # wide) -> crop columns 10..29: red 0..3.3, green 3.3..16.7, blue 16.7..20
    wide = np.zeros((30, 60, 3), np.uint8)
    wide[:, :20, 0] = wide[:, 20:40, 1] = wide[:, 40:, 2] = 255
    Image.fromarray(wide).save(split / "ant" / "a.png")
    # tall image: horizontal bands, 24 x 72 -> 20 x 60 -> crop rows 20..39 (all of the middle)
    tall = np.zeros((72, 24, 3), np.uint8)
    tall[:24, :, 0] = tall[24:48, :, 1] = tall[48:, :, 2] = 255
    Image.fromarray(tall).save(split / "moose" / "b.PNG")
    Image.fromarray(np.full((5, 5, 3), 77, np.uint8)).save(split / "zebra" / "c.jpeg")
    (split / "zebra" / "notes.txt").write_text("not an image")  # ignored

    x, y, names = read_imagefolder(split, 20)
    assert names == ["ant", "moose", "zebra"] and y.tolist() == [0, 1, 2]
    assert x.shape == (3, 3, 20, 20)
    ant = x[0].int()
    assert (ant[0, :, :3] == 255).all() and (ant[0, :, 5:] == 0).all()
    assert (ant[1, :, 5:16] == 255).all() and (ant[1, :, :3] == 0).all()
    assert (ant[2, :, 18:] == 255).all() and (ant[2, :, :16] == 0).all()
    expected = np.asarray(Image.fromarray(wide).resize((40, 20), Image.Resampling.BILINEAR)
                          .crop((10, 0, 30, 20)))
    np.testing.assert_array_equal(ant.permute(1, 2, 0).numpy(), expected)
    moose = x[1].int()
    assert (moose[1, 2:-2] == 255).all() and (moose[0, 2:-2] == 0).all()  # green middle band
    assert (x[2].int() - 77).abs().max() <= 2  # upscaled 5x5 JPEG of a flat grey


def test_imagefolder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="image folder missing"):
        read_imagefolder(tmp_path / "nowhere", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        read_imagefolder(tmp_path / "empty", 8)

    root = write_imagefolder(tmp_path / "imagenet", n_classes=2, per_class=2, size=8)
    (root / "train" / "n00000099").mkdir()
    with pytest.raises(DataError, match="n00000099: class folder holds no"):
        read_imagefolder(root / "train", 8)
    (root / "train" / "n00000099").rmdir()

    bad = root / "train" / "n00000001" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    with pytest.raises(DataError, match="cannot decode image") as info:
        read_imagefolder(root / "train", 8)
    assert str(bad) in str(info.value)
    truncated = root / "val" / "n00000000" / "truncated.png"
    png = (root / "val" / "n00000000").glob("*.png").__next__().read_bytes()
    truncated.write_bytes(png[: len(png) // 2])
    with pytest.raises(DataError, match="truncated.png: cannot decode"):
        read_imagefolder(root / "val", 8, workers=2)

    with pytest.raises(DataError, match="differ from the expected classes"):
        read_imagefolder(root / "train", 8, classes=["n00000000", "other"])


def test_imagefolder_cache_is_decoded_once_and_memory_mapped(tmp_path, monkeypatch):
    from lmcpipe import data
    from lmcpipe.augment import channel_stats

    root = write_imagefolder(tmp_path / "imagenet", n_classes=3, per_class=3, size=12)
    expected, labels, names = read_imagefolder(root / "train", 12)
    x, y, classes, meta = imagefolder.cached_split(root / "train", 12)
    assert torch.equal(x, expected) and torch.equal(y, labels) and classes == names
    mean, std = channel_stats(expected)
    assert torch.allclose(torch.tensor(meta["mean"]), mean)
    assert torch.allclose(torch.tensor(meta["std"]), std)
    cached = sorted(p.name for p in (root / ".cache").iterdir() if not p.name.endswith(".lock"))
    assert len(cached) == 2 and cached[0].startswith("train-12px-")  # .json, .npy, no temps
    assert not x.numpy().flags.owndata  # a view of the mapped file, not a copy in memory

    imagefolder.cached_split(root / "val", 12, names)
    # a second load maps the files and decodes nothing
    monkeypatch.setattr(imagefolder, "load_image", lambda *a: pytest.fail("decoded again"))
    again, _, _, _ = imagefolder.cached_split(root / "train", 12)
    assert torch.equal(again, expected)
    ds = data.load("imagenet", tmp_path, "cpu", 12)
    assert ds.host_resident and ds.train_x.dtype == torch.uint8
    assert torch.equal(ds.train_x, expected) and torch.allclose(ds.mean, mean)
    batch = ds.prepare(ds.train_x[:2])
    assert batch.dtype == torch.float32 and batch.device == ds.device
    monkeypatch.undo()

    # another resolution or an edited folder is a different cache entry
    (root / "train" / "n00000000" / "extra.png").write_bytes(
        (root / "train" / "n00000000").glob("*.png").__next__().read_bytes())
    grown, _, _, _ = imagefolder.cached_split(root / "train", 12)
    assert len(grown) == len(expected) + 1
    assert len(list((root / ".cache").glob("train-12px-*.npy"))) == 2


def test_imagefolder_cache_failed_decode_leaves_nothing_that_looks_finished(tmp_path):
    root = write_imagefolder(tmp_path / "imagenet", n_classes=2, per_class=2, size=8)
    (root / "val" / "n00000001" / "broken.JPEG").write_bytes(b"\xff\xd8 not a JPEG")
    with pytest.raises(DataError, match="broken.JPEG: cannot decode"):
        imagefolder.cached_split(root / "val", 8, workers=2)
    left = [p.name for p in (root / ".cache").iterdir() if not p.name.endswith(".lock")]
    assert left == []
