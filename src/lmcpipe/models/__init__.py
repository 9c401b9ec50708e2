"""Model registry: one module per network, looked up by the name used in ``config.yaml``."""

from __future__ import annotations

import torch
from torch import nn

from lmcpipe.data import DATASETS
from lmcpipe.models.base import PrunableModel
from lmcpipe.models.imagenet import InceptionV3, ResNet50
from lmcpipe.models.lenet import LeNet300100
from lmcpipe.models.resnet_cifar import ResNet20
from lmcpipe.models.vgg import VGG16
from lmcpipe.seeds import generator

REGISTRY: dict[str, type[PrunableModel]] = {
    "lenet_300_100": LeNet300100,
    "resnet20": ResNet20,
    "vgg16": VGG16,
    "resnet50": ResNet50,
    "inceptionv3": InceptionV3,
}


def build(name: str, dataset: str) -> PrunableModel:
    """An uninitialised-by-us model of the named architecture for the dataset's input shape."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(REGISTRY)})")
    info = DATASETS[dataset]
    return REGISTRY[name](input_shape=info.input_shape, num_classes=info.num_classes)


def initialise(model: nn.Module, *parts: object) -> nn.Module:
    """Seeded init: Kaiming normal weights, zero biases, BatchNorm gamma ~ U[0,1), beta = 0."""
    gen = generator("init", *parts)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=gen)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                nn.init.uniform_(module.weight, generator=gen)
                module.bias.zero_()
    return model


def build_initialised(name: str, dataset: str, *seed_parts: object) -> PrunableModel:
    return initialise(build(name, dataset), *seed_parts)  # type: ignore[return-value]


__all__ = ["REGISTRY", "PrunableModel", "build", "build_initialised", "initialise"]
