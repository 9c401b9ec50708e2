"""Model registry: the network class of each name used in ``config.yaml``, and the seeded init.

Imported on first use through ``lmcpipe.models`` (``models.build``, ``models.REGISTRY``, ...),
which itself stays torch-free so that the config check and the Snakemake rules can name the
networks without importing torch."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmcpipe.data.registry import DATASETS
from lmcpipe.models import cifar_resnet, user
from lmcpipe.models import spec as specs
from lmcpipe.models.base import PrunableModel
from lmcpipe.models.imagenet import InceptionV3, ResNet50
from lmcpipe.models.lenet import LeNet300100
from lmcpipe.models.resnet_cifar import CifarResNet, ResNet20
from lmcpipe.models.vgg import VGG16, VGG16NoBias
from lmcpipe.seeds import derive_seed, generator

REGISTRY: dict[str, type[PrunableModel]] = {  # the keys are lmcpipe.models.NAMES
    "lenet_300_100": LeNet300100,
    "resnet20": ResNet20,
    "vgg16": VGG16,
    "vgg16_nobias": VGG16NoBias,
    "resnet50": ResNet50,
    "inceptionv3": InceptionV3,
}


def input_shape(dataset: str, image_size: int = 0) -> tuple[int, ...]:
    """The shape of one input: the dataset's, at ``image_size`` px when given (image folders)."""
    shape = DATASETS[dataset].input_shape
    return (shape[0], image_size, image_size) if image_size else shape


def build(spec: str, dataset: str, image_size: int = 0) -> PrunableModel:
    """An uninitialised-by-us model of ``spec`` for the dataset's input shape and classes.

    ``spec``: one of lmcpipe's networks (``REGISTRY``), or a network it does not ship with its
    arguments (``models.user``: an import path, an entry point, ``torchvision:<name>``)."""
    name, args = specs.split_spec(spec)
    shape, classes = input_shape(dataset, image_size), DATASETS[dataset].num_classes
    if specs.is_user(name):
        return user.build_user(name, shape, classes, args)
    family = cifar_resnet(name)
    if family is not None:
        depth, width = family
        return CifarResNet(input_shape=shape, num_classes=classes, depth=depth, width=width)
    return REGISTRY[name](input_shape=shape, num_classes=classes)


from lmcpipe.models import BIAS_INITS, MODEL_INITS, NAMES  # noqa: E402  (torch-free facts)

assert tuple(REGISTRY) == NAMES, "lmcpipe.models.NAMES and the registry disagree"


def initialise(model: nn.Module, *parts: object, bias: str = "uniform") -> nn.Module:
    """Seeded init as in open_lth: Kaiming normal conv/linear weights, BatchNorm gamma ~ U[0,1)
    and beta = 0.

    Conv/linear biases: ``bias="uniform"`` draws U(±1/sqrt(fan_in)), PyTorch's default, which
    open_lth keeps because its initialiser sets only ``.weight``; ``"zero"`` zeroes them
    (lmcpipe's earlier choice). Every draw comes from one generator seeded by ``parts``, in
    module order, so an init is a pure function of its seeds.
    """
    if bias not in BIAS_INITS:
        raise ValueError(f"unknown bias init '{bias}' (known: {', '.join(BIAS_INITS)})")
    gen = generator("init", *parts)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
                if module.bias is not None and bias == "zero":
                    module.bias.zero_()
                elif module.bias is not None:
                    bound = 1 / math.sqrt(module.weight[0].numel())  # fan_in of linear and conv
                    nn.init.uniform_(module.bias, -bound, bound, generator=gen)
            elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                nn.init.uniform_(module.weight, generator=gen)
                module.bias.zero_()
    return model


def build_initialised(spec: str, dataset: str, *seed_parts: object, bias: str = "uniform",
                      init: str = "lmcpipe", image_size: int = 0) -> PrunableModel:
    """A model of ``spec`` initialised from ``seed_parts``: lmcpipe's seeded init
    (``initialise``), or with ``init="own"`` the network's own initialisation run with torch's
    global generator seeded from them (restored afterwards), so a user's init is seeded too."""
    if init not in MODEL_INITS:
        raise ValueError(f"unknown model init '{init}' (known: {', '.join(MODEL_INITS)})")
    if init == "own":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed("init", *seed_parts))
            return build(spec, dataset, image_size)
    return initialise(build(spec, dataset, image_size), *seed_parts,  # type: ignore[return-value]
                      bias=bias)


