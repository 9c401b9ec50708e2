"""Model registry: the network class of each name used in ``config.yaml``, and the seeded init.

Imported on first use through ``lmcpipe.models`` (``models.build``, ``models.REGISTRY``, ...),
which itself stays torch-free so that the config check and the Snakemake rules can name the
networks without importing torch."""

from __future__ import annotations

import math

import torch
from torch import nn

from lmcpipe.data.registry import DATASETS
from lmcpipe.models.base import PrunableModel
from lmcpipe.models.imagenet import InceptionV3, ResNet50
from lmcpipe.models.lenet import LeNet300100
from lmcpipe.models.resnet_cifar import ResNet20
from lmcpipe.models.vgg import VGG16, VGG16NoBias
from lmcpipe.seeds import generator

REGISTRY: dict[str, type[PrunableModel]] = {  # the keys are lmcpipe.models.NAMES
    "lenet_300_100": LeNet300100,
    "resnet20": ResNet20,
    "vgg16": VGG16,
    "vgg16_nobias": VGG16NoBias,
    "resnet50": ResNet50,
    "inceptionv3": InceptionV3,
}


def build(name: str, dataset: str) -> PrunableModel:
    """An uninitialised-by-us model of the named architecture for the dataset's input shape."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(REGISTRY)})")
    info = DATASETS[dataset]
    return REGISTRY[name](input_shape=info.input_shape, num_classes=info.num_classes)


from lmcpipe.models import BIAS_INITS, NAMES  # noqa: E402  (torch-free facts)

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


def build_initialised(name: str, dataset: str, *seed_parts: object,
                      bias: str = "uniform") -> PrunableModel:
    return initialise(build(name, dataset), *seed_parts, bias=bias)  # type: ignore[return-value]


