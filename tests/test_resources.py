"""What cluster jobs ask for (lmcpipe.costs): the runtime formula, a site's overrides, the
walltime cap shared within a job group, the memory formula, and the shipped cost table.

The Snakemake side (every job of a real dry run asking for its estimate, job groups within the
cap, jobs killed at the cap and resumed on a real SLURM cluster) is in tests/slurm/test_slurm.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from lmcpipe import costs, models, workload
from lmcpipe.config import ConfigError, validate
from lmcpipe.hparams import InterpHParams, TrainHParams

ROOT = Path(__file__).resolve().parents[1]
DEVICES = ("cpu", "a100", "h100", "h200", "unknown")

# A table of round numbers, so that each formula can be checked by hand.
TABLE = {
    "devices": {"h100": {}, "unknown": {}},
    "datasets": {"fashion_mnist": {"test_examples": 10_000, "job_minutes": 3}},
    "no_data_job_minutes": 2,
    "networks": {"lenet_300_100": {
        "dataset": "fashion_mnist", "image_size": 0, "params": 1000,
        "train_peak_bytes_per_example": 100, "eval_peak_bytes_per_example": 10,
        "eval_ratio": 0.5,
        "seconds": {"fp32": {
            "cpu": {"seconds": 0.01, "batch": 60, "fixed": 0.0, "source": "measured: here"},
            "h100": {"seconds": 0.002, "batch": 60, "fixed": 0.001, "source": "roofline: x"},
            "unknown": {"seconds": 0.004, "batch": 60, "fixed": 0.001, "source": "roofline: y"},
        }},
    }},
}


def hparams(**changes) -> TrainHParams:
    values = dict(model="lenet_300_100", dataset="fashion_mnist", data_root="data",
                  optimizer="adam", lr=1e-3, batch_size=60, steps=1000, eval_steps=(0, 1000),
                  eval_train_examples=2000, checkpoint_every=250)
    return TrainHParams(**{**values, **changes})


def test_runtime_is_member_steps_and_evaluations_times_seconds_times_margin_plus_job_minutes():
    hp = hparams()
    work = costs.training_work(hp, members=4, start_step=0)
    # 4 members x 1000 steps; each evaluated at steps 0 and 1000 on 2000 train + 10 000 test
    assert work.member_steps == 4000 and work.eval_examples == 4 * 2 * 12_000
    seconds = 4000 * 0.01 + 96_000 * 0.01 / 60 * 0.5  # 40 s training, 8 s evaluating
    assert costs.Costs(table=TABLE).minutes(hp, "cpu", work) == pytest.approx(
        seconds * 1.5 / 60 + 3)
    assert costs.Costs(table=TABLE, margin=2).minutes(hp, "cpu", work) == pytest.approx(
        seconds * 2 / 60 + 3)
    # a fork at k = 600: 400 steps each, one evaluation (the end) each
    fork = costs.training_work(hp, members=4, start_step=600)
    assert (fork.member_steps, fork.eval_examples) == (1600, 4 * 12_000)
    # W_k: k steps of one member, nothing evaluated
    rewind = costs.training_work(hp, 1, 0, stop_step=600, record=False)
    assert (rewind.member_steps, rewind.eval_examples) == (600, 0)
    # jobs that read no data and compute nothing: the fixed minutes alone
    assert costs.Costs(table=TABLE).minutes(hp, "cpu", costs.setup_work()) == 2


def test_interpolation_work_counts_alphas_splits_and_recomputed_batchnorm():
    hp = hparams()
    assert costs.interpolation_work(hp, InterpHParams(alphas=10), 3).eval_examples == (
        3 * 10 * 12_000)
    recompute = InterpHParams(alphas=10, bn_mode="recompute", bn_batches=20)
    assert costs.interpolation_work(hp, recompute, 1).eval_examples == 10 * (12_000 + 20 * 60)


def test_a_figure_scales_with_the_batch_above_its_own_and_never_below():
    fig = costs.Figure(seconds=0.1, batch=100, fixed=0.02)
    assert fig.at(100) == fig.at(10) == 0.1
    assert fig.at(200) == pytest.approx(0.02 + 0.08 * 2)


def test_a_site_overrides_figures_and_names_its_own_device_classes():
    site = costs.Costs({"lenet_300_100": {"fp32": {
        "h100": 0.5, "v100": {"seconds": 1.0, "batch": 120}}}}, table=TABLE)
    fig = site.figure("lenet_300_100", "fp32", "h100")
    assert (fig.seconds, fig.batch) == (0.5, 60)
    assert fig.source == "site: cluster.costs.lenet_300_100.fp32.h100"
    assert site.figure("lenet_300_100", "fp32", "v100").at(240) == 2.0
    assert costs.device_class(True, "tesla_v100", site.devices()) == "v100"
    # what the site does not override is the table's; precision and device fall back
    shipped = costs.Costs(table=TABLE)
    assert shipped.figure("lenet_300_100", "fp32", "h100").source == "roofline: x"
    assert shipped.figure("lenet_300_100", "bf16", "a100").source == "roofline: y"
    with pytest.raises(costs.InputError, match=r"cluster\.costs: .* no network 'alexnet'"):
        shipped.figure("alexnet", "fp32", "cpu")


@pytest.mark.parametrize(("gpu", "model", "expected"), [
    (False, "h100", "cpu"), (True, "", "unknown"), (True, "t4", "unknown"),
    (True, "A100", "a100"), (True, "nvidia_h100_80gb_hbm3", "h100"), (True, "h200", "h200"),
])
def test_device_class_from_the_sites_gpu_model(gpu, model, expected):
    assert costs.device_class(gpu, model, DEVICES) == expected


def test_a_job_group_asks_for_its_estimates_times_the_attempt_up_to_the_cap():
    assert costs.share([1.2, 10], 1, 0) == [2, 10]
    assert costs.share([1.2, 10], 3, 0) == [6, 30]
    assert costs.share([1.2, 10], 2, 100) == [4, 20]  # fits: untouched
    # over the cap: the group asks for exactly the cap, in proportion to the estimates
    assert costs.share([30, 90], 1, 100) == [25, 75]
    assert costs.share([30, 90], 2, 100) == [25, 75]
    assert costs.share([10], 3, 25) == [25]
    split = costs.share([2, 5, 7.5, 100], 1, 60)
    assert sum(split) == 60 and split == sorted(split) and split[-1] >= 100 * 60 / 114.5 - 1
    # a cap with fewer minutes than the group has jobs: the longest gets them
    assert costs.share([2, 5], 1, 1) == [0, 1]


def test_a_run_longer_than_the_cap_is_flagged_when_it_cannot_resume_well():
    hp = hparams()
    assert costs.resume_problems("experiments.x", hp, 90, 100, 2, 10) == []
    assert costs.resume_problems("experiments.x", hp, 250, 100, 2, 10) == []
    no_checkpoints = costs.resume_problems("experiments.x", hparams(checkpoint_every=0), 250,
                                           100, 2, 0)
    assert len(no_checkpoints) == 1
    assert no_checkpoints[0].startswith("experiments.x.train.checkpoint_every: 0")
    rare = costs.resume_problems("experiments.x", hp, 250, 100, 2, 30)
    assert rare and "checkpoint more often" in rare[0]
    retries = costs.resume_problems("experiments.x", hp, 450, 100, 2, 10)
    assert retries == ["experiments.x: a training job is estimated at 450 min, 5 attempts of "
                       "cluster.max_runtime_min 100, but the profile's retries (2) allow 3; "
                       "raise retries, or rerun the command (rerun-incomplete resumes it)"]


def test_host_memory_formula():
    hp = hparams()
    work = costs.Work(member_steps=1, eval_examples=100, states=3, trains=True)
    data = (60_000 + 10_000) * 784 * 5
    cpu = 1e9 + 3 * 1000 * 4 + data + 2 * (1000 * 16 + 100 * 60) + 10 * 100
    assert costs.Costs(table=TABLE).mem_mb(hp, "cpu", work, stack=2) == (
        math.ceil(cpu * 1.25 / 1e8) * 100)
    gpu = 4e9 + 3 * 1000 * 4 + data  # activations live on the device
    assert costs.Costs(table=TABLE).mem_mb(hp, "h100", work) == math.ceil(gpu * 1.25 / 1e8) * 100
    setup = costs.Costs(table=TABLE).mem_mb(hp, "cpu", costs.setup_work())
    assert setup == math.ceil((1e9 + 3 * 1000 * 4) * 1.25 / 1e8) * 100


def test_the_shipped_table_has_every_figure_with_its_source():
    table = costs.shipped()
    assert set(table["networks"]) == set(models.NAMES)
    for network, entry in table["networks"].items():
        for precision in ("fp32", "tf32", "bf16"):
            rows = entry["seconds"][precision]
            assert set(rows) == set(DEVICES), (network, precision)
            for device, row in rows.items():
                assert row["seconds"] > 0 and row["batch"] >= 1, (network, precision, device)
                assert re.match(r"(measured|roofline|as fp32): ", row["source"]), row
        assert entry["seconds"]["fp32"]["cpu"]["source"].startswith("measured: ")


@pytest.mark.parametrize("network", ["lenet_300_100", "resnet20"])
def test_the_shipped_rooflines_count_what_the_networks_compute_today(network):
    """The table is static data: a network that changes what a step computes must have its
    figures regenerated (scripts/cost_table.py)."""
    entry = costs.shipped()["networks"][network]
    row = entry["seconds"]["fp32"]["h100"]
    flops = float(re.search(r"roofline: ([0-9.e+]+) FLOP", row["source"]).group(1))
    counted = workload.step_cost(network, entry["dataset"], row["batch"], "fp32",
                                 entry["image_size"]).flops
    assert flops == pytest.approx(counted, rel=0.01)
    # the bound itself: at least the FLOPs at the stated fraction of the datasheet peak
    spec, eff = costs.shipped()["devices"]["h100"], costs.shipped()["roofline"]
    assert row["seconds"] >= counted / (spec["fp32"] * eff["efficiency_flops"])


def test_every_network_of_the_table_can_be_overridden_by_the_schema():
    schema = yaml.safe_load((ROOT / "src/lmcpipe/config.schema.yaml").read_text())
    names = schema["properties"]["cluster"]["properties"]["costs"]["propertyNames"]["enum"]
    assert tuple(names) == models.NAMES


def tiny_config(cluster) -> dict:
    return {"data_root": "data", "cluster": cluster, "experiments": {"x": {
        "model": "lenet_300_100", "dataset": "fashion_mnist",
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20}}}}


def test_profile_numbers_arrive_as_strings_and_are_read_as_numbers():
    """A profile's `config: cluster: "{...}"` reaches Snakemake through --config, whose values
    YAML's base loader reads: every number inside is a string."""
    config = tiny_config({"gpu_flag": "gpus", "max_runtime_min": "2880",
                          "runtime_margin": "1.25",
                          "costs": {"resnet20": {"fp32": {"h100": "0.004",
                                                           "a100": {"seconds": "0.01",
                                                                    "batch": "256"}}}}})
    validate(config)
    cluster = config["cluster"]
    assert (cluster["max_runtime_min"], cluster["runtime_margin"]) == (2880, 1.25)
    assert cluster["costs"]["resnet20"]["fp32"] == {"h100": 0.004,
                                                    "a100": {"seconds": 0.01, "batch": 256}}
    site = costs.Costs.of_cluster(cluster)
    assert site.margin == 1.25
    assert site.figure("resnet20", "fp32", "a100").at(512) == 0.02


@pytest.mark.parametrize(("cluster", "key"), [
    ({"max_runtime_min": "two days"}, r"cluster\.max_runtime_min"),
    ({"max_runtime_min": -5}, r"cluster\.max_runtime_min"),
    ({"runtime_margin": 0.5}, r"cluster\.runtime_margin"),
    ({"costs": {"resnet21": {"fp32": {"h100": 0.1}}}}, r"cluster\.costs"),
    ({"costs": {"resnet20": {"fp16": {"h100": 0.1}}}}, r"cluster\.costs\.resnet20"),
    ({"costs": {"resnet20": {"fp32": {"h100": 0}}}}, r"cluster\.costs\.resnet20\.fp32\.h100"),
])
def test_bad_cluster_settings_are_refused_in_one_line_naming_the_key(cluster, key):
    with pytest.raises(ConfigError, match=key) as err:
        validate(tiny_config(cluster))
    assert "\n" not in str(err.value)


def test_explicit_resources_default_to_estimated():
    config = tiny_config({})
    validate(config)
    resources = config["experiments"]["x"]["resources"]
    assert (resources["runtime_min"], resources["mem_mb"]) == (0, 0)
    assert config["cluster"]["max_runtime_min"] == 0
