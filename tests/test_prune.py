"""Global magnitude pruning, random-pruning masks, mask files and the prune CLI."""

from __future__ import annotations

import math

import pytest
import torch

from lmcpipe import atomic, cli, masks, models
from lmcpipe.errors import InputError
from lmcpipe.training.checkpoint import model_record

FRACTION = 0.2


def lenet(seed: int = 0):
    return models.build_initialised("lenet_300_100", "fashion_mnist", seed)


def prunable(model) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in model.prunable_names()}


def kept(mask) -> int:
    return sum(int(m.sum()) for m in mask.values())


def test_prunable_names_exclude_output_layer_and_biases():
    model = lenet()
    names = model.prunable_names()
    assert names == ["fc1.weight", "fc2.weight"]
    assert "fc3.weight" in dict(model.named_parameters())


def test_imp_levels_on_lenet():
    """Ten levels, weights changing between levels as they do after retraining."""
    total = sum(w.numel() for w in prunable(lenet()).values())
    mask, remaining, expected_density = None, total, 1.0
    for level in range(1, 11):
        weights = prunable(lenet(seed=level))  # the "trained" weights of level - 1
        new = masks.magnitude_prune(weights, mask, FRACTION)
        assert set(new) == set(weights)
        assert all(new[n].shape == weights[n].shape and new[n].dtype == torch.bool for n in new)

        n_prune = math.ceil(FRACTION * remaining)
        assert kept(new) == remaining - n_prune
        if mask is not None:  # nested: nothing comes back
            assert all(not (new[n] & ~mask[n]).any() for n in new)
        # global smallest magnitudes among the weights that were still there
        before = mask if mask is not None else masks.ones_like(weights)
        removed = torch.cat([weights[n].abs()[before[n] & ~new[n]] for n in new])
        stay = torch.cat([weights[n].abs()[new[n]] for n in new])
        assert removed.numel() == n_prune
        assert removed.max() <= stay.min()

        expected_density *= (remaining - n_prune) / remaining
        remaining -= n_prune
        mask = new
        assert masks.density(mask) == pytest.approx(expected_density, rel=1e-12)
        assert abs(masks.density(mask) - 0.8**level) < level / total
    # pruning is global: the wider-initialised fc2 keeps a larger share than fc1
    assert mask["fc2.weight"].float().mean() > mask["fc1.weight"].float().mean()


def test_ties_are_broken_by_position():
    weights = {"a": torch.ones(2, 5), "b": torch.ones(5)}
    first = masks.magnitude_prune(weights, None, 0.2)
    again = masks.magnitude_prune({k: v.clone() for k, v in weights.items()}, None, 0.2)
    assert all(torch.equal(first[k], again[k]) for k in first)
    # ceil(0.2 * 15) = 3: the lowest flat indices go first
    assert first["a"].flatten().tolist() == [False] * 3 + [True] * 7
    assert first["b"].all()
    second = masks.magnitude_prune(weights, first, 0.2)  # ceil(0.2 * 12) = 3 more
    assert second["a"].flatten().tolist() == [False] * 6 + [True] * 4
    assert second["b"].all()


def test_already_pruned_weights_stay_pruned_even_if_large():
    weights = {"w": torch.tensor([100.0, 1.0, 2.0, 3.0, 4.0])}
    mask = {"w": torch.tensor([False, True, True, True, True])}
    new = masks.magnitude_prune(weights, mask, 0.25)  # ceil(0.25 * 4) = 1 more: the 1.0
    assert new["w"].tolist() == [False, False, True, True, True]


def test_negative_weights_pruned_by_magnitude():
    weights = {"w": torch.tensor([-5.0, 0.5, -0.1, 3.0])}
    assert masks.magnitude_prune(weights, None, 0.5)["w"].tolist() == [True, False, False, True]


def test_zero_fraction_keeps_everything():
    weights = prunable(lenet())
    mask = masks.magnitude_prune(weights, None, 0.0)
    assert masks.density(mask) == 1.0


