"""Networks lmcpipe does not ship: import paths, entry points, torchvision; the contract's checks,
the prunable set, seeded inits, the config's one-line refusals and the code version."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lmcpipe import codever, config, models, plugins
from lmcpipe.models import user
from lmcpipe.models.spec import join_spec, split_spec
from lmcpipe.plugins import PluginError
from tests.helpers import write_user_package

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own_network"



@pytest.fixture
def package(tmp_path, monkeypatch, request) -> str:
    """A package of the user's on sys.path (its own name per test: imports are cached)."""
    name = f"usernets_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"
    write_user_package(tmp_path, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


SHAPE, CLASSES = (1, 8, 8), 10


def test_a_network_by_import_path_is_a_prunable_model_with_its_output_layer_unpruned(package):
    net = models.build(join_spec(f"{package}.nets:Small", {"width": 3}), "fashion_mnist")
    assert isinstance(net, models.PrunableModel) and type(net).__name__ == "Small"
    assert net.conv.out_channels == 3
    assert [n for n, _ in net.named_parameters()] == ["conv.weight", "conv.bias", "head.weight",
                                                      "head.bias"]
    assert net.prunable_names() == ["conv.weight"]
    assert net.frozen_names() == ["head.weight"]
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_a_network_may_declare_its_output_layer_and_prunable_set(package):
    declared = user.build_user(f"{package}.nets:Declared", SHAPE, CLASSES, {})
    assert declared.prunable_names() == ["conv.weight", "head.weight"]
    own = user.build_user(f"{package}.nets:OwnChoice", SHAPE, CLASSES, {})
    assert own.prunable_names() == ["head.weight"]
    made = user.build_user(f"{package}.nets:factory", SHAPE, CLASSES, {})
    assert made.conv.out_channels == 2 and made.prunable_names() == ["conv.weight"]


@pytest.mark.parametrize("name, args, says", [
    ("nosuchpkg_x.nets:Small", {}, "cannot import module 'nosuchpkg_x.nets'"),
    ("{pkg}.nets:Missing", {}, "has no attribute 'Missing'"),
    ("{pkg}.nets:NUMBER", {}, "is of type int, not a torch.nn.Module class"),
    ("{pkg}.nets:Small", {"widht": 3}, "unexpected keyword argument 'widht' (check model_args)"),
    ("{pkg}.nets:OnlyOutput", {}, "has no prunable weights"),
    ("{pkg}.nets:Buggy", {}, "building it failed: TypeError: object of type 'int' has no len()"),
    ("{pkg}.nets:WrongShape", {}, "returns (2, 3) for a batch of 2 inputs of shape (1, 8, 8); "
                                  "expected (2, 10) logits"),
    ("{pkg}.nets:BadOutputLayer", {}, "output_layer 'fc' is not one of its modules"),
    ("torchvision:resnet18", {}, "fails on a batch of shape (2, 1, 8, 8)"),
    ("torchvision:no_such_net", {}, "torchvision has no classification network 'no_such_net'"),
])
def test_each_breach_of_the_contract_is_one_line(package, name, args, says):
    with pytest.raises(PluginError) as e:
        user.check(name.format(pkg=package), SHAPE, CLASSES, args)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_module_s_own_import_error_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_nets_mod.py").write_text("import torch\nraise RuntimeError('oops')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="importing module 'broken_nets_mod' failed: "
                                          "RuntimeError: oops"):
        user.check("broken_nets_mod:Net", SHAPE, CLASSES, {})


def test_an_entry_point_of_an_installed_distribution_names_a_network(package, tmp_path,
                                                                     monkeypatch):
    """A real distribution's metadata on sys.path (what ``pip install`` writes)."""
    info = tmp_path / "user_nets-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-nets\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[lmcpipe.models]\ntiny_user_net = {package}.nets:"
                                           "Small\n")
    plugins.entry_points.cache_clear()
    try:
        assert plugins.target("tiny_user_net", "lmcpipe.models") == f"{package}.nets:Small"
        net = models.build("tiny_user_net", "fashion_mnist")
        assert type(net).__name__ == "Small"
        with pytest.raises(PluginError, match=r"unknown network 'tiny_user_nett'.*registered: "
                                              r"(.*, )?tiny_user_net\b"):
            plugins.load("tiny_user_nett", "lmcpipe.models", "network")
    finally:
        plugins.entry_points.cache_clear()


