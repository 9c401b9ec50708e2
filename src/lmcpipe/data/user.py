"""Datasets lmcpipe does not ship, named by the one string every stage gets (``hp.dataset``).

Three syntaxes, told apart by their form alone (``kind``), so that ``name in DATASETS`` never
reads a file or imports a user's module:

- ``imagefolder:<path>``: a folder of images, ``<path>/train/<class>/<image>`` and
  ``<path>/val/`` (or ``<path>/test/``) alike; ``<path>`` as written in the config, relative to
  the working directory (where Snakemake runs) or absolute;
- ``torchvision:<Name>``: a set of ``lmcpipe.data.torchvision_sets.TORCHVISION``;
- ``package.module:attribute``, or a name that an installed package registers in the entry-point
  group ``lmcpipe.datasets``: a ``UserDataset`` (or a function of no arguments returning one),
  found by ``lmcpipe.plugins``.

``resolve`` turns a name into its ``DatasetInfo`` from what can be seen without decoding a
single image (folder names, file counts, one image header, the object's declared facts) and
raises a one-line ``DataError`` for everything wrong there. Stdlib only at import (PIL reads
the header inside ``_folder_info``), like the registry it serves.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from lmcpipe import plugins
from lmcpipe.data.base import AUGMENT_NAMES, DataError, DatasetInfo, UserDataset, one_line
from lmcpipe.data.folders import list_images
from lmcpipe.data.torchvision_sets import TORCHVISION, TorchvisionSet, version

IMAGEFOLDER = "imagefolder:"
TORCHVISION_PREFIX = "torchvision:"
GROUP = "lmcpipe.datasets"  # the entry-point group of users' datasets
HELD_OUT = ("val", "test")  # the held-out split's folder, in order of preference


def kind(name: str) -> str:
    """``"imagefolder"``, ``"torchvision"``, ``"plugin"`` (an import path or a registered entry
    point), or ``""`` for any other name (lmcpipe's own, or unknown). By form only."""
    if name.startswith(IMAGEFOLDER):
        return "imagefolder"
    if name.startswith(TORCHVISION_PREFIX):
        return "torchvision"
    if plugins.is_import_path(name) or name in plugins.entry_points(GROUP):
        return "plugin"
    return ""


def resolve(name: str) -> DatasetInfo:
    """The facts of a user dataset ``name`` (``kind(name)`` not empty), computed once per
    process (per working directory, for a relative image folder). Raises DataError."""
    return _resolve(name, os.getcwd() if name.startswith(IMAGEFOLDER) else "")


@cache
def _resolve(name: str, cwd: str) -> DatasetInfo:
    found = kind(name)
    if found == "imagefolder":
        return _folder_info(name)
    if found == "torchvision":
        entry = torchvision_set(name)
        return DatasetInfo(name, "converted", entry.input_shape, entry.num_classes,
                           entry.train_size, entry.augment, torchvision_name=entry.name,
                           download_host=entry.host, download_port=entry.port)
    ud = user_dataset(name)
    return DatasetInfo(name, "converted", tuple(ud.input_shape), ud.num_classes, ud.train_size,
                       ud.augment)


# --- imagefolder:<path> ----------------------------------------------------------------------
def folder_splits(name: str) -> tuple[Path, Path, Path]:
    """(folder, its train split, its held-out split) of ``imagefolder:<path>``.

    The held-out split is ``val/`` when the folder has one, else ``test/``: ImageNet's layout
    names it val, torchvision's ImageFolder users often test; when both exist val is used (and
    test/ is left alone, for a final evaluation outside lmcpipe). Raises DataError when the
    folder, train/ or both held-out folders are missing."""
    written = name[len(IMAGEFOLDER):]
    if not written:
        raise DataError(f"dataset '{name}': no folder given (write imagefolder:<path>, the "
                        "folder holding train/<class>/<image> and val/ or test/ alike)")
    folder = Path(written)
    layout = f"expected {folder}/train/<class>/<image> and {folder}/val/ (or test/) alike"
    if not folder.is_dir():
        where = "" if folder.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise DataError(f"dataset '{name}': folder {folder} not found{where}; {layout}")
    train = folder / "train"
    if not train.is_dir():
        raise DataError(f"dataset '{name}': {folder} has no train/ folder; {layout}")
    for split in HELD_OUT:
        if (folder / split).is_dir():
            return folder, train, folder / split
    raise DataError(f"dataset '{name}': {folder} has no val/ or test/ folder beside train/ "
                    "(the held-out split, <class>/<image> like train/)")


def folder_classes(name: str) -> tuple[list[Path], list[str]]:
    """The training images (classes in sorted order, files sorted within each) and the class
    names of ``imagefolder:<path>``, after checking that both splits have the same classes and
    that no class folder is empty. Lists folders; decodes nothing."""
    _, train, held_out = folder_splits(name)
    try:
        files, _, classes = list_images(train)
        _, _, held_classes = list_images(held_out)
    except DataError as e:
        raise DataError(f"dataset '{name}': {e}") from None
    if held_classes != classes:
        only_train = sorted(set(classes) - set(held_classes))
        only_held = sorted(set(held_classes) - set(classes))
        raise DataError(f"dataset '{name}': the class folders of {train} and {held_out} "
                        f"differ (only in train/: {_few(only_train)}; only in "
                        f"{held_out.name}/: {_few(only_held)}); give both splits the same "
                        "class folders")
    return files, classes


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return (shown + f" and {len(names) - 5} more" if len(names) > 5 else shown) or "none"


def _folder_info(name: str) -> DatasetInfo:
    """Format "userfolder"; images (3, S, S) with S the shorter side of the first training image
    (its header, read by PIL: no decode), so that a folder of 64 px images trains at 64 px
    unless ``train.image_size`` says otherwise; augment "none" (``train.augment`` chooses)."""
    from PIL import Image

    files, classes = folder_classes(name)
    try:
        with Image.open(files[0]) as img:
            side = min(img.size)
    except Exception as e:  # PIL raises OSError, ValueError, SyntaxError...
        raise DataError(f"dataset '{name}': {files[0]}: cannot read the image ("
                        f"{type(e).__name__}: {one_line(e)}); replace or remove the file"
                        ) from None
    return DatasetInfo(name, "userfolder", (3, side, side), len(classes), len(files))


# --- torchvision:<Name> ----------------------------------------------------------------------
def torchvision_set(name: str) -> TorchvisionSet:
    """The ``TORCHVISION`` entry of ``torchvision:<Name>``; DataError for a name not there."""
    wanted = name[len(TORCHVISION_PREFIX):]
    entry = TORCHVISION.get(wanted)
    if entry is None:
        near = [n for n in TORCHVISION if n.lower() == wanted.lower()]
        hint = f"did you mean torchvision:{near[0]}? " if near else ""
        known = ", ".join(TORCHVISION)
        raise DataError(f"dataset '{name}': not a torchvision dataset lmcpipe can read ({hint}"
                        f"known: {known}); bring any other as a UserDataset through an import "
                        f"path or the entry-point group {GROUP}")
    return entry


# --- import paths and entry points -----------------------------------------------------------
@cache
def user_dataset(name: str) -> UserDataset:
    """The ``UserDataset`` that an import path or an ``lmcpipe.datasets`` entry point names (the
    object, or what a function of no arguments returns), its declared facts checked.
    Imports the user's module (once per process)."""
    try:
        obj = plugins.load(name, GROUP, "dataset")
    except plugins.PluginError as e:
        raise DataError(str(e)) from None
    path = plugins.target(name, GROUP)
    if not isinstance(obj, UserDataset) and callable(obj):
        try:
            obj = obj()
        except Exception as e:  # the user's function: say how it failed, in one line
            raise DataError(f"dataset '{name}': calling {path}() failed: "
                            f"{type(e).__name__}: {one_line(e)}") from None
    if not isinstance(obj, UserDataset):
        raise DataError(f"dataset '{name}': {path} is of type {type(obj).__name__}, not an "
                        "lmcpipe.data.UserDataset (define one, or a function of no arguments "
                        "returning one)")
    _check_declared(name, obj)
    return obj


def _check_declared(name: str, ud: UserDataset) -> None:
    shape = ud.input_shape
    wrong = ""
    if not (isinstance(shape, tuple | list) and len(shape) == 3 and all(_positive(n)
                                                                        for n in shape)):
        wrong = f"input_shape {shape!r} is not (channels, height, width) of positive integers"
    elif not (_positive(ud.num_classes) and ud.num_classes >= 2):
        wrong = f"num_classes {ud.num_classes!r} is not an integer of at least 2"
    elif not _positive(ud.train_size):
        wrong = f"train_size {ud.train_size!r} is not a positive integer (training images)"
    elif not callable(ud.load):
        wrong = f"load is a {type(ud.load).__name__}, not a function of the data root"
    elif ud.augment not in AUGMENT_NAMES:
        wrong = f"augment {ud.augment!r} is not one of {', '.join(AUGMENT_NAMES)}"
    elif not isinstance(ud.version, str):
        wrong = f"version {ud.version!r} is not a string"
    if wrong:
        raise DataError(f"dataset '{name}': its UserDataset's {wrong}")


def _positive(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0



# --- what the jobs of a dataset depend on (lmcpipe.codever) -----------------------------------
def code_files(name: str) -> list[Path]:
    """The user's source files that the jobs of dataset ``name`` depend on: every ``.py`` file
    of the package of an import path or entry point (``plugins.source_files``); [] for
    lmcpipe's own datasets, image folders (their files are data, keyed by the decode cache) and
    torchvision's sets (``code_tag``)."""
    return plugins.source_files(name, GROUP) if kind(name) == "plugin" else []


def code_tag(name: str) -> str:
    """What else the jobs of ``name`` depend on, as text: ``"torchvision 0.29.1"`` for a
    torchvision set (its reader converts the files), ``"<name> version <v>"`` for a
    ``UserDataset`` with a ``version`` (the user's word that its data changed); ""
    otherwise."""
    found = kind(name)
    if found == "torchvision":
        return f"torchvision {version()}"
    if found == "plugin":
        declared = user_dataset(name).version
        return f"{name} version {declared}" if declared else ""
    return ""
