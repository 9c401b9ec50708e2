"""Datasets lmcpipe does not ship: a user's image folder, torchvision's sets by name, and a
user's code (an import path, an entry point of a real distribution on disk). Real files only:
PNG and JPEG images, IDX files that torchvision's own reader loads, installed metadata."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lmcpipe import data, plugins
from lmcpipe.augment import AUGMENTATIONS, channel_stats
from lmcpipe.data import DATASETS, DataError, UserDataset, imagefolder, user
from lmcpipe.data.base import AUGMENT_NAMES
from lmcpipe.data.imagefolder import read_imagefolder
from lmcpipe.data.testing import write_imagefolder, write_torchvision_mnist

BUILTIN = ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet"]


@pytest.fixture(autouse=True)
def fresh_resolution():
    """Each test sees the entry points and user datasets as they are now, and leaves none
    behind (resolution is cached per process)."""
    def clear() -> None:
        plugins.entry_points.cache_clear()
        user._resolve.cache_clear()
        user.user_dataset.cache_clear()

    clear()
    yield
    clear()


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_augment_names_are_the_augmentations():
    assert set(AUGMENT_NAMES) == set(AUGMENTATIONS)


def test_builtins_iterate_and_user_syntaxes_are_names():
    assert list(DATASETS) == BUILTIN and len(DATASETS) == 5
    assert DATASETS["cifar10"].augment == "cifar" and DATASETS["imagenet"].image_folder
    for name in ("imagefolder:anything", "torchvision:Nope", "somepkg.mod:Thing"):
        assert name in DATASETS  # by form: resolving it is DATASETS[name]'s job
    assert "svhn" not in DATASETS and DATASETS.get("svhn") is None
    with pytest.raises(DataError) as err:
        DATASETS["svhn"]
    assert "unknown dataset 'svhn'" in one_line(err) and "torchvision:SVHN" in str(err.value)
    with pytest.raises(KeyError):  # a Mapping: an unknown key is a KeyError too
        DATASETS["svhn"]
    with pytest.raises(DataError, match="'imagefolder:nowhere'"):
        DATASETS.get("imagefolder:nowhere")  # a user name that fails says why, never None


# --- imagefolder:<path> ----------------------------------------------------------------------
def make_folder(root: Path, splits=("train", "test"), per_class: int = 4) -> Path:
    """3 classes of real JPEG (RGB, grey) and PNG (RGB, RGBA) images of varied sizes."""
    return write_imagefolder(root, n_classes=3, per_class=per_class, size=10, seed=1,
                             splits=splits)


def test_image_folder_facts_load_and_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the path is relative to the working directory, as written
    folder = make_folder(tmp_path / "xray")
    name = "imagefolder:xray"
    first = sorted((folder / "train" / "n00000000").iterdir())[0]
    side = min(Image.open(first).size)
    info = DATASETS[name]
    assert (info.format, info.input_shape, info.num_classes, info.train_size, info.augment) \
        == ("userfolder", (3, side, side), 3, 12, "none")
    assert info.image_folder and data.check(name) == info
    assert data.find(name, tmp_path / "data") == [Path("xray/train"), Path("xray/test")]
    assert data.code_files(name) == [] and data.code_tag(name) == ""

    ds = data.load(name, tmp_path / "data", "cpu")
    expected, labels, _ = read_imagefolder(folder / "train", side)
    assert ds.host_resident and ds.train_x.shape == (12, 3, side, side)
    assert torch.equal(ds.train_x, expected) and ds.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.test_x.shape == (12, 3, side, side) and ds.test_y.tolist() == labels.tolist()
    mean, std = channel_stats(expected)  # the training split's statistics
    assert torch.allclose(ds.mean, mean) and torch.allclose(ds.std, std)
    batch = ds.prepare(ds.train_x)  # normalised per batch, on the device
    assert batch.dtype == torch.float32
    assert torch.allclose(batch.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert ds.source == str(folder.resolve())

    cache = folder / ".cache"
    (meta_path,) = cache.glob(f"train-{side}px-*.json")
    meta = json.loads(meta_path.read_text())
    assert meta["classes"] == ["n00000000", "n00000001", "n00000002"]
    assert torch.allclose(torch.tensor(meta["mean"]), mean)  # recorded with the cache
    arrays = sorted(cache.glob("*.npy"))
    stamps = [p.stat().st_mtime_ns for p in arrays]
    monkeypatch.setattr(imagefolder, "load_image", lambda *a: pytest.fail("decoded again"))
    again = data.load(name, tmp_path / "data", "cpu")
    assert torch.equal(again.train_x, ds.train_x)
    assert sorted(cache.glob("*.npy")) == arrays and [p.stat().st_mtime_ns for p in arrays] \
        == stamps
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    small = data.load(name, tmp_path / "data", "cpu", image_size=6)  # train.image_size
    assert small.train_x.shape == (12, 3, 6, 6)
    # an edited image is a new cache entry: the key hashes names, sizes and mtimes
    Image.new("RGB", (31, 17), (200, 10, 10)).save(first, "JPEG" if first.suffix == ".JPEG"
                                                   else "PNG")
    edited = data.load(name, tmp_path / "data", "cpu")
    assert len(list(cache.glob(f"train-{side}px-*.npy"))) == 2
    assert not torch.equal(edited.train_x[0], ds.train_x[0])


def test_image_folder_prefers_val_to_test(tmp_path):
    folder = make_folder(tmp_path / "both", splits=("train", "val"), per_class=2)
    (folder / "test" / "other").mkdir(parents=True)  # left alone: val/ is the held-out split
    name = f"imagefolder:{folder}"
    assert DATASETS[name].num_classes == 3
    assert data.find(name, tmp_path) == [folder / "train", folder / "val"]


def test_image_folder_errors_are_one_line_naming_the_problem(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        DATASETS[f"imagefolder:{missing}"]
    assert f"folder {missing} not found" in one_line(err)

    folder = tmp_path / "f"
    folder.mkdir()
    with pytest.raises(DataError) as err:
        DATASETS[f"imagefolder:{folder}"]
    assert f"{folder} has no train/ folder" in one_line(err)
    (folder / "train").mkdir()
    with pytest.raises(DataError) as err:
        data.check(f"imagefolder:{folder}")
    assert f"{folder} has no val/ or test/ folder" in one_line(err)
    (folder / "test").mkdir()
    with pytest.raises(DataError) as err:
        DATASETS[f"imagefolder:{folder}"]
    assert f"{folder / 'train'}: no class folders" in one_line(err)

    make_folder(folder, per_class=2)
    (folder / "test" / "n00000002").rename(folder / "test" / "zebra")
    with pytest.raises(DataError) as err:
        DATASETS[f"imagefolder:{folder}"]
    assert "only in train/: n00000002; only in test/: zebra" in one_line(err)
    (folder / "test" / "zebra").rename(folder / "test" / "n00000002")

    (folder / "train" / "n00000003").mkdir()
    (folder / "test" / "n00000003").mkdir()
    with pytest.raises(DataError) as err:
        DATASETS[f"imagefolder:{folder}"]
    assert f"{folder / 'train' / 'n00000003'}: class folder holds no" in one_line(err)
    (folder / "train" / "n00000003").rmdir()
    (folder / "test" / "n00000003").rmdir()

    broken = folder / "test" / "n00000001" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError) as err:
        data.load(f"imagefolder:{folder}", tmp_path)
    assert f"{broken}: cannot decode image" in one_line(err)
    assert "replace or remove the file" in str(err.value)

    first = sorted((folder / "train" / "n00000000").iterdir())[0]
    first.write_bytes(b"not an image at all")
    other = f"imagefolder:{folder}/"  # another name: facts are cached per name
    with pytest.raises(DataError) as err:
        DATASETS[other]
    assert f"{first}: cannot read the image" in one_line(err)


# --- torchvision:<Name> ----------------------------------------------------------------------
def test_torchvision_kmnist_offline_is_read_by_torchvision_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCPIPE_OFFLINE", "1")
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 10, 30)
    test = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8), rng.integers(0, 10, 12)
    raw = write_torchvision_mnist(tmp_path, "KMNIST", train, test)
    assert raw == tmp_path / "torchvision" / "KMNIST" / "raw"
    name = "torchvision:KMNIST"
    info = data.check(name, tmp_path)
    assert (info.format, info.input_shape, info.num_classes, info.torchvision_name) == \
        ("converted", (1, 28, 28), 10, "KMNIST")
    assert data.code_tag(name).startswith("torchvision 0.") and data.code_files(name) == []

    ds = data.load(name, tmp_path)
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.train_x.dtype == torch.float32
    assert ds.train_y.tolist() == train[1].tolist() and ds.test_y.tolist() == test[1].tolist()
    pixels = (ds.train_x * ds.std + ds.mean) * 255  # normalised by the training pixels
    assert np.abs(pixels[:, 0].numpy() - train[0]).max() < 1e-3
    assert ds.source == str(raw.resolve())
    (side,) = (tmp_path / ".cache").glob("torchvision_KMNIST-*.json")
    assert json.loads(side.read_text())["counts"] == {"train": 30, "test": 12}
    stamp = side.stat().st_mtime_ns
    again = data.load(name, tmp_path)  # from the cache, not converted again
    assert torch.equal(again.train_x, ds.train_x) and side.stat().st_mtime_ns == stamp
    assert len(list((tmp_path / ".cache").glob("*.json"))) == 1


def test_torchvision_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LMCPIPE_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        DATASETS["torchvision:Omniglot"]
    message = one_line(err)
    assert "'torchvision:Omniglot': not a torchvision dataset" in message
    assert "KMNIST" in message and "SVHN" in message and "lmcpipe.datasets" in message
    with pytest.raises(DataError, match="did you mean torchvision:CIFAR100"):
        DATASETS["torchvision:cifar100"]

    for call in (lambda: data.check("torchvision:USPS", tmp_path),
                 lambda: data.load("torchvision:USPS", tmp_path)):
        with pytest.raises(DataError) as err:
            call()
        assert ("'torchvision:USPS' is not on disk and cannot be downloaded here"
                in one_line(err))
        assert f"usps.bz2, usps.t.bz2 under {tmp_path / 'torchvision'}/" in str(err.value)
    assert not (tmp_path / "torchvision").exists()  # nothing downloaded, nothing created

    images = np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.uint8)
    raw = write_torchvision_mnist(tmp_path, "KMNIST", images, images)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03 truncated")
    with pytest.raises(DataError) as err:
        data.load("torchvision:KMNIST", tmp_path)
    assert f"torchvision cannot read its test split from {tmp_path / 'torchvision'}" \
        in one_line(err) and "delete the damaged files" in str(err.value)


# --- a user's code: an entry point of an installed distribution, an import path ---------------
DATASET_MODULE = '''
import numpy as np
from pathlib import Path

from lmcpipe.data import UserDataset


def load(root):
    with open(Path(root) / "calls.txt", "a") as f:  # a trace of each call, for the test
        f.write("load\\n")
    rng = np.random.default_rng(7)
    return {"train_x": rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8),
            "train_y": np.arange(40) % 4,
            "test_x": rng.integers(0, 256, (16, 3, 8, 8), dtype=np.uint8),
            "test_y": np.arange(16) % 4}


TINY = UserDataset(input_shape=(3, 8, 8), num_classes=4, train_size=40, load=load,
                   augment="cifar", version="1")
'''


def install(site: Path, package: str, source: str, entry_points: str = "") -> Path:
    """A package in ``site`` and, with ``entry_points``, the metadata of its distribution, as
    pip would install them; returns the module file."""
    (site / package).mkdir(parents=True)
    module = site / package / "__init__.py"
    module.write_text(textwrap.dedent(source))
    if entry_points:
        info = site / f"{package}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(entry_points)
    return module


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m.split(".")[0].startswith("tiny_")]:
        del sys.modules[name]


def test_entry_point_dataset_resolves_loads_and_caches(site, tmp_path):
    module = install(site, "tiny_ep", DATASET_MODULE,
                     "[lmcpipe.datasets]\ntiny = tiny_ep:TINY\n")
    assert "tiny" in DATASETS
    info = data.check("tiny")
    assert (info.format, info.input_shape, info.num_classes, info.train_size, info.augment) \
        == ("converted", (3, 8, 8), 4, 40, "cifar")
    assert data.code_files("tiny") == [module] and data.code_tag("tiny") == "tiny version 1"
    root = tmp_path / "data"
    root.mkdir()
    ds = data.load("tiny", root)
    assert ds.train_x.shape == (40, 3, 8, 8) and ds.test_x.shape == (16, 3, 8, 8)
    assert ds.train_y.tolist() == [i % 4 for i in range(40)] and ds.mean.shape == (3,)
    assert torch.allclose(ds.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    data.load("tiny", root)
    assert (root / "calls.txt").read_text() == "load\n"  # converted once, then cached
    module.write_text(module.read_text() + "\n# an edit of the loader's code\n")
    data.load("tiny", root)  # a new key: the package's sources are hashed
    assert (root / "calls.txt").read_text() == "load\nload\n"


def test_import_path_dataset_from_a_function(site, tmp_path):
    install(site, "tiny_ip", '''
        import numpy as np
        from lmcpipe.data import UserDataset


        def make():
            def load(root):
                x = np.full((6, 5, 5), 9, np.uint8)  # (N, H, W): one channel
                return {"train_x": x, "train_y": [0, 1, 2, 0, 1, 2], "test_x": x[:3],
                        "test_y": np.array([2, 1, 0])}
            return UserDataset((1, 5, 5), 3, 6, load)
    ''')
    name = "tiny_ip:make"
    assert DATASETS[name].input_shape == (1, 5, 5) and DATASETS[name].augment == "none"
    ds = data.load(name, tmp_path)
    assert ds.train_x.shape == (6, 1, 5, 5) and ds.test_y.tolist() == [2, 1, 0]
    assert data.code_tag(name) == ""


BAD_MODULE = '''
    import numpy as np
    from lmcpipe.data import UserDataset


    def arrays(x_shape=(4, 1, 2, 2), dtype=np.uint8, labels=(0, 1, 0, 1), n_test=2):
        return lambda root: {"train_x": np.zeros(x_shape, dtype), "train_y": np.array(labels),
                             "test_x": np.zeros((n_test, 1, 2, 2), np.uint8),
                             "test_y": np.zeros(n_test, np.int64)}


    def fails(root):
        raise FileNotFoundError("no such file: /data/scans.h5")


    def broken():
        raise RuntimeError("cannot build\\nthe set")


    NUMBER = 42
    SHAPE = UserDataset((1, 3, 3), 2, 4, arrays())
    DTYPE = UserDataset((1, 2, 2), 2, 4, arrays(dtype=np.float32))
    LABELS = UserDataset((1, 2, 2), 2, 4, arrays(labels=(0, 1, 2, 1)))
    SIZE = UserDataset((1, 2, 2), 2, 5, arrays())
    FAILS = UserDataset((1, 2, 2), 2, 4, fails)
    NOT_A_MAPPING = UserDataset((1, 2, 2), 2, 4, lambda root: [1, 2])
    DECLARED = UserDataset((1, 2), 2, 4, arrays())
    AUGMENT = UserDataset((1, 2, 2), 2, 4, arrays(), augment="mixup")
'''


@pytest.mark.parametrize("attribute, where, says", [
    ("NUMBER", "resolve", "tiny_bad:NUMBER is of type int, not an lmcpipe.data.UserDataset"),
    ("broken", "resolve", "calling tiny_bad:broken() failed: RuntimeError: cannot build the set"),
    ("DECLARED", "resolve", "input_shape (1, 2) is not (channels, height, width)"),
    ("AUGMENT", "resolve", "augment 'mixup' is not one of none, cifar, imagenet"),
    ("Missing", "resolve", "module 'tiny_bad' has no attribute 'Missing'"),
    ("SHAPE", "load", "train_x of shape (4, 1, 2, 2): expected (N, 1, 3, 3) or (N, 3, 3)"),
    ("DTYPE", "load", "train_x of dtype float32, not uint8 images"),
    ("LABELS", "load", "train_y labels from 0 to 2, outside 0..1 (num_classes = 2)"),
    ("SIZE", "load", "declares train_size = 5 but its load() gave 4 training images"),
    ("FAILS", "load", "failed: FileNotFoundError: no such file: /data/scans.h5"),
    ("NOT_A_MAPPING", "load", "returned a list, not a mapping of train_x, train_y"),
])
def test_user_dataset_errors_are_one_line(site, tmp_path, attribute, where, says):
    install(site, "tiny_bad", BAD_MODULE)
    name = f"tiny_bad:{attribute}"
    with pytest.raises(DataError) as err:
        data.check(name) if where == "resolve" else data.load(name, tmp_path)
    assert f"dataset '{name}'" in one_line(err) and says in str(err.value)
    assert not list(tmp_path.glob(".cache/*.json"))  # nothing cached from a bad load


def test_unresolvable_names_are_one_line(site):
    with pytest.raises(DataError) as err:
        DATASETS["tiny_nowhere.sets:Data"]
    assert "cannot import module 'tiny_nowhere.sets'" in one_line(err)
    install(site, "tiny_dist", "X = 1\n",
            "[lmcpipe.datasets]\nscans = tiny_dist.missing:SCANS\n")
    assert "scans" in DATASETS
    with pytest.raises(DataError) as err:
        data.check("scans")
    assert "entry point 'scans' of lmcpipe.datasets" in one_line(err)
    assert "cannot import module 'tiny_dist.missing'" in str(err.value)


def test_a_user_dataset_is_a_frozen_dataclass():
    ud = UserDataset((1, 2, 2), 2, 4, lambda root: {})
    with pytest.raises(AttributeError):
        ud.version = "2"  # type: ignore[misc]
    assert (ud.augment, ud.version) == ("none", "")
