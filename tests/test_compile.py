"""The training step compiled whole (``resources.compile``; ``lmcpipe.training.step.Step``).

* ``torch._dynamo.explain`` finds one graph and no graph break in the step of a single run and
  of a grouped stack (ResNet-20 with masks and BatchNorm): forward, backward, masked gradients,
  the optimiser update and masked weights are one graph, with nothing that reads a tensor on the
  host (a host sync would be a break), so CUDA graphs can capture it.
* Compiled (inductor on the CPU) and eager training agree within ``COMPILED_TOL``: relative to
  how far training moved the weights, after 12 steps with warm-up (measured: at most 7.5e-6
  with Adam, 2.8e-7 with SGD with momentum and weight decay; the capturable update and
  inductor's fused kernels round differently from the fused optimiser kernels).
* The kill-and-resume test of a compiled cohort is in ``test_cohort.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmcpipe import data, masks, models
from lmcpipe.data.testing import write_cifar
from lmcpipe.hparams import TrainHParams
from lmcpipe.training import single, stacked
from lmcpipe.training.step import Step, make_optimizer
from lmcpipe.training.streams import Streams
from tests.helpers import tiny_hparams

COMPILED_TOL = 1e-4


def explain(update: Step, xb: torch.Tensor, yb: torch.Tensor):
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        return torch._dynamo.explain(update._step)(xb, yb, update.lr)


def random_mask(model: models.PrunableModel, seed: int) -> masks.Mask:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(model.get_parameter(n).shape, generator=gen) > 0.5
            for n in model.prunable_names()}


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> tuple[TrainHParams, data.Data]:
    root = tmp_path_factory.mktemp("cifar") / "data"
    rng = np.random.default_rng(0)
    write_cifar(root / "cifar10" / "cifar-10-batches-py",
                rng.integers(0, 256, (40, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, 40),
                10, (32, 8))
    hp = TrainHParams(model="resnet20", dataset="cifar10", data_root=str(root), optimizer="sgd",
                      lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=8, steps=3)
    return hp, data.load("cifar10", root)


def test_a_grouped_stacked_step_is_one_graph(cifar):
    hp, dataset = cifar
    template = models.build_initialised("resnet20", "cifar10", 0)
    starts = [models.build_initialised("resnet20", "cifar10", s).state_dict() for s in (1, 2)]
    members = stacked.Members(hp, template, starts, dataset.device)
    assert members.route == "grouped"
    names = list(members.params)
    mask = random_mask(template, 0)
    masked = [(i, torch.stack([mask[n]] * 2).float()) for i, n in enumerate(names) if n in mask]
    update = Step(hp, members.loss, [members.params[n] for n in names], masked,
                  make_optimizer(hp, [members.params[n] for n in names]), "default")
    xb, yb = Streams(hp, dataset, [(0, 1), (1, 1)]).batch(0)
    found = explain(update, xb, yb)
    assert (found.graph_count, found.graph_break_count) == (1, 0), found.break_reasons


def test_a_single_step_is_one_graph(data_root, dataset):
    hp = tiny_hparams(data_root)
    model = models.build_initialised(hp.model, hp.dataset, 0)
    params = list(model.parameters())
    update = Step(hp, lambda x, y: model.training_loss(x, y), params, [],
                  make_optimizer(hp, params), "default")
    found = explain(update, *Streams(hp, dataset, [(0, 1)]).batch(0))
    assert (found.graph_count, found.graph_break_count) == (1, 0), found.break_reasons


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten().double() for k, t in state.items() if t.is_floating_point()])


def moved_apart(a: dict, b: dict, start: dict) -> float:
    """|a - b| relative to how far training moved a from the start."""
    return float((flat(a) - flat(b)).norm() / (flat(a) - flat(start)).norm())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_compiled_training_matches_eager(data_root, dataset, optimizer):
    """Stacked members (K = 2, masks) and a single run, 12 steps with 3 of warm-up, compiled
    against eager: within COMPILED_TOL; pruned weights stay exactly zero."""
    hp = tiny_hparams(data_root, steps=12, warmup_steps=3, optimizer=optimizer, momentum=0.9,
                      weight_decay=1e-4 if optimizer == "sgd" else 0.0, lr=1e-3 * (
                          1 if optimizer == "adam" else 50), checkpoint_every=0)
    starts = [models.build_initialised(hp.model, hp.dataset, s).state_dict() for s in (0, 1)]
    mask = random_mask(models.build(hp.model, hp.dataset), 3)
    runs = {}
    for mode in ("none", "default"):
        finals, _ = stacked.train_stacked(hp, models.build(hp.model, hp.dataset), starts,
                                          dataset, [(0, 1), (1, 2)], [mask, None],
                                          record=False, compile=mode)
        model = models.build(hp.model, hp.dataset)
        model.load_state_dict(starts[0])
        single.train(hp, model, dataset, order=0, copy=1, mask=mask, record=False,
                     compile=mode)
        runs[mode] = [*finals, model.state_dict()]
    for i, start in enumerate([starts[0], starts[1], starts[0]]):
        assert moved_apart(runs["none"][i], runs["default"][i], start) <= COMPILED_TOL, i
    for state in (runs["default"][0], runs["default"][2]):
        assert all(bool((state[n][~mask[n]] == 0).all()) for n in mask)


def test_steps_one_after_another_stay_within_the_recompile_limit(data_root, dataset):
    """A cohort's chunks are Steps one after another, each compiling ``Step._step`` anew (dynamo
    keys its cache by code object, and an earlier Step may still be alive, e.g. in a reference
    cycle): each Step resets the cache, so with a limit of one compile per code object two
    Steps still run (without the reset the second fails: fullgraph turns the hit limit into an
    error)."""
    hp = tiny_hparams(data_root, steps=2, checkpoint_every=0)
    xb, yb = Streams(hp, dataset, [(0, 1)]).batch(0)
    kept = []
    with torch._dynamo.config.patch(recompile_limit=1):
        for seed, rows in ((0, 20), (1, 10)):  # as a cohort's last chunk may differ in size
            model = models.build_initialised(hp.model, hp.dataset, seed)
            params = list(model.parameters())
            update = Step(hp, model.training_loss, params, [], make_optimizer(hp, params),
                          "default")
            kept.append(update)
            assert torch.isfinite(update(xb[:rows], yb[:rows], 0)).all()
