"""Networks lmcpipe does not ship: the user's own (import path or entry point) and torchvision's.

A config names one as ``model: mypkg.nets:SmallCNN`` (an import path), ``model: small_cnn`` (a
name an installed package registers in the entry-point group ``lmcpipe.models``) or
``model: torchvision:resnet18`` (a torchvision classification network), with keyword arguments
``model_args: {width: 32}``. The contract (``docs/own-network-and-data.md``), checked by ``check``
when the config is validated, before any job:

- the object is a ``torch.nn.Module`` class (or a function returning a Module) built as
  ``obj(input_shape=..., num_classes=..., **model_args)``; torchvision's builders get
  ``num_classes`` only (``weights=None``: never pretrained);
- its output for a batch of ``input_shape`` inputs is ``(batch, num_classes)`` logits;
- the output layer is the last ``nn.Linear``/``nn.Conv2d`` in module order, or the module named
  by the class attribute ``output_layer``;
- IMP prunes every conv and linear weight except the output layer's, unless the network sets
  ``excluded`` (weight names never pruned) or defines ``prunable_names()``;
- ``groupable = True`` lets a stack of its runs train as one grouped network (only when its
  ``forward`` never mixes channels: see ``lmcpipe.training.grouped``); else stacks use vmap.

The built network is turned into a ``PrunableModel`` in place (its class becomes a subclass of
both its own class and ``PrunableModel``, so the rest of lmcpipe sees one interface) with its
parameter names unchanged.
"""

from __future__ import annotations

import inspect
import math
from functools import cache
from typing import Any, NamedTuple

import torch
from torch import nn

from lmcpipe import plugins
from lmcpipe.models.base import PrunableModel
from lmcpipe.models.spec import GROUP, TORCHVISION
from lmcpipe.plugins import PluginError


@cache
def _prunable_class(cls: type) -> type:
    """``cls`` with ``PrunableModel`` mixed in (one class per ``cls``, so equal networks have
    equal types). ``cls`` comes first in the MRO: its own ``excluded``, ``prunable_names`` or
    ``groupable`` win over ``PrunableModel``'s defaults."""
    return type(cls.__name__, (cls, PrunableModel), {"__module__": cls.__module__})


def _declares(model: nn.Module, attribute: str) -> bool:
    """Whether the network's own classes (not ``PrunableModel``) define ``attribute``."""
    return any(attribute in vars(k) for k in type(model).__mro__
               if k not in (PrunableModel, nn.Module, object))


def output_layer(model: nn.Module) -> str:
    """The output layer's module name: ``output_layer`` when the network declares it, else the
    last conv/linear module in module order."""
    declared = getattr(model, "output_layer", None)
    if declared is not None:
        return declared
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return names[-1] if names else ""


def _constructor(name: str) -> Any:
    if name.startswith(TORCHVISION):
        import torchvision.models

        arch = name.removeprefix(TORCHVISION)
        known = torchvision.models.list_models(module=torchvision.models)
        if arch not in known:
            raise PluginError(f"network '{name}': torchvision has no classification network "
                              f"'{arch}' (known: {', '.join(known)})")
        return lambda input_shape, num_classes, **args: torchvision.models.get_model(
            arch, weights=None, num_classes=num_classes, **args)
    return plugins.load(name, GROUP, "network")


def build_user(name: str, input_shape: tuple[int, ...], num_classes: int,
               args: dict[str, Any]) -> PrunableModel:
    """The user's (or torchvision's) network ``name`` as a ``PrunableModel``; PluginError with
    one line when it cannot be built or is not a Module."""
    make = _constructor(name)
    if not callable(make):
        raise PluginError(f"network '{name}' is of type {type(make).__name__}, not a "
                          "torch.nn.Module class or a function returning one")
    given = {"input_shape": tuple(input_shape), "num_classes": num_classes, **args}
    try:  # a model_args key it does not take, or one it needs and lacks
        inspect.signature(make).bind(**given)
    except TypeError as e:
        raise PluginError(f"network '{name}' cannot be built with input_shape, num_classes"
                          f"{', ' + ', '.join(args) if args else ''}: {e} (check model_args)"
                          ) from None
    except ValueError:  # no signature to read (a builtin): the call below says what is wrong
        pass
    try:
        model = make(**given)
    except Exception as e:
        raise PluginError(f"network '{name}': building it failed: {type(e).__name__}: {e}"
                          ) from None
    if not isinstance(model, nn.Module):
        raise PluginError(f"network '{name}' returned a {type(model).__name__}, not a "
                          "torch.nn.Module")
    if not isinstance(model, PrunableModel):
        model.__class__ = _prunable_class(type(model))
    if not _declares(model, "excluded") and not _declares(model, "prunable_names"):
        out = output_layer(model)
        model.excluded = (f"{out}.weight",) if out else ()
    return model  # type: ignore[return-value]


class Checked(NamedTuple):
    """What ``check`` found: a one-line summary, and the counts IMP's levels are planned on."""

    summary: str
    prunable: int  # weights IMP may prune
    frozen: int  # conv/linear weights it never prunes (open_lth counting includes them)


def check(name: str, input_shape: tuple[int, ...], num_classes: int,
          args: dict[str, Any]) -> Checked:
    """Build the network on the meta device (no memory, no time) and check the contract; the
    one-line PluginError of the first breach."""
    with torch.device("meta"):
        model = build_user(name, input_shape, num_classes, args)
        weights = set(model.weight_names())
        params = dict(model.named_parameters())
        declared = getattr(model, "output_layer", None)
        if declared is not None and declared not in dict(model.named_modules()):
            raise PluginError(f"network '{name}': output_layer '{declared}' is not one of its "
                              "modules")
        prunable = model.prunable_names()
        if not prunable:
            raise PluginError(f"network '{name}' has no prunable weights: IMP prunes conv and "
                              "linear weights other than the output layer's (declare "
                              "prunable_names() or excluded to choose others)")
        strange = [n for n in prunable if n not in params]
        if strange:
            raise PluginError(f"network '{name}': prunable weight '{strange[0]}' is not one of "
                              "its parameters")
        x = torch.empty((2, *input_shape))
        try:
            out = model.train()(x)
        except Exception as e:
            raise PluginError(f"network '{name}' fails on a batch of shape {tuple(x.shape)}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                              ) from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(f"network '{name}' returns {got} for a batch of 2 inputs of shape "
                              f"{tuple(input_shape)}; expected (2, {num_classes}) logits")
    size = sum(math.prod(p.shape) for p in params.values())
    pruned = sum(math.prod(params[n].shape) for n in prunable)
    frozen = sum(math.prod(params[n].shape) for n in model.frozen_names())
    return Checked(f"{name}: {size:,} parameters, {len(prunable)} of {len(weights)} "
                   f"conv/linear weights prunable ({pruned:,} weights), output layer "
                   f"{output_layer(model)}", pruned, frozen)
