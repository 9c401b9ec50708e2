"""Linear interpolation between the two copies of a pair, and the error barrier."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lmcpipe import atomic, cli, interpolate, masks, models
from lmcpipe.hparams import InterpHParams, to_json
from lmcpipe.training import checkpoint, single
from tests.helpers import tiny_hparams

MODEL, DATASET = "lenet_300_100", "fashion_mnist"


@pytest.fixture(scope="module")
def pair(data_root, dataset):
    """Two copies trained from the same masked init with streams (0, 1) and (0, 2)."""
    hp = tiny_hparams(data_root, eval_train_examples=100)
    w0 = models.build_initialised(MODEL, DATASET, 0)
    params = dict(w0.named_parameters())
    mask = masks.magnitude_prune({n: params[n].detach() for n in w0.prunable_names()}, None, 0.6)
    out = {"hp": hp, "mask": mask}
    for c in (1, 2):
        model = models.build_initialised(MODEL, DATASET, 0)
        rows = single.train(hp, model, dataset, order=0, copy=c, mask=mask)
        out[c] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        out[f"rows{c}"] = rows
    return out


def test_blend_endpoints_and_midpoint():
    gen = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(4, 3, generator=gen), "n": torch.tensor(7)}
    b = {"w": torch.randn(4, 3, generator=gen), "n": torch.tensor(9)}
    assert torch.equal(interpolate.blend(a, b, 1.0)["w"], a["w"])
    assert torch.equal(interpolate.blend(a, b, 0.0)["w"], b["w"])
    torch.testing.assert_close(interpolate.blend(a, b, 0.25)["w"], 0.25 * a["w"] + 0.75 * b["w"])
    for alpha in (0.0, 0.5, 1.0):
        assert torch.equal(interpolate.blend(a, b, alpha)["n"], a["n"])  # integer buffer: a's


def test_pruned_weights_stay_zero_along_the_path(pair):
    mask = pair["mask"]
    assert not torch.equal(pair[1]["fc1.weight"], pair[2]["fc1.weight"])
    for alpha in torch.linspace(0, 1, 30).tolist():
        w = interpolate.blend(pair[1], pair[2], alpha)
        for name, m in mask.items():
            assert (w[name][~m] == 0).all(), (alpha, name)
            if 0 < alpha < 1:
                assert (w[name][m] != 0).float().mean() > 0.99


def test_path_endpoints_reproduce_each_copy(pair, dataset):
    hp = pair["hp"]
    model = models.build(MODEL, DATASET)
    path = interpolate.interpolate(model, pair[1], pair[2], dataset, hp, InterpHParams(alphas=30))
    assert list(path.columns) == ["alpha", "split", "loss", "error"]
    alphas = sorted(path["alpha"].unique())
    assert len(alphas) == 30 and alphas[0] == 0.0 and alphas[-1] == 1.0
    assert pd.Series(alphas).diff().dropna().to_numpy() == pytest.approx(1 / 29, abs=1e-6)
    assert (path.groupby("alpha")["split"].apply(sorted).map(tuple) == ("test", "train")).all()

    for alpha, copy in ((0.0, 2), (1.0, 1)):
        final = {r["split"]: r for r in pair[f"rows{copy}"] if r["step"] == hp.steps}
        at = path[path.alpha == alpha].set_index("split")
        for split in ("train", "test"):
            assert at.loc[split, "error"] == final[split]["error"], (alpha, split)
            assert at.loc[split, "loss"] == final[split]["loss"], (alpha, split)
    # the training split is the first eval_train_examples examples: errors are multiples of 1/100
    errs = path[path.split == "train"]["error"] * 100
    assert (errs - errs.round()).abs().max() < 1e-9


def test_interpolate_cli_matches_training_metrics(data_root, tmp_path):
    hp = tiny_hparams(data_root, eval_train_examples=60)
    start = tmp_path / "k0.pt"
    record = checkpoint.model_record(models.build_initialised(MODEL, DATASET, 1), MODEL, 0)
    atomic.save_torch(record, start)
    for c in (1, 2):
        assert cli.main(["train", "--hparams", to_json(hp), "--seed", "1", "--start", str(start),
                         "--order", "0", "--copy", str(c), "--model-out",
                         str(tmp_path / f"c{c}.pt"), "--metrics-out",
                         str(tmp_path / f"c{c}.csv"), "--device", "cpu"]) == 0
    out = tmp_path / "path.csv"
    assert cli.main(["interpolate", "--hparams", to_json(hp), "--interp",
                     to_json(InterpHParams(alphas=5)), "--copy1", str(tmp_path / "c1.pt"),
                     "--copy2", str(tmp_path / "c2.pt"), "--out", str(out),
                     "--device", "cpu"]) == 0
    path = pd.read_csv(out)
    assert path["alpha"].unique().tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    for alpha, copy in ((0.0, 2), (1.0, 1)):
        metrics = pd.read_csv(tmp_path / f"c{copy}.csv")
        final = metrics[metrics.step == hp.steps].set_index("split")
        at = path[path.alpha == alpha].set_index("split")
        for split in ("train", "test"):
            assert at.loc[split, "error"] == pytest.approx(final.loc[split, "error"], abs=1e-12)
            assert at.loc[split, "loss"] == pytest.approx(final.loc[split, "loss"], rel=1e-12)


def test_barrier_arithmetic():
    path = pd.DataFrame({
        "alpha": [1.0, 0.0, 0.5, 0.0, 0.5, 1.0, 0.25],
        "split": ["train", "train", "train", "test", "test", "test", "test"],
        "loss": [0.0] * 7,
        "error": [0.2, 0.1, 0.3, 0.4, 0.1, 0.2, 0.25],
    })
    out = barrier_by_split(path)
    assert out["train"]["barrier"] == pytest.approx(0.15)
    assert out["train"]["max_error"] == pytest.approx(0.3)
    assert out["train"]["endpoint_error"] == pytest.approx(0.15)
    # the maximum may be an endpoint: 0.4 - (0.4 + 0.2) / 2
    assert out["test"]["barrier"] == pytest.approx(0.1)
    assert out["test"]["endpoint_error"] == pytest.approx(0.3)


def test_barrier_of_a_flat_path_is_zero():
    path = pd.DataFrame({"alpha": [0.0, 0.5, 1.0], "split": ["test"] * 3, "loss": [0.0] * 3,
                         "error": [0.2, 0.2, 0.2]})
    assert barrier_by_split(path)["test"]["barrier"] == pytest.approx(0.0)


def barrier_by_split(path: pd.DataFrame) -> dict[str, dict]:
    table = interpolate.barrier(path)
    assert sorted(table.columns) == ["barrier", "endpoint_error", "max_error", "split"]
    assert table["split"].is_unique
    return table.set_index("split").to_dict("index")
