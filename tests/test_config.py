"""Config validation against the schema, the check-config CLI, and per-stage code versions."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmcpipe import cli, codever, config, data, models
from lmcpipe.config import ConfigError, validate
from lmcpipe.hparams import Experiment, experiment_from_json, to_json

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config.yaml"


@pytest.fixture
def shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def test_shipped_config_validates_and_fills_defaults(shipped):
    experiments, sweeps = config.validate_with_sweeps(shipped)
    members = {m for s in sweeps.values() for m in s}
    assert {"lenet", "demo", "demo_unstable", "demo_rewind", "demo_probes", "resnet20",
            "resnet20_low",
            "resnet20_warmup", "vgg16", "vgg16_low", "vgg16_warmup", "resnet50", "inceptionv3",
            "paperc_resnet20"} == (
        set(experiments) - members)
    assert set(sweeps) == {"paperb_demo", "paperb_repel_demo", "paperb_resnet20",
                           "paperb_resnet20_repel"}
    assert "paperb_resnet20_bs2048_wu10ep" in sweeps["paperb_resnet20"]
    # epochs stay epochs at every batch size: 85 epochs of ceil(50 000 / 2048) = 25
    assert experiments["paperb_resnet20_bs2048_wu10ep"].train.steps == 85 * 25
    # steps in epochs are converted to iterations: 160 epochs of ceil(50 000 / 128) = 391
    r20 = experiments["resnet20"].train
    assert r20.steps == 160 * 391 and r20.milestones == (80 * 391, 120 * 391)
    assert experiments["resnet50"].prune.rewind_steps[1] == 1252  # 1 epoch at batch 1024
    assert experiments["resnet20_warmup"].train.lr == 0.03
    assert experiments["resnet20_warmup"].train.warmup_steps == 30000
    assert experiments["vgg16_low"].prune.levels == 13
    assert all(isinstance(e, Experiment) for e in experiments.values())
    lenet = shipped["experiments"]["lenet"]
    assert lenet["threads"] == 1
    assert lenet["train"]["momentum"] == 0.0
    assert lenet["train"]["milestones"] == []
    assert lenet["train"]["eval_train_examples"] == 0
    assert lenet["prune"]["baselines"] == ["randprune", "reinit"]
    assert lenet["prune"]["baseline_pairs"] is True
    assert lenet["instability"]["threshold"] == 0.02
    assert shipped["experiments"]["demo"]["prune"]["baseline_pairs"] is False
    # the default target builds both regimes; the unstable one differs from the stable one in
    # its learning rate only, and measures baselines' instability at k = 0 and a rewound k
    assert shipped["all"] == ["demo", "demo_unstable"]
    stable, unstable = experiments["demo"], experiments["demo_unstable"]
    assert dataclasses.replace(unstable.train, lr=stable.train.lr) == stable.train
    assert unstable.train.lr > stable.train.lr
    assert unstable.prune.rewind_steps[0] == 0 and len(unstable.prune.rewind_steps) >= 2
    assert set(unstable.prune.rewind_steps) <= set(unstable.fork_steps)
    assert unstable.prune.baseline_pairs and set(unstable.prune.baselines) == {"randprune",
                                                                              "reinit"}
    assert unstable.analyses.successive

    e = experiments["lenet"]
    assert e.train.lr == 1.2e-3 and e.train.steps == 24000 and e.train.data_root == "data"
    assert e.train.checkpoint_every == 2000
    assert e.prune.levels == 15 and e.prune.fraction == 0.2
    assert e.fork_steps == (0, 25, 100, 500, 2000)
    assert e.interp.alphas == 30
    assert e.chain_order == 0
    assert experiment_from_json(to_json(e)) == e


def test_sections_left_out_get_their_defaults():
    cfg = {"all": ["x"], "experiments": {"x": {"model": "lenet_300_100", "dataset": "mnist",
                                 "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 8,
                                           "steps": 10}}}}
    e = validate(cfg)["x"]
    assert cfg["data_root"] == "data"  # filled in place
    assert cfg["experiments"]["x"]["prune"]["levels"] == 0
    assert e.train.checkpoint_every == 1000
    assert e.prune.fraction == 0.2 and e.prune.rewind_steps == (0,)
    assert e.inits == (0, 1, 2) and e.orders == (0, 1, 2)
    assert e.fork_steps == (0,) and e.interp.threshold == 0.02


def edited(cfg: dict, keys: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = keys.split(".")
    node = cfg
    for k in parents:
        node = node[k]
    node[last] = value
    return cfg


@pytest.mark.parametrize(
    ("keys", "value", "named"),
    [
        ("experiments.lenet.model", "resnet_20", "experiments.lenet.model"),
        ("experiments.lenet.dataset", "svhn", "experiments.lenet.dataset"),
        ("experiments.lenet.prune.fraction", 1.0, "experiments.lenet.prune.fraction"),
        ("experiments.demo.train.lr", -0.1, "experiments.demo.train.lr"),
        ("experiments.demo.train.lr", 0, "experiments.demo.train.lr"),
        ("experiments.lenet.prune.rewind_steps", [0, 24000],
         "experiments.lenet.prune.rewind_steps"),
        ("experiments.demo.instability.fork_steps", [0, 5000],
         "experiments.demo.instability.fork_steps"),
        ("experiments.demo.train.eval_steps", [1001], "experiments.demo.train.eval_steps"),
        ("experiments.demo.train.milestones", [1000], "experiments.demo.train.milestones"),
        ("experiments.demo.train.optimizer", "rmsprop", "experiments.demo.train.optimizer"),
        ("experiments.demo.train.batchsize", 5, "experiments.demo.train"),
        ("experiments.demo.replicates.orders", [1, 1], "experiments.demo.replicates.orders"),
        ("all", ["demo", "nope"], "all"),
    ],
)
def test_bad_values_name_their_key(shipped, keys, value, named):
    with pytest.raises(ConfigError) as err:
        validate(edited(shipped, keys, value))
    message = str(err.value)
    assert message.startswith(f"config key {named}:"), message
    assert "\n" not in message


def test_rewind_beyond_steps_message(shipped):
    with pytest.raises(ConfigError, match=r"prune\.rewind_steps: 24000 is beyond train\.steps"):
        validate(edited(shipped, "experiments.lenet.prune.rewind_steps", [24000]))
    # the last step itself may be evaluated
    validate(edited(shipped, "experiments.demo.train.eval_steps", [0, 1000]))


def test_unknown_experiment_in_all(shipped):
    with pytest.raises(ConfigError, match="unknown experiment or sweep 'nope'"):
        validate(edited(shipped, "all", ["nope"]))


def test_schema_descriptions_name_every_shipped_network_and_dataset():
    """model and dataset are open (a user's network or data is named by import path, entry
    point or torchvision name): their descriptions must still list lmcpipe's own."""
    schema = yaml.safe_load(config.SCHEMA.read_text())
    props = schema["$defs"]["experiment"]["properties"]
    assert all(name in props["model"]["description"] for name in models.REGISTRY)
    assert all(name in props["dataset"]["description"] for name in data.DATASETS)


