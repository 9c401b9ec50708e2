"""A network or dataset of the user's own, end to end in real processes (issue 24).

Each bad input is one line naming the config key and the fix, printed by the real ``snakemake``
(a dry run: the config check runs before any job) and by ``lmcpipe check-config`` alike; a stage
CLI given a network it cannot import or an image folder that is not there prints one line too;
and a torchvision network trains through ``lmcpipe cohort`` with its mask applied and the
documented prunable set. The user's modules live in a package in a temporary folder, found
through ``PYTHONPATH`` as an uninstalled package would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from torch import nn

from lmcpipe import atomic, masks
from lmcpipe.data.testing import write_cifar, write_imagefolder
from lmcpipe.hparams import TrainHParams, to_json
from tests.helpers import tiny_hparams, write_dataset, write_user_package

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

PACKAGE = "own_errors_nets"  # the user's package (a name no other test imports)
NOWHERE = "nopkg_own_errors.nets:Net"  # an import path whose package does not exist



@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the user's package, the tiny Fashion-MNIST stand-in under ``data/``
    and an image folder whose val/ classes differ from its train/ classes."""
    site = tmp_path_factory.mktemp("own")
    write_user_package(site, PACKAGE)
    write_dataset(site / "data" / "fashion_mnist", n_train=40, n_test=20)
    folder = write_imagefolder(site / "scans", n_classes=3, per_class=1, size=8,
                               splits=("train", "val"))
    (folder / "val" / "n00000002").rename(folder / "val" / "extra")
    return site