def test_torchvision_networks_by_name_prune_every_conv_and_linear_but_the_output():
    net = models.build("torchvision:resnet18", "cifar10")
    weights = net.weight_names()
    assert net.prunable_names() == [w for w in weights if w != "fc.weight"]
    assert "layer2.0.downsample.0.weight" in net.prunable_names()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_inits_are_seeded_lmcpipe_s_and_the_network_s_own(package):
    spec = f"{package}.nets:Small"
    for init in ("lmcpipe", "own"):
        before = torch.random.get_rng_state()
        a = models.build_initialised(spec, "fashion_mnist", 0, init=init).state_dict()
        if init == "own":  # drawn from torch's generator, seeded, and its state given back
            assert torch.equal(before, torch.random.get_rng_state())
        torch.manual_seed(12345)  # whatever the global stream holds, the seeds decide
        b = models.build_initialised(spec, "fashion_mnist", 0, init=init).state_dict()
        c = models.build_initialised(spec, "fashion_mnist", 1, init=init).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not torch.equal(a["conv.weight"], c["conv.weight"])
    ours = models.build_initialised(spec, "fashion_mnist", 0).state_dict()
    own = models.build_initialised(spec, "fashion_mnist", 0, init="own").state_dict()
    assert not torch.equal(ours["conv.weight"], own["conv.weight"])
    # lmcpipe's init is Kaiming normal (std sqrt(2 / fan_in)); PyTorch's default is uniform
    fan_in = 9
    assert abs(ours["conv.weight"].abs().max() - own["conv.weight"].abs().max()) > 0
    assert own["conv.weight"].abs().max() <= 1 / fan_in ** 0.5 + 1e-6


def test_the_spec_folds_model_args_into_the_name():
    spec = join_spec("mypkg.nets:Net", {"width": 32, "depth": 2})
    assert spec == 'mypkg.nets:Net{"depth":2,"width":32}'
    assert split_spec(spec) == ("mypkg.nets:Net", {"depth": 2, "width": 32})
    assert join_spec("lenet_300_100", {}) == "lenet_300_100"


def experiment(model: str, **extra) -> dict:
    return {"data_root": "data", "experiments": {"mine": {
        "model": model, "dataset": "fashion_mnist", **extra,
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 20}}}}


def test_the_config_check_builds_the_network_and_names_the_key(package):
    exps = config.validate(experiment(f"{package}.nets:Small", model_args={"width": 3},
                                      model_init="own"))
    assert exps["mine"].train.model == f'{package}.nets:Small{{"width":3}}'
    assert exps["mine"].train.model_init == "own"
    cases = [
        (experiment(f"{package}.nets:Small", model_args={"depth": 3}),
         "config key experiments.mine.model: network"),
        (experiment("lenet_300_100", model_args={"width": 3}),
         "config key experiments.mine.model_args: lenet_300_100 is one of lmcpipe's networks"),
        (experiment("lenet_300_10"), "config key experiments.mine.model: unknown network "
                                     "'lenet_300_10'"),
        (experiment("nosuchpkg_y.nets:Net"), "cannot import module 'nosuchpkg_y.nets'"),
        (experiment(f"{package}.nets:Small", model_init="kaiming"),
         "config key experiments.mine.model_init"),
    ]
    for cfg, says in cases:
        with pytest.raises(config.ConfigError) as e:
            config.validate(cfg)
        assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_the_user_s_code_is_part_of_the_code_version_of_the_jobs_that_run_it(package, tmp_path):
    spec = f"{package}.nets:Small"
    train = codever.user_version("stages.train", spec, "fashion_mnist")
    interpolate = codever.user_version("stages.interpolate", spec, "fashion_mnist")
    assert train.startswith("+") and interpolate
    for stage in ("stages.figure", "stages.aggregate", "stages.prune", "stages.report"):
        assert codever.user_version(stage, spec, "fashion_mnist") == "", stage
    assert codever.user_version("stages.train", "lenet_300_100", "fashion_mnist") == ""
    codever.user_version.cache_clear()
    with open(tmp_path / package / "nets.py", "a") as f:
        f.write("\n# an edit\n")
    assert codever.user_version("stages.train", spec, "fashion_mnist") != train
    codever.user_version.cache_clear()


def test_the_worked_example_meets_the_contract(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    summary = user.check("smallnets.nets:SmallCNN", (1, 28, 28), 10, {"width": 8}).summary
    assert "3 of 4 conv/linear weights prunable" in summary
    cfg = yaml.safe_load((EXAMPLE / "config.yaml").read_text())
    exps = config.validate(cfg)
    assert all(e.train.model.startswith("smallnets.nets:SmallCNN") for e in exps.values())


def test_a_grouped_stack_of_the_example_matches_its_members(monkeypatch):
    """The example declares ``groupable``: a grouped stack of two runs computes each member's
    logits as its own network does."""
    from lmcpipe.training.grouped import group, groupable

    monkeypatch.syspath_prepend(str(EXAMPLE))
    nets = [models.build_initialised(join_spec("smallnets.nets:SmallCNN", {"width": 4}),
                                     "fashion_mnist", seed) for seed in (0, 1)]
    assert groupable(nets[0])
    stacked = group(nets[0], 2)
    stacked.load_state_dict({k: torch.stack([n.state_dict()[k] for n in nets])
                             for k in nets[0].state_dict()})
    x = torch.randn(3, 1, 28, 28)
    out = stacked(x).view(3, 2, 10)
    for j, net in enumerate(nets):
        torch.testing.assert_close(out[:, j], net(x), rtol=1e-5, atol=1e-5)