def test_check_config_cli(shipped, tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(SHIPPED.read_text())
    assert cli.main(["check-config", str(good)]) == 0
    assert capsys.readouterr().out.strip().startswith(
        f"{good}: ok (lenet, demo, demo_unstable, demo_rewind, demo_probes, resnet20")

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(edited(shipped, "experiments.lenet.prune.fraction", 1.0)))
    with pytest.raises(SystemExit) as err:
        cli.main(["check-config", str(bad)])
    assert str(err.value.code).startswith("lmcpipe: config key experiments.lenet.prune.fraction")


def test_check_config_exit_status(shipped, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(edited(shipped, "experiments.demo.model", "vgg")))
    done = subprocess.run([sys.executable, "-m", "lmcpipe", "check-config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert done.stderr.startswith("lmcpipe: config key experiments.demo.model:")


# --- code versions -----------------------------------------------------------------------------
def test_train_closure():
    """What the rules hash for `lmcpipe train` (stages.train): the training stack, not the tables,
    figures or CLI; the figure stage's hash holds every figure module and what they import."""
    names = {p.relative_to(codever.PACKAGE).as_posix() for p in codever.closure("stages.train")}
    assert {"stages/train.py", "training/single.py", "devices.py", "data/__init__.py",
            "data/idx.py",
            "masks.py", "atomic.py", "seeds.py", "evaluate.py", "hparams.py",
            "models/__init__.py", "models/registry.py", "models/base.py",
            "models/lenet.py"} <= names
    assert not names & {"figures/__init__.py", "figures/registry.py", "aggregate.py", "cli.py",
                        "interpolate.py", "config.py", "summary.py"}
    figures = {p.relative_to(codever.PACKAGE).as_posix()
               for p in codever.closure("stages.figure")}
    assert {"figures/paper_a.py", "figures/sweep.py", "figures/style.py",
            "summary.py"} <= figures  # summary.py: imported by a figure module, not the stage
    assert "training/single.py" not in figures
    prune = {p.name for p in codever.closure("stages.prune")}
    assert not prune & {"single.py", "cohort.py", "optim.py"}  # mask jobs: no training stack
    cohort = {p.name for p in codever.closure("stages.cohort")}
    assert "slots.py" not in names | cohort and "provenance.py" not in names | cohort
    # devices sets the numerics
    assert {"devices.py", "cohort.py", "stacked.py", "streams.py"} <= cohort


def test_version_follows_the_closure(tmp_path):
    """Edits in a copy of the package change exactly the versions whose closure holds the file."""
    package = tmp_path / "lmcpipe"
    shutil.copytree(codever.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location("codever_copy", package / "codever.py")
    copy_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy_mod)
    assert package == copy_mod.PACKAGE

    def versions():
        copy_mod.version.cache_clear()
        return copy_mod.version("stages.train"), copy_mod.version("stages.figure")

    train0, figures0 = versions()
    assert (train0, figures0) == (codever.version("stages.train"),
                                  codever.version("stages.figure"))
    with open(package / "figures" / "paper_a.py", "a") as f:
        f.write("\n# edited\n")
    train1, figures1 = versions()
    assert train1 == train0 and figures1 != figures0
    with open(package / "models" / "lenet.py", "a") as f:
        f.write("\n# edited\n")
    train2, figures2 = versions()
    assert train2 != train1 and figures2 == figures1
    for neutral in ("slots.py", "progress.py", "provenance.py"):  # where and how visibly
        with open(package / neutral, "a") as f:
            f.write("\n# edited\n")
    assert versions() == (train2, figures2)


def test_yaml_anchors_shared_between_experiments_are_converted_per_experiment():
    """An anchored train section shared by a CIFAR and an MNIST experiment: each its own epochs."""
    text = """
experiments:
  a:
    model: lenet_300_100
    dataset: mnist
    train: &t {optimizer: sgd, lr: 0.1, batch_size: 100, steps: 2ep, milestones: [1ep]}
  b:
    model: resnet20
    dataset: cifar10
    train: *t
"""
    experiments = validate(yaml.safe_load(text))
    assert experiments["a"].train.steps == 1200 and experiments["a"].train.milestones == (600,)
    assert experiments["b"].train.steps == 1000 and experiments["b"].train.milestones == (500,)


def test_baseline_levels_choose_where_baselines_train():
    from lmcpipe import plan

    cfg = {"all": ["x"], "experiments": {"x": {
        "model": "lenet_300_100", "dataset": "mnist",
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 8, "steps": 10},
        "prune": {"levels": 3, "baseline_levels": [3]},
        "replicates": {"inits": [0], "orders": [0, 1]}}}}
    exp = validate(copy.deepcopy(cfg))["x"]
    assert [exp.prune.has_baselines(n) for n in (1, 2, 3)] == [False, False, True]
    assert plan.kind_levels(exp, "imp_level") == [1, 2] and plan.kind_levels(exp, "level") == [3]
    assert {r.level for r in plan.runs(exp) if r.variant != "imp"} == {3}
    assert "imp_level" in plan.cohort_kinds(exp)
    assert {kind for _, _, level, kind in plan.cohorts(exp) if level} == {
        "chain", "imp_level", "level"}
    everywhere = validate(edited(cfg, "experiments.x.prune.baseline_levels", []))["x"]
    assert plan.cohort_kinds(everywhere) == ["dense", "fork0", "chain", "level"]
    with pytest.raises(ConfigError, match=r"prune\.baseline_levels: level 4 is beyond"):
        validate(edited(cfg, "experiments.x.prune.baseline_levels", [3, 4]))
