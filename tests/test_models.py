"""The registered networks: shapes, parameter counts, prunable weights, bf16/channels_last, init."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from lmcpipe import config
from lmcpipe.models import REGISTRY, PrunableModel, initialise

# name -> (input shape for the smoke tests, number of classes)
SMOKE = {
    "lenet_300_100": ((1, 28, 28), 10),
    "resnet20": ((3, 32, 32), 10),
    "vgg16": ((3, 32, 32), 10),
    "vgg16_nobias": ((3, 32, 32), 10),
    "resnet50": ((3, 64, 64), 1000),
    "inceptionv3": ((3, 80, 80), 1000),  # Inception-v3 needs >= 75x75 (299 for the aux head)
}
# name -> (expected parameter count, relative tolerance); the paper's Table 1 unless noted
PARAMS = {
    "lenet_300_100": (266_000, 0.01),
    "resnet20": (272_000, 0.01),
    "vgg16": (14_700_000, 0.02),
    "vgg16_nobias": (14_700_000, 0.02),
    "resnet50": (25_500_000, 0.01),
    "inceptionv3": (23_800_000, 0.03),  # below 299 px: no aux head (27.16 M with it)
}
# name -> the weights IMP must not prune
EXCLUDED = {
    "lenet_300_100": {"fc3.weight"},
    "resnet20": set(),
    "vgg16": {"fc.weight"},
    "vgg16_nobias": {"fc.weight"},
    "resnet50": set(),
    "inceptionv3": set(),
}
# the image models are exercised with a batch of 2: BatchNorm in training mode needs more than
# one value per channel, and Inception-v3's last feature map is 1x1 at 80x80
BATCH = 2


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def built() -> dict[str, PrunableModel]:
    torch.manual_seed(0)
    return {
        name: REGISTRY[name](input_shape=shape, num_classes=classes)
        for name, (shape, classes) in SMOKE.items()
    }


def test_every_registered_model_is_covered():
    assert set(SMOKE) == set(REGISTRY) == set(PARAMS) == set(EXCLUDED)


def test_schema_model_description_lists_the_registry():
    schema = yaml.safe_load(config.SCHEMA.read_text())
    described = schema["$defs"]["experiment"]["properties"]["model"]["description"]
    assert [n for n in REGISTRY if n in described] == list(REGISTRY)


@pytest.mark.parametrize("name", list(SMOKE))
def test_parameter_count(built, name):
    expected, tol = PARAMS[name]
    assert param_count(built[name]) == pytest.approx(expected, rel=tol)


def test_exact_parameter_counts(built):
    # pinned so an accidental change of layout shows up
    assert param_count(built["resnet20"]) == 272_474
    assert param_count(built["vgg16"]) == 14_728_266  # open_lth's VGG-16: conv biases kept
    assert param_count(REGISTRY["vgg16_nobias"]()) == 14_724_042
    assert REGISTRY["vgg16_nobias"]().prunable_names() == built["vgg16"].prunable_names()
    assert param_count(built["resnet50"]) == 25_557_032
    assert param_count(built["inceptionv3"]) == 23_834_568
    assert param_count(REGISTRY["resnet20"](num_classes=100)) == 272_474 + 90 * 65


@pytest.mark.parametrize("name", list(SMOKE))
def test_prunable_names_are_the_conv_and_linear_weights_minus_exclusions(built, name):
    model = built[name]
    names = model.prunable_names()
    params = dict(model.named_parameters())
    weights = {
        f"{mod_name}.weight"
        for mod_name, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d | nn.Linear)
    }
    assert set(model.excluded) == EXCLUDED[name]
    assert EXCLUDED[name] <= weights
    assert set(names) == weights - EXCLUDED[name]
    assert len(names) == len(set(names))
    assert all(n in params and n.endswith(".weight") and params[n].dim() >= 2 for n in names)


def test_resnet20_prunes_shortcuts_and_output_layer(built):
    names = built["resnet20"].prunable_names()
    assert len(names) == 1 + 9 * 2 + 2 + 1  # stem, 18 block convs, 2 shortcuts, fc
    shortcuts = [n for n in names if "shortcut" in n]
    assert shortcuts == ["blocks.3.shortcut.0.weight", "blocks.6.shortcut.0.weight"]
    assert names[-1] == "fc.weight"
    assert dict(built["resnet20"].named_parameters())["blocks.3.shortcut.0.weight"].shape == (
        32, 16, 1, 1,
    )


def test_vgg16_structure(built):
    model = built["vgg16"]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128] + [256] * 3 + [512] * 6
    assert [m for m in model.modules() if isinstance(m, nn.Linear)] == [model.fc]
    assert model.fc.in_features == 512
    assert "fc.weight" not in model.prunable_names() and len(model.prunable_names()) == 13


def test_resnet50_prunes_downsample_convs(built):
    names = built["resnet50"].prunable_names()
    assert len(names) == 1 + 16 * 3 + 4 + 1  # stem, 16 bottlenecks, 4 downsample convs, fc
    assert "net.layer1.0.downsample.0.weight" in names and names[-1] == "net.fc.weight"


def test_inception_aux_head_at_full_size_enters_the_training_loss_only(built):
    assert built["inceptionv3"].net.AuxLogits is None  # 80x80: too small for the aux head
    model = REGISTRY["inceptionv3"](input_shape=(3, 299, 299), num_classes=10)
    assert param_count(REGISTRY["inceptionv3"]()) == 27_161_264  # paper A: 27.1 M
    assert any(n.startswith("net.AuxLogits.") for n in model.prunable_names())
    x, y = torch.randn(BATCH, 3, 299, 299), torch.randint(10, (BATCH,))
    torch.manual_seed(0)  # same dropout draws for both passes
    model.train()
    loss = model.training_loss(x, y)
    torch.manual_seed(0)
    out = model.net(x)
    main = nn.functional.cross_entropy(out.logits, y)
    aux = nn.functional.cross_entropy(out.aux_logits, y)
    assert torch.allclose(loss, main + 0.4 * aux)
    assert model(x).shape == (BATCH, 10)  # forward gives the main logits in train mode too
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.training_loss(x, y), nn.functional.cross_entropy(model(x), y))


@pytest.mark.parametrize("name", list(SMOKE))
def test_forward_gives_logits(built, name):
    model = built[name].eval()
    shape, classes = SMOKE[name]
    with torch.no_grad():
        out = model(torch.randn(1, *shape))
    assert out.shape == (1, classes) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(SMOKE))
def test_backward_channels_last_bf16_autocast(built, name):
    shape, classes = SMOKE[name]
    model = built[name].to(memory_format=torch.channels_last).train()
    model.zero_grad(set_to_none=True)
    x = torch.randn(BATCH, *shape).contiguous(memory_format=torch.channels_last)
    y = torch.randint(classes, (BATCH,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.shape == (BATCH, classes)
    nn.functional.cross_entropy(logits.float(), y).backward()
    for n in model.prunable_names():
        grad = model.get_parameter(n).grad
        assert grad is not None and torch.isfinite(grad).all(), n
    model.zero_grad(set_to_none=True)


def test_small_and_grey_inputs():
    # CIFAR nets pool globally; the ImageNet nets swap their stem for other channel counts
    assert REGISTRY["resnet20"](input_shape=(1, 28, 28))(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert REGISTRY["vgg16"](input_shape=(1, 28, 28))(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    net = REGISTRY["resnet50"](input_shape=(1, 32, 32), num_classes=10).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="75x75"):
        REGISTRY["inceptionv3"](input_shape=(3, 74, 74))


@pytest.mark.parametrize("name", list(SMOKE))
def test_initialise_covers_every_parameter_and_is_seeded(name):
    shape, classes = SMOKE[name]
    models = []
    for torch_seed in (1, 2):  # whatever the constructor drew from the global RNG is overwritten
        torch.manual_seed(torch_seed)
        model = REGISTRY[name](input_shape=shape, num_classes=classes)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
        models.append(initialise(model, 0, name))
    model, twin = models
    assert all(torch.isfinite(p).all() for p in model.parameters())  # nothing left untouched
    first = model.state_dict()
    assert all(torch.equal(v, twin.state_dict()[k]) for k, v in first.items())

    for mod_name, mod in model.named_modules():
        if list(mod.parameters(recurse=False)):
            assert isinstance(mod, nn.Conv2d | nn.Linear | nn.BatchNorm2d), mod_name
        if isinstance(mod, nn.BatchNorm2d):
            assert ((mod.weight >= 0) & (mod.weight < 1)).all(), mod_name
            assert (mod.bias == 0).all(), mod_name
        if isinstance(mod, nn.Conv2d | nn.Linear) and mod.bias is not None:
            bound = 1 / mod.weight[0].numel() ** 0.5
            assert (mod.bias.abs() < bound).all() and mod.bias.abs().max() > 0, mod_name

    other = initialise(twin, 1, name).state_dict()
    assert all(not torch.equal(first[k], other[k]) for k in model.prunable_names())


def test_bias_init_is_pytorchs_fan_in_uniform_as_in_open_lth():
    """open_lth's initialisers set only ``.weight``, so biases keep U(±1/sqrt(fan_in)). Pooled
    over VGG-16's 4,234 biases, b·sqrt(fan_in) must look like U(-1, 1): mean 0, variance 1/3,
    quartiles ∓1/2."""
    model = initialise(REGISTRY["vgg16"](), 0)
    scaled = torch.cat([m.bias * m.weight[0].numel() ** 0.5 for m in model.modules()
                        if isinstance(m, nn.Conv2d | nn.Linear)]).detach()
    assert scaled.numel() == 4_234
    assert scaled.abs().max() < 1
    assert abs(float(scaled.mean())) < 0.05
    assert float(scaled.var()) == pytest.approx(1 / 3, abs=0.03)
    q = torch.quantile(scaled, torch.tensor([0.25, 0.75]))
    assert q.tolist() == pytest.approx([-0.5, 0.5], abs=0.06)
    # seeded: the same parts give the same biases, other parts other ones
    twin = initialise(REGISTRY["vgg16"](), 0)
    assert torch.equal(twin.fc.bias, model.fc.bias)
    assert not torch.equal(initialise(REGISTRY["vgg16"](), 1).fc.bias, model.fc.bias)


def test_bias_init_zero_is_the_option_it_names():
    model = initialise(REGISTRY["lenet_300_100"](), 0, bias="zero")
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, nn.Linear))
    with pytest.raises(ValueError, match="unknown bias init"):
        initialise(REGISTRY["lenet_300_100"](), 0, bias="normal")


def test_open_lth_cifar_resnet_names_build_the_family_and_cifar_resnet_20_is_resnet20():
    """open_lth's names: cifar_resnet_<depth>[_<width>] (width 16 by default). At the default
    width it is resnet20 to the last weight under the same seeds, pruned alike (nothing
    excluded); other widths scale every stage (w, 2w, 4w)."""
    from lmcpipe.models import build, build_initialised, cifar_resnet, is_own
    from lmcpipe.models.spec import is_user

    assert cifar_resnet("cifar_resnet_20") == (20, 16) and cifar_resnet("resnet20") is None
    assert cifar_resnet("cifar_resnet_14_8") == (14, 8)
    assert is_own("cifar_resnet_20_8") and not is_user("cifar_resnet_20_8")
    assert is_user("cifar_resnet_20_x")  # not of the family's form: another's import path
    a = build_initialised("resnet20", "cifar10", 3, 1)
    b = build_initialised("cifar_resnet_20", "cifar10", 3, 1)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    assert a.prunable_names() == b.prunable_names()
    narrow = build("cifar_resnet_20_8", "fashion_mnist")
    assert narrow.conv.weight.shape == (8, 1, 3, 3) and narrow.fc.weight.shape == (10, 32)
    assert "fc.weight" in narrow.prunable_names()
    assert len(build("cifar_resnet_14_8", "fashion_mnist").blocks) == 6
    for bad in ("cifar_resnet_21", "cifar_resnet_2_8", "cifar_resnet_20_0"):
        with pytest.raises(ValueError, match="depth 6n \\+ 2"):
            cifar_resnet(bad)


def test_the_config_takes_the_family_by_name_and_refuses_args_or_an_impossible_depth():
    def exp(model, **extra):
        return {"experiments": {"mine": {
            "model": model, "dataset": "fashion_mnist", **extra,
            "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 20, "steps": 20}}}}

    assert config.validate(exp("cifar_resnet_20_8"))["mine"].train.model == "cifar_resnet_20_8"
    for cfg, says in [
        (exp("cifar_resnet_21_8"), "config key experiments.mine.model: 'cifar_resnet_21_8': a "
                                   "CIFAR ResNet has depth 6n + 2"),
        (exp("cifar_resnet_20_8", model_args={"width": 4}),
         "config key experiments.mine.model_args: cifar_resnet_20_8 is one of lmcpipe's"),
    ]:
        with pytest.raises(config.ConfigError) as e:
            config.validate(cfg)
        assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