@pytest.mark.parametrize("fraction", [1.0, 1.5, -0.1, float("nan")])
def test_bad_fraction_raises(fraction):
    with pytest.raises(ValueError, match="prune fraction"):
        masks.magnitude_prune({"w": torch.randn(10)}, None, fraction)


def test_shuffle_within_layers():
    weights = prunable(lenet())
    mask = masks.magnitude_prune(weights, None, 0.5)
    mask = masks.magnitude_prune(weights, mask, 0.5)
    a = masks.shuffle_within_layers(mask, 0, 0, 2)
    b = masks.shuffle_within_layers(mask, 0, 0, 2)
    c = masks.shuffle_within_layers(mask, 1, 0, 2)
    assert set(a) == set(mask)
    for n in mask:
        assert a[n].shape == mask[n].shape and a[n].dtype == torch.bool
        assert int(a[n].sum()) == int(mask[n].sum())  # same per-layer density
        assert torch.equal(a[n], b[n])  # reproducible from its seed parts
        assert not torch.equal(a[n], c[n])  # another seed, another mask
        assert not torch.equal(a[n], mask[n])  # actually shuffled
    assert masks.density(a) == masks.density(mask)


def test_mask_file_round_trip(tmp_path):
    weights = prunable(lenet())
    mask = masks.magnitude_prune(weights, None, FRACTION)
    path = tmp_path / "sub" / "mask.pt"
    masks.save(mask, str(path), level=1)
    back = masks.load(str(path))
    assert set(back) == set(mask)
    assert all(torch.equal(back[n], mask[n]) for n in mask)
    record = torch.load(path, weights_only=True)
    assert record["level"] == 1
    assert record["density"] == pytest.approx(masks.density(mask))
    assert masks.load(None) is None
    assert not [p for p in path.parent.iterdir() if p.name != "mask.pt"]  # no temp files left


def test_prune_cli_writes_the_imp_and_the_random_pruning_mask(tmp_path, capsys):
    model = lenet(seed=7)
    model_path = tmp_path / "model.pt"
    atomic.save_torch(model_record(model, "lenet_300_100", 30), model_path)
    weights = prunable(model)

    m1, m2 = str(tmp_path / "L1.pt"), str(tmp_path / "L2.pt")
    assert cli.main(["prune", "--model", str(model_path), "--fraction", "0.2", "--level", "1",
                     "--counting", "prunable", "--out", m1]) == 0
    level1 = masks.load(m1)
    assert set(level1) == {"fc1.weight", "fc2.weight"}  # no output layer, no biases
    expected = masks.magnitude_prune(weights, None, 0.2)
    assert all(torch.equal(level1[n], expected[n]) for n in expected)
    assert atomic.load_torch(m1)["level"] == 1

    rnd = str(tmp_path / "rand.pt")
    assert cli.main(["prune", "--model", str(model_path), "--mask", m1, "--fraction", "0.2",
                     "--level", "2", "--out", m2, "--random-out", rnd, "--seed", "3",
                     "--k", "0", "--counting", "prunable"]) == 0
    level2 = masks.load(m2)
    assert all(not (level2[n] & ~level1[n]).any() for n in level2)
    assert masks.density(level2) == pytest.approx(masks.density(expected) * 0.8, abs=1e-5)
    assert f"level 2: density {masks.density(level2):.6f}" in capsys.readouterr().out

    shuffled = masks.load(rnd)
    assert all(torch.equal(shuffled[n], t)
               for n, t in masks.shuffle_within_layers(level2, 3, 0, 2).items())


# --- open_lth counting (open_lth.pruning.sparse_global) ------------------------------------
def test_open_lth_counting_on_a_hand_checked_example():
    """n = ceil(0.2 * (6 kept + 4 frozen)) = 2, t = 3rd smallest |w| = 0.2, keep |w| > t: three
    go (n + 1), where prunable counting removes ceil(0.2 * 6) = 2."""
    w = {"a": torch.tensor([0.5, -0.1, 0.3, 0.2]), "b": torch.tensor([[0.05, -0.4]])}
    got = masks.magnitude_prune(w, None, 0.2, "open_lth", frozen=4)
    assert got["a"].tolist() == [True, False, True, False]
    assert got["b"].tolist() == [[False, True]]
    assert masks.density(got, frozen=4) == pytest.approx(7 / 10)
    assert masks.density(got) == pytest.approx(3 / 6)
    mine = masks.magnitude_prune(w, None, 0.2, "prunable")
    assert mine["a"].tolist() == [True, False, True, True]
    assert mine["b"].tolist() == [[False, True]]


