"""The ImageNet networks of paper A: ResNet-50 and Inception-v3, as torchvision defines them.

Each class wraps a torchvision model (built with ``weights=None``) as ``self.net``, so parameter
names read ``net.conv1.weight`` etc. torchvision's own weight init is irrelevant: the pipeline
re-initialises every conv/linear/BatchNorm module with ``lmcpipe.models.initialise``.

Both accept ``input_shape`` and ``num_classes`` like the other registered models. An input with
other than 3 channels gets a fresh stem conv of the same geometry; the spatial size is free for
ResNet-50 (global average pool) and must be at least 75x75 for Inception-v3 (299x299 for its
auxiliary head).

torchvision is imported inside the constructors so that importing the model registry stays cheap.
"""

from __future__ import annotations

import torch
from torch import nn

from lmcpipe.models.base import PrunableModel


class ResNet50(PrunableModel):
    """torchvision's ResNet-50 (v1.5: stride 2 in the 3x3 conv of each downsampling bottleneck).

    25.6 M parameters at 1000 classes. IMP prunes every conv and linear weight, the 1x1
    downsample (shortcut) convs and the output layer included, so nothing is excluded.
    """

    excluded: tuple[str, ...] = ()
    groupable = True  # bottlenecks of conv, BatchNorm, ReLU, sums, pools and flatten(1)

    def __init__(self, input_shape: tuple[int, ...] = (3, 224, 224), num_classes: int = 1000):
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50(weights=None, num_classes=num_classes)
        if input_shape[0] != 3:
            self.net.conv1 = nn.Conv2d(input_shape[0], 64, 7, stride=2, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class InceptionV3(PrunableModel):
    """torchvision's Inception-v3 with its auxiliary classifier (27.2 M parameters at 1000 classes).

    The auxiliary head is trained as in the reference recipe: training loss = CE(logits) +
    0.4 * CE(aux logits) (``training_loss``); evaluation and interpolation use the main logits
    only. The head needs the 17x17 Mixed_6e map of a 299x299 input (5x5 pool, stride 3, then a
    5x5 conv), so it is built only for inputs of at least 299 px; smaller inputs (smoke scale,
    >= 75 px) get the network without it. ``transform_input=False`` (inputs are normalised by
    the data pipeline) and torchvision's default dropout (p = 0.5) before the output layer.
    IMP prunes every conv and linear weight, the output layers included: nothing is excluded
    (open_lth has no Inception-v3, so this is lmcpipe's choice, consistent with the ResNets).
    """

    excluded: tuple[str, ...] = ()
    groupable = False  # concatenates branches along channels, which would interleave members
    min_size = 75
    aux_min_size = 299
    aux_weight = 0.4

    def __init__(self, input_shape: tuple[int, ...] = (3, 299, 299), num_classes: int = 1000):
        super().__init__()
        if len(input_shape) != 3 or min(input_shape[1:]) < self.min_size:
            raise ValueError(
                f"Inception-v3 needs inputs of at least {self.min_size}x{self.min_size}, "
                f"got {tuple(input_shape)}"
            )
        from torchvision.models import inception_v3

        self.net = inception_v3(
            weights=None,
            num_classes=num_classes,
            aux_logits=min(input_shape[1:]) >= self.aux_min_size,
            transform_input=False,
            init_weights=False,
        )
        if input_shape[0] != 3:
            self.net.Conv2d_1a_3x3.conv = nn.Conv2d(input_shape[0], 32, 3, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        # in train mode torchvision returns (logits, aux_logits); the main logits are the output
        return out.logits if hasattr(out, "logits") else out

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if not hasattr(out, "aux_logits"):  # eval mode: no aux head output
            return nn.functional.cross_entropy(out, y)
        return (nn.functional.cross_entropy(out.logits, y)
                + self.aux_weight * nn.functional.cross_entropy(out.aux_logits, y))
