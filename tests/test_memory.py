"""Device memory (``lmcpipe.memory``): the estimate traced on the meta device, the stack rule
and the micro-batch rule on given device memories, and the ``train.micro_batch`` setting in the
config and in a job's params.

The estimate itself is checked against measured CPU peaks by ``bench/member_memory.py`` (a
measurement, not a test); here: an exact count for LeNet, and properties any estimate must have.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from lmcpipe import config, data, memory
from lmcpipe.errors import InputError
from lmcpipe.hparams import TrainHParams, from_json, to_json
from lmcpipe.training import cohort

REPO = Path(__file__).resolve().parents[1]
GB = 10**9
A100_40, H100_80 = 40 * GB, 80 * GB  # below what torch reports for these cards: conservative


def workload(model: str, batch: int, precision: str = "fp32") -> memory.Workload:
    dataset, size = {"lenet_300_100": ("mnist", 0), "resnet20": ("cifar10", 0),
                     "vgg16": ("cifar10", 0), "resnet50": ("imagenet", 0),
                     "inceptionv3": ("imagenet", 299)}[model]
    return memory.Workload(model, dataset, batch, precision, size, "sgd", 0.9)


def fixed(w: memory.Workload) -> int:
    return memory.fixed_bytes(memory.dataset_bytes(w.dataset))


# --- the rules, on given memories -------------------------------------------------------------
def test_stack_rule_on_given_memories():
    gib = memory.GiB
    # floor((device x 0.9 - fixed) / member), at least 1, at most the members left to train
    assert memory.stack_size(40 * gib, 1 * gib, 2 * gib, members=100) == 34
    assert memory.stack_size(80 * gib, 1 * gib, 2 * gib, members=100) == 70
    assert memory.stack_size(80 * gib, 1 * gib, 2 * gib, members=18) == 18
    assert memory.stack_size(80 * gib, 71 * gib, 1 * gib, members=18) == 1
    assert memory.stack_size(80 * gib, 200 * gib, 1 * gib, members=18) == 1  # micro-batches
    assert memory.stack_size(80 * gib, 1 * gib, 2 * gib, members=100, margin=0.2) == 62


@pytest.mark.parametrize(("model", "precision", "stack_40", "stack_80", "micro_40", "micro_80"), [
    ("lenet_300_100", "fp32", 18, 18, 60, 60),
    ("resnet20", "fp32", 18, 18, 128, 128),
    ("vgg16", "fp32", 18, 18, 128, 128),
    ("resnet50", "fp32", 1, 1, 256, 512),
    ("resnet50", "bf16", 1, 1, 512, 1024),
    ("inceptionv3", "fp32", 1, 1, 256, 512),
    ("inceptionv3", "bf16", 1, 1, 512, 1024),
])
def test_paper_a_networks_on_40_and_80_gb(model, precision, stack_40, stack_80, micro_40,
                                         micro_80):
    """Paper A's batches (LeNet 60, CIFAR 128, ImageNet 1024; Inception-v3 at 299 px) in an
    18-member cohort: the CIFAR networks stack the whole cohort, ImageNet networks train alone
    and split their batch where it does not fit."""
    batch = {"lenet_300_100": 60, "resnet20": 128, "vgg16": 128}.get(model, 1024)
    w = workload(model, batch, precision)
    member = memory.footprint(w, stacked=True).total
    assert memory.stack_size(A100_40, member, fixed(w), members=18) == stack_40
    assert memory.stack_size(H100_80, member, fixed(w), members=18) == stack_80
    assert memory.fitting_micro_batch(w, A100_40, fixed(w)) == micro_40
    assert memory.fitting_micro_batch(w, H100_80, fixed(w)) == micro_80


def test_micro_batch_is_the_largest_divisor_that_fits():
    w = workload("lenet_300_100", 60)
    room_for_15 = memory.footprint(w, 15).total
    device = int((room_for_15 + memory.CUDA_CONTEXT) / (1 - memory.MARGIN)) + 2
    assert memory.footprint(w, 20).total > room_for_15  # 20, the next divisor, does not fit
    assert memory.fitting_micro_batch(w, device, memory.CUDA_CONTEXT) == 15
    assert memory.fitting_micro_batch(w, 10 * device, memory.CUDA_CONTEXT) == 60
    assert memory.divisors(60) == [60, 30, 20, 15, 12, 10, 6, 5, 4, 3, 2, 1]
    with pytest.raises(InputError, match=r"one example of lenet_300_100 \(fp32\) needs [\d.]+ "
                                         r"GiB, more than the -?[\d.]+ GiB this device leaves "
                                         r"after 1.00 GiB of context and data \(train.precision: "
                                         r"bf16 halves"):
        memory.fitting_micro_batch(w, memory.CUDA_CONTEXT, memory.CUDA_CONTEXT)


def test_the_cpu_plans_no_memory():
    """The rules apply to CUDA devices only: on the CPU one member at a time, whole batches."""
    hp = TrainHParams("resnet50", "imagenet", "data", "sgd", 0.1, 1024, 10)
    assert memory.device_bytes("cpu") is None
    assert cohort.default_stack(torch.device("cpu"), hp, members=18) == 1
    assert memory.micro_batch(hp, data.Data(*[torch.zeros(1)] * 4)) == 1024
    assert memory.micro_batch(dataclasses.replace(hp, micro_batch=128),
                              data.Data(*[torch.zeros(1)] * 4)) == 128


# --- the estimate --------------------------------------------------------------------------------
def test_lenet_saved_tensors_counted_exactly():
    """LeNet at batch b saves, once each: the flattened input (784), both ReLU outputs (300, 100;
    the next layer's input is the same tensor), the log-softmax (10), the int64 targets and the
    loss's total weight."""
    b = 60
    t = memory.trace("lenet_300_100", "mnist", b)
    assert t.saved == b * (4 * (784 + 300 + 100 + 10) + 8) + 4
    assert t.largest == b * 784 * 4
    assert t.param_bytes == 4 * (784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10)


def test_estimate_grows_with_the_batch_and_halves_in_bf16():
    for model in ("resnet20", "resnet50"):
        totals = [memory.footprint(workload(model, b)).total for b in (8, 16, 32, 64)]
        assert totals == sorted(totals) and len(set(totals)) == 4
        saved = [memory.trace(*_args(model, b)).saved for b in (16, 32, 64)]
        assert saved[2] - saved[1] == 2 * (saved[1] - saved[0])  # linear in the batch
    fp32, bf16 = (memory.footprint(workload("resnet50", 1024, p)) for p in ("fp32", "bf16"))
    assert bf16.saved == pytest.approx(fp32.saved / 2, rel=0.02)
    # autocast's copies: the 25,502,912 conv/linear weights (not BatchNorm's, nor the fc bias)
    assert (bf16.cast, fp32.cast) == (2 * 25_502_912, 0)
    assert fp32.params == 4 * (25_557_032 + 2 * 26_560)  # parameters and running statistics
    assert fp32.total > 100 * GB  # ResNet-50 at paper A's 1024 in fp32: no GPU holds one member
    assert 40 * GB < bf16.total < 72 * GB  # bf16: a 80 GB GPU does


def test_a_grouped_member_costs_what_a_single_run_costs():
    """The grouped route (training.grouped) runs K members as one network of grouped layers:
    a member saves what a single run saves (LeNet: the loss's 4-byte total weight, shared by
    the two traced members, is the difference) and reads the members' one batch in place."""
    for model, batch in (("lenet_300_100", 60), ("resnet20", 128), ("vgg16", 128)):
        w = workload(model, batch)
        assert memory.stacked_route(w.model, w.dataset) == "grouped"
        solo, stacked = (memory.footprint(w, stacked=s) for s in (False, True))
        assert abs(stacked.saved - solo.saved) <= 4 and stacked.transient == solo.transient
        assert stacked.batch == solo.batch and stacked.total <= solo.total
        assert memory.trace(*_args(model, batch), route="grouped").saved == stacked.saved


def test_vmap_saves_more_per_member_than_a_single_run():
    """vmap's batching rules (training.stacked's route for networks that cannot be grouped,
    Inception-v3) save more per member than the plain network, and its step holds each member's
    batch beside their stacked copy."""
    for model, batch in (("resnet20", 128), ("vgg16", 128)):
        solo, vmapped = (memory.trace(*_args(model, batch), route=r) for r in ("solo", "vmap"))
        assert 1.3 * solo.saved < vmapped.saved < 2 * solo.saved
    w = workload("inceptionv3", 2)
    assert memory.stacked_route(w.model, w.dataset) == "vmap"
    solo, stacked = (memory.footprint(w, stacked=s) for s in (False, True))
    assert stacked.saved == memory.trace(*_args("inceptionv3", 2), route="vmap").saved
    assert 1.3 * solo.saved < stacked.saved < 2 * solo.saved
    assert stacked.batch == 2 * solo.batch - 2 * 8
    with pytest.raises(ValueError, match="unknown route 'grouped2'"):
        memory.trace(*_args("resnet20", 8), route="grouped2")


def test_micro_batches_shrink_activations_not_the_batch():
    w = workload("resnet50", 1024)
    whole, quarter = memory.footprint(w), memory.footprint(w, 256)
    assert quarter.batch == whole.batch and quarter.params == whole.params
    assert quarter.saved == pytest.approx(whole.saved / 4, rel=0.01)


def _args(model: str, batch: int) -> tuple:
    w = workload(model, batch)
    return w.model, w.dataset, w.batch_size, w.precision, w.image_size


# --- train.micro_batch: config, params ------------------------------------------------------
def shipped() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def with_micro_batch(value: int) -> dict:
    cfg = shipped()
    exp = cfg["experiments"]["resnet20"]  # its train is a YAML anchor the VGG-16 rows share
    exp["train"] = {**exp["train"], "micro_batch": value}
    return cfg


def test_config_refuses_a_micro_batch_that_does_not_divide_the_batch():
    with pytest.raises(config.ConfigError) as e:
        config.validate(with_micro_batch(48))
    assert str(e.value) == ("config key experiments.resnet20.train.micro_batch: 48 does not "
                            "divide train.batch_size = 128 (use a divisor of it, or 0 to let "
                            "lmcpipe choose)")
    validated = config.validate(with_micro_batch(32))
    assert (validated["resnet20"].train.micro_batch, validated["vgg16"].train.micro_batch) == (
        32, 0)


# The job params of paper A's ResNet-20 before train.micro_batch existed, byte for byte.
RESNET20_PARAMS = (
    '{"batch_size":128,"bias_init":"uniform","channels_last":false,"checkpoint_every":3910,'
    '"data_root":"data","dataset":"cifar10","eval_steps":[0,7820,15640,31280,46920,62560],'
    '"eval_train_examples":0,"final_lr":0.0,"gamma":0.1,"image_size":0,"lr":0.1,'
    '"milestones":[31280,46920],"model":"resnet20","momentum":0.9,"optimizer":"sgd",'
    '"precision":"fp32","repel_lambda":0,"schedule":"step","steps":62560,"warmup_steps":0,'
    '"weight_decay":0.0001}')


def test_params_without_micro_batch_are_unchanged():
    """A field added later is left out of the JSON at its default, so no finished job reruns;
    set, it is written and read back; JSON without it decodes to the default."""
    exp = config.validate(shipped())["resnet20"]
    assert to_json(exp.train) == RESNET20_PARAMS
    assert "micro_batch" not in to_json(exp)  # nested: the experiment's JSON holds its train
    assert from_json(TrainHParams, RESNET20_PARAMS) == exp.train
    split = dataclasses.replace(exp.train, micro_batch=32)
    assert json.loads(to_json(split))["micro_batch"] == 32
    assert from_json(TrainHParams, to_json(split)) == split