def test_open_lth_counting_removes_ties_and_ignores_pruned_weights():
    # pruned weights are out of the count and the sort: remaining 4 -> n = ceil(0.25 * 4) = 1,
    # t = 0.2 (the 2nd smallest remaining); 0.2 and its tie go too
    w = {"a": torch.tensor([0.0, 0.1, 0.2, 0.2, 0.3])}
    before = {"a": torch.tensor([False, True, True, True, True])}
    got = masks.magnitude_prune(w, before, 0.25, "open_lth")
    assert got["a"].tolist() == [False, False, False, False, True]
    with pytest.raises(InputError, match="cannot prune"):
        masks.magnitude_prune(w, got, 0.5, "open_lth", frozen=3)


def open_lth_reference(weights, frozen_tensors, mask, fraction):
    """open_lth's definition, written out in numpy: the mask holds every conv/linear weight
    (the ignored tensors all ones), n = ceil(fraction * mask.sum()), t = sort(|w| of the
    unpruned prunable weights)[n], keep |w| > t."""
    import numpy as np

    full = {**{n: np.ones(t.shape) for n, t in frozen_tensors.items()},
            **{n: (mask[n].numpy() if mask else np.ones(w.shape)) for n, w in weights.items()}}
    n = np.ceil(fraction * sum(v.sum() for v in full.values())).astype(int)
    w = {k: v.numpy() for k, v in weights.items()}
    vector = np.concatenate([v[full[k] == 1] for k, v in w.items()])
    threshold = np.sort(np.abs(vector))[n]
    return {k: np.where(np.abs(v) > threshold, full[k], 0) == 1 for k, v in w.items()}


@pytest.mark.parametrize("name,dataset", [("lenet_300_100", "fashion_mnist"),
                                          ("resnet20", "cifar10")])
def test_open_lth_counting_reproduces_its_masks_level_after_level(name, dataset):
    mask = None
    for level in range(1, 6):
        model = models.build_initialised(name, dataset, level)  # "trained" weights of level-1
        record = model_record(model, name, 0)
        weights = {n: record["state_dict"][n] for n in record["prunable"]}
        frozen = {n: record["state_dict"][n] for n in record["frozen"]}
        ours = masks.magnitude_prune(weights, mask, FRACTION, "open_lth",
                                     masks.frozen_count(record, "open_lth"))
        ref = open_lth_reference(weights, frozen, mask, FRACTION)
        assert sum(int((ours[n].numpy() != ref[n]).sum()) for n in ours) == 0, level
        mask = ours


def test_prune_cli_counts_as_open_lth_by_default(tmp_path, capsys):
    model = lenet(seed=7)
    model_path = tmp_path / "model.pt"
    record = model_record(model, "lenet_300_100", 30)
    assert record["frozen"] == ["fc3.weight"]
    atomic.save_torch(record, model_path)
    out = str(tmp_path / "L1.pt")
    assert cli.main(["prune", "--model", str(model_path), "--fraction", "0.2", "--level", "1",
                     "--out", out]) == 0
    saved = atomic.load_torch(out)
    expected = masks.magnitude_prune(prunable(model), None, 0.2, "open_lth", 1000)
    assert all(torch.equal(saved["masks"][n], expected[n]) for n in expected)
    total = 784 * 300 + 300 * 100
    # ceil(0.2 * 266200) + 1 = 53241 removed of the 265200 prunable weights
    assert kept(saved["masks"]) == total - 53241
    assert saved["frozen"] == 1000
    assert saved["density"] == pytest.approx((total - 53241 + 1000) / (total + 1000))
    assert saved["density_prunable"] == pytest.approx((total - 53241) / total)