def user_env(site: Path) -> dict[str, str]:
    """The environment a user without an installed package runs in: their folder on
    PYTHONPATH, and offline (nothing in these tests may download)."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, "LMCPIPE_OFFLINE": "1"}


def lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- the config check: snakemake and lmcpipe check-config ------------------------------------
TRAIN = {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20}

# (id, the experiment's keys, the key named, words of the message: what is wrong and the fix)
CASES = [
    ("not-importable", {"model": NOWHERE}, "model",
     ["network 'nopkg_own_errors.nets:Net': cannot import module 'nopkg_own_errors.nets'",
      "install its package (pip install -e <dir>) or add its folder to PYTHONPATH"]),
    ("class-missing", {"model": f"{PACKAGE}.nets:Missing"}, "model",
     [f"module '{PACKAGE}.nets' has no attribute 'Missing'", "check the name after the colon"]),
    ("not-a-module-class", {"model": f"{PACKAGE}.nets:Plain"}, "model",
     [f"network '{PACKAGE}.nets:Plain' returned a Plain, not a torch.nn.Module"]),
    ("not-a-module-value", {"model": f"{PACKAGE}.nets:NUMBER"}, "model",
     [f"network '{PACKAGE}.nets:NUMBER' is of type int, not a torch.nn.Module class or a "
      "function returning one"]),
    ("bad-model-args-key", {"model": f"{PACKAGE}.nets:Small", "model_args": {"widht": 8}},
     "model", ["unexpected keyword argument 'widht'", "(check model_args)"]),
    ("no-prunable-weights", {"model": f"{PACKAGE}.nets:OnlyOutput"}, "model",
     ["has no prunable weights", "declare prunable_names() or excluded"]),
    ("output-shape", {"model": f"{PACKAGE}.nets:WrongShape"}, "model",
     ["returns (2, 3) for a batch of 2 inputs of shape (1, 28, 28); expected (2, 10) logits"]),
    ("unknown-plain-name", {"model": "lenet_300_10"}, "model",
     ["unknown network 'lenet_300_10'", "lenet_300_100", "package.module:Class",
      "torchvision:<name>"]),
    ("model-args-of-lmcpipe-s-network", {"model": "lenet_300_100", "model_args": {"width": 8}},
     "model_args", ["lenet_300_100 is one of lmcpipe's networks, which take no arguments"]),
    ("levels-open-lth-cannot-give",
     {"model": f"{PACKAGE}.nets:Small", "prune": {"fraction": 0.6, "levels": 3}},
     "prune.levels", ["level 1 would prune", "prunable weights left of "
                      f"{PACKAGE}.nets:Small", "lower prune.fraction or prune.levels, or use "
                      "prune.counting: prunable"]),
    ("image-folder-missing", {"dataset": {"imagefolder": "{site}/nowhere"}}, "dataset",
     ["dataset 'imagefolder:{site}/nowhere': folder {site}/nowhere not found",
      "expected {site}/nowhere/train/<class>/<image> and {site}/nowhere/val/ (or test/)"]),
    ("image-folder-classes-differ", {"dataset": {"imagefolder": "{site}/scans"}}, "dataset",
     ["the class folders of {site}/scans/train and {site}/scans/val differ (only in train/: "
      "n00000002; only in val/: extra)", "give both splits the same class folders"]),
    ("unknown-torchvision-set", {"dataset": "torchvision:Omniglot"}, "dataset",
     ["'torchvision:Omniglot': not a torchvision dataset lmcpipe can read", "KMNIST, QMNIST",
      "bring any other as a UserDataset", "entry-point group lmcpipe.datasets"]),
    ("torchvision-set-offline", {"dataset": "torchvision:KMNIST"}, "dataset",
     ["'torchvision:KMNIST' is not on disk and cannot be downloaded here",
      "{site}/data/torchvision/"]),
]


def config_with(site: Path, keys: dict) -> dict:
    exp = {"model": "lenet_300_100", "dataset": "fashion_mnist", "train": dict(TRAIN)}
    exp.update(json.loads(json.dumps(keys).replace("{site}", str(site))))
    return {"data_root": str(site / "data"), "all": ["mine"], "experiments": {"mine": exp}}


@pytest.mark.parametrize(("keys", "key", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_bad_input_is_one_line_from_snakemake_and_check_config(site, tmp_path, keys, key,
                                                                    words):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_with(site, keys)))
    env = user_env(site)
    run = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env,
           "cwd": tmp_path}
    # both at once: each spends most of its seconds importing (torch, snakemake)
    snake = subprocess.Popen([sys.executable, "-m", "snakemake", "-n", "-s",
                              str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "1",
                              "--configfile", str(cfg)], **run)
    check = subprocess.Popen([sys.executable, "-m", "lmcpipe", "check-config", str(cfg)], **run)
    try:
        _, snake_err = snake.communicate(timeout=300)
        _, check_err = check.communicate(timeout=300)
    finally:  # a timeout leaves neither running
        snake.kill()
        check.kill()

    assert snake.returncode != 0 and "Traceback" not in snake_err, snake_err[-3000:]
    (line,) = lines(snake_err)  # the one line, and nothing else
    assert line.startswith(f"config key experiments.mine.{key}: "), line
    for said in words:
        assert said.replace("{site}", str(site)) in line, line
    assert check.returncode != 0 and "Traceback" not in check_err, check_err[-3000:]
    assert lines(check_err) == [f"lmcpipe: {line}"]  # the same line, and nothing else
    assert not (tmp_path / "results").exists() and not (site / "data" / "torchvision").exists()


# --- the stage CLIs ---------------------------------------------------------------------------
def stage(site: Path, cwd: Path, *argv: str) -> str:
    """The one line a failed ``python -m lmcpipe`` stage printed (it failed, printed one
    non-empty stderr line and no traceback, starting with the stage's name)."""
    done = subprocess.run([sys.executable, "-m", "lmcpipe", *argv], cwd=cwd, text=True,
                          capture_output=True, timeout=300, env=user_env(site))
    said = lines(done.stderr)
    assert done.returncode != 0
    assert len(said) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert said[0].startswith(f"lmcpipe {argv[0]}: "), said[0]
    return said[0]


def stage_argv(name: str, hp: TrainHParams) -> list[str]:
    """Valid flags of stage ``name`` apart from the hparams under test (runs start from a
    fresh reinit, so no start file is read before the network is built)."""
    member = {"order": 0, "copy": 1, "model_out": "run/model.pt",
              "metrics_out": "run/metrics.csv"}
    flags = {"init": ["--seed", "0", "--out", "init.pt"],
             "train": ["--seed", "0", "--reinit", "--order", "0", "--model-out", "run/model.pt"],
             "cohort": ["--seed", "0", "--start-step", "0", "--level", "0", "--members",
                        json.dumps([member])]}[name]
    return [name, "--hparams", to_json(hp), *flags]


@pytest.mark.parametrize("name", ["init", "train", "cohort"])
def test_a_stage_given_an_unimportable_network_is_one_line(site, tmp_path, name):
    hp = tiny_hparams(site / "data", model=NOWHERE)
    line = stage(site, tmp_path, *stage_argv(name, hp))
    assert line == (f"lmcpipe {name}: network '{NOWHERE}': cannot import module "
                    "'nopkg_own_errors.nets' (No module named 'nopkg_own_errors'); install its "
                    "package (pip install -e <dir>) or add its folder to PYTHONPATH")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("name", ["init", "train", "cohort"])
def test_a_stage_given_a_missing_image_folder_is_one_line(site, tmp_path, name):
    folder = tmp_path / "xrays"
    hp = tiny_hparams(site / "data", dataset=f"imagefolder:{folder}")
    line = stage(site, tmp_path, *stage_argv(name, hp))
    assert line.startswith(f"lmcpipe {name}: dataset 'imagefolder:{folder}': folder {folder} "
                           f"not found; expected {folder}/train/<class>/<image>"), line
    assert list(tmp_path.iterdir()) == []


# --- a torchvision network through lmcpipe cohort -----------------------------------------
def conv_and_linear_weights(net: nn.Module) -> list[str]:
    return [f"{n}.weight" for n, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_a_torchvision_network_trains_through_cohort_with_its_mask(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    write_cifar(root / "cifar10" / "cifar-10-batches-py",
                rng.integers(0, 256, (24, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 24),
                10, (16, 8))
    hp = TrainHParams(model="torchvision:resnet18", dataset="cifar10", data_root=str(root),
                      optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                      batch_size=4, steps=3, eval_steps=(0, 3))
    env = {**os.environ, "LMCPIPE_OFFLINE": "1"}

    def lmcpipe(*argv: str) -> None:
        done = subprocess.run([sys.executable, "-m", "lmcpipe", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    lmcpipe("init", "--hparams", to_json(hp), "--seed", "0", "--out", str(tmp_path / "w0.pt"))
    start = atomic.load_torch(tmp_path / "w0.pt")
    # what the docs promise: every conv and linear weight but the output layer's (fc)
    reference = torchvision.models.resnet18(num_classes=10)
    documented = [n for n in conv_and_linear_weights(reference) if n != "fc.weight"]
    assert len(documented) == 20 and "layer3.0.downsample.0.weight" in documented
    assert start["model"] == "torchvision:resnet18"
    assert start["prunable"] == documented and start["frozen"] == ["fc.weight"]

    weights = start["state_dict"]
    mask = {}  # each prunable tensor loses its smaller-|w| half
    for name in documented:
        w = weights[name].abs().flatten()
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[w.argsort(descending=True)[: w.numel() // 2]] = True
        mask[name] = keep.view_as(weights[name])
    masks.save(mask, str(tmp_path / "mask.pt"))
    member = {"order": 0, "copy": 1, "model_out": str(tmp_path / "run" / "model.pt"),
              "metrics_out": str(tmp_path / "run" / "metrics.csv"),
              "start": str(tmp_path / "w0.pt"), "mask": str(tmp_path / "mask.pt")}
    lmcpipe("cohort", "--hparams", to_json(hp), "--seed", "0", "--start-step", "0", "--level",
            "1", "--members", json.dumps([member]))

    trained = atomic.load_torch(member["model_out"])
    assert trained["step"] == 3 and trained["prunable"] == documented
    after = trained["state_dict"]
    assert after.keys() == weights.keys()
    for name in documented:
        kept = mask[name]
        assert kept.sum() == kept.numel() // 2
        assert torch.count_nonzero(after[name][~kept]) == 0, name  # pruned: exactly zero
        # kept: trained. Weight decay moves even those that see only padding (at 32 px most of
        # layer4's 3x3 kernel positions fall on zeros and get no gradient from the loss); a
        # few in a million come back to their start bit for bit after 3 steps, by rounding
        moved = (after[name][kept] != weights[name][kept]).double().mean()
        assert moved > 0.99, (name, moved)
    assert not torch.equal(after["fc.weight"], weights["fc.weight"])  # the output layer too
    assert torch.count_nonzero(after["fc.weight"]) == after["fc.weight"].numel()
    metrics = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,split,loss,error" and len(metrics) > 1
